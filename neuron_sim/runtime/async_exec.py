"""Legacy implicit async execution (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=N > 0).

``nrt_execute`` checks its arguments on the caller's thread, reserves device memory for the request's
output buffers, marks its tensors busy and enqueues it; one runtime thread per NeuronCore runs the
queue in FIFO order and calls the registered callback ``cb(params, model_id, vnc, job_id, status)``.

Decisions where the spec is silent:
- the in-flight limit N counts requests per NeuronCore (one queue and one runtime thread per core);
  N above the hard cap of 63 is clamped with a warning;
- a request reserves ``sum(output sizes) + declared output_buffer_bytes`` of device memory until it
  completes, so a deep queue of a model with large outputs fails with NRT_RESOURCE;
- ``nrt_unload`` waits for the model's queued requests and ``nrt_close`` drains every queue before
  tearing down, so every callback fires exactly once.

State owned here: the ``AsyncQueue`` (per-core FIFOs, runtime threads, the registered callback), set once
on ``Runtime.async_queue`` by ``ensure_queue``, and the ``pending``/``completions`` counters of tensors.
"""
from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import trace
from neuron_sim.runtime.core import CoreState, Runtime
from neuron_sim.runtime.execution import Prepared, prepare, run
from neuron_sim.runtime.memory import Allocation, OutOfDeviceMemory
from neuron_sim.status import NrtError, NrtStatus, status_name

HARD_CAP = 63

Callback = Callable[[Any, int, int, int, int], Any]


def default_callback(params: Any, model_id: int, vnc: int, job_id: int, status: int) -> None:
    """Used when the application registers none: failures are logged, successes traced at DEBUG."""
    if status == 0:
        if nrtlog.enabled("DEBUG", "NRT"):
            nrtlog.debug("NRT", "async_exec_callback", f"model {model_id} vnc {vnc} job {job_id} completed")
    else:
        nrtlog.error("NRT", "async_exec_callback",
                     f"Async execution of model {model_id} on NC {vnc} (job {job_id}) completed with "
                     f"{status_name(status)}({status})")


@dataclass(slots=True)
class Request:
    job_id: int
    prepared: Prepared
    reservation: Allocation | None
    on_done: Callable[[int], Any] | None


class _CoreQueue:
    """FIFO of one NeuronCore and the runtime thread that empties it."""

    def __init__(self, owner: "AsyncQueue", cs: CoreState) -> None:
        self.owner = owner
        self.cs = cs
        self.items: deque[Request] = deque()
        self.inflight = 0                      # queued + running
        self.running: Request | None = None
        self.cv = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"nrt-async-nc{cs.vnc}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.items and not self.stopping:
                    self.cv.wait()
                if not self.items:
                    return
                req = self.running = self.items.popleft()
            self.owner.complete(self, req)


class AsyncQueue:
    """The process's async machinery: per-core queues, the callback, output reservations."""

    def __init__(self, rt: Runtime, max_inflight: int) -> None:
        if max_inflight > HARD_CAP:
            nrtlog.warn("NRT", "nrt_init", f"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS={max_inflight} is above "
                        f"the runtime's limit of {HARD_CAP}; using {HARD_CAP}")
            max_inflight = HARD_CAP
        self.rt = rt
        self.max_inflight = max_inflight
        self.callback: Callback = default_callback
        self.params: Any = None
        self.jobs = itertools.count(1)
        self.queues: dict[int, _CoreQueue] = {}
        self.lock = threading.Lock()

    def _queue(self, cs: CoreState) -> _CoreQueue:
        q = self.queues.get(cs.vnc)
        if q is None:
            with self.lock:
                q = self.queues.get(cs.vnc)
                if q is None:
                    q = self.queues[cs.vnc] = _CoreQueue(self, cs)
        return q

    def submit(self, model: Any, inputs: Any, outputs: Any,
               on_done: Callable[[int], Any] | None = None) -> NrtStatus:
        """Check, reserve and enqueue; returns at once (NRT_QUEUE_FULL / NRT_RESOURCE when it cannot)."""
        rt = self.rt
        req = prepare(rt, model, inputs, outputs)
        cs = req.model.cores[0]
        q = self._queue(cs)
        with q.cv:
            if q.inflight >= self.max_inflight:
                cs.stats["failed_to_queue"] = cs.stats.get("failed_to_queue", 0) + 1
                msg = (f"Async queue of NC {cs.vnc} is full: {q.inflight} request(s) in flight, "
                       f"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS={self.max_inflight}")
                raise fail(NrtStatus.QUEUE_FULL, "NRT", "nrt_execute", msg)
            need = sum(b.size for b in req.model.outputs)
            graph = req.model.neff.graph
            if graph is not None:
                need += graph.declared.output_buffer_bytes
            try:
                reservation = rt.memory.allocate(cs.core, "async_reservations", need, req.model.id) if need else None
            except OutOfDeviceMemory as exc:
                rt.log_oom(exc)
                msg = (f"Failed to reserve output buffers for async request of model {req.model.id} on NC "
                       f"{cs.vnc} ({q.inflight} in flight): {exc.message}")
                raise fail(NrtStatus.RESOURCE, "NRT", "nrt_execute", msg) from None
            with rt.tensor_cv:
                for t in req.in_tensors:
                    t.pending += 1
                for t in req.out_tensors:
                    t.pending += 1
            q.inflight += 1
            q.items.append(Request(next(self.jobs), req, reservation, on_done))
            if trace.recorder is not None: trace.recorder.queued(req, q.items[-1].job_id, q.inflight, "start")  # noqa: E701
            q.cv.notify_all()
        return NrtStatus.SUCCESS

    def complete(self, q: _CoreQueue, req: Request) -> None:
        """Run one request on the core's runtime thread and report it."""
        rt = self.rt
        prepared = req.prepared
        try:
            status = int(run(rt, prepared) if trace.recorder is None else trace.recorder.run(rt, prepared, run, job_id=req.job_id))
        except NrtError as exc:
            status = int(exc.status)
        except Exception as exc:  # a bug or a failing numpy reference must not kill the runtime thread
            nrtlog.error("NRT", "async_exec", f"Async execution of model {prepared.model.id} failed: {exc!r}")
            status = int(NrtStatus.FAILURE)
        rt.memory.free(req.reservation)
        with rt.tensor_cv:
            for t in prepared.in_tensors:
                t.pending -= 1
            for t in prepared.out_tensors:
                t.pending -= 1
                t.completions += 1
            rt.tensor_cv.notify_all()
        self._notify(prepared.model.id, q.cs.vnc, req.job_id, status)
        if req.on_done is not None:
            req.on_done(status)
        with q.cv:
            q.running = None
            q.inflight -= 1
            if trace.recorder is not None: trace.recorder.queued(prepared, req.job_id, q.inflight, "stop")  # noqa: E701
            q.cv.notify_all()

    def _notify(self, model_id: int, vnc: int, job_id: int, status: int) -> None:
        cb, params = self.callback, self.params
        try:
            cb(params, model_id, vnc, job_id, status)
        except Exception as exc:
            nrtlog.error("NRT", "async_exec_callback", f"Async execution callback raised {exc!r}")

    def drain_core(self, vnc: int) -> None:
        q = self.queues.get(vnc)
        if q is None:
            return
        with q.cv:
            while q.inflight:
                q.cv.wait()

    def drain_model(self, model: Any) -> None:
        """Wait until no request of ``model`` is queued or running."""
        for cs in model.cores:
            q = self.queues.get(cs.vnc)
            if q is None:
                continue
            with q.cv:
                while (any(r.prepared.model is model for r in q.items)
                       or (q.running is not None and q.running.prepared.model is model)):
                    q.cv.wait()

    def shutdown(self) -> None:
        """Drain every queue (callbacks fire) and stop the runtime threads."""
        for q in list(self.queues.values()):
            with q.cv:
                while q.inflight:
                    q.cv.wait()
                q.stopping = True
                q.cv.notify_all()
            if q.thread is not threading.current_thread():
                q.thread.join()
        self.queues.clear()


def ensure_queue(rt: Runtime) -> AsyncQueue | None:
    """Create the async machinery when the configuration asks for it."""
    if rt.config.async_max_inflight > 0 and rt.async_queue is None:
        rt.async_queue = AsyncQueue(rt, rt.config.async_max_inflight)
    return rt.async_queue


def register_callback(rt: Runtime, callback: Callback | None, params: Any) -> None:
    """nrt_register_async_exec_callback: replace the callback (None restores the default)."""
    if callback is not None and not callable(callback):
        msg = "nrt_register_async_exec_callback: callback must be callable(params, model_id, vnc, job_id, status)"
        raise fail(NrtStatus.INVALID, "NRT", "nrt_register_async_exec_callback", msg)
    q = ensure_queue(rt)
    if q is None:
        nrtlog.warn("NRT", "nrt_register_async_exec_callback",
                    "Async execution is disabled (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=0): the callback "
                    "will not be called")
        return
    q.callback = callback or default_callback
    q.params = params


def drain(rt: Runtime, vnc: int) -> None:
    """nrt_async_drain_queued_execs: block until core ``vnc``'s queue is empty."""
    rt.core_state(vnc, "nrt_async_drain_queued_execs")
    if rt.async_queue is not None:
        rt.async_queue.drain_core(vnc)
