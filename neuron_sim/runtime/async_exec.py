"""Legacy implicit async execution (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=N > 0).

``nrt_execute`` checks its arguments on the caller's thread, reserves device memory for the request's
output buffers, books its slot on the core's simulated timeline, marks its tensors busy and enqueues it;
one runtime thread per NeuronCore runs the queue in FIFO order and calls the registered callback
``cb(params, model_id, vnc, job_id, status)``.

Back-pressure follows simulated time, not thread scheduling: a request counts in flight from its call
until its simulated end; a submit at host time t (the calling thread's time, see runtime.clock) sees as
in flight exactly the accepted requests of the core whose end is after t, and their output reservations.
So under the virtual clock the SUCCESS / QUEUE_FULL / RESOURCE sequence of a program is a function of
its calls and simulated time alone. Under the virtual clock a submit from an application thread first waits
(in wall time only) for the runtime thread to finish the requests that already ended in simulated time,
which keeps the physical backlog equal to the simulated one.

Decisions where the spec is silent:
- the in-flight limit N counts requests per NeuronCore (one queue and one runtime thread per core); any N
  from 1 to INT_MAX is honoured as given: the configuration guide accepts 0 to INT_MAX and the performance
  guide says the depth "can be arbitrarily large", device memory for outputs being the limit (no release
  documents a cap);
- a request reserves ``sum(output sizes) + declared output_buffer_bytes`` of device memory until its
  simulated end is observed (a later submit, a drain, unload or close), so a deep queue of a model with
  large outputs fails with NRT_RESOURCE;
- ``nrt_unload`` waits for the model's queued requests and ``nrt_close`` drains every queue before
  tearing down, so every accepted request gets its callback exactly once; requests made while the
  runtime closes are refused with NRT_CLOSED;
- from an async callback (a runtime thread): ``nrt_unload`` is allowed — the model is unloaded at once
  for every caller and its memory is returned after its last queued request; ``nrt_close`` and
  ``nrt_async_drain_queued_execs`` would wait for the request running the callback, so they fail with
  NRT_FAILURE and an ERROR line instead of hanging.

State owned here: the ``AsyncQueue`` (per-core FIFOs, runtime threads, the registered callback), set once
on ``Runtime.async_queue`` by ``ensure_queue``, and the ``pending``/``completions`` counters of tensors.
"""
from __future__ import annotations

import itertools
import threading
from bisect import insort
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import trace
from neuron_sim.runtime.core import CoreState, Runtime
from neuron_sim.runtime.execution import Prepared, prepare, run, schedule
from neuron_sim.runtime.memory import Allocation, OutOfDeviceMemory
from neuron_sim.runtime.tensors import Tensor
from neuron_sim.status import NrtError, NrtStatus, status_name

COMPLETION_HISTORY = 1024       # completion ends kept per tensor for waits on counts reached long ago

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


class Completion(Future):
    """A Future of one async request: waiting for its result also waits for its simulated end."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.end = 0.0            # simulated end of the request, set before the result

    def result(self, timeout: float | None = None) -> Any:
        try:
            return super().result(timeout)
        finally:
            if self.done():
                self.clock.wait_until(self.end)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        exc = super().exception(timeout)
        self.clock.wait_until(self.end)
        return exc


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
        self.items: deque[Request] = deque()        # accepted, not yet run (wall time)
        self.scheduled: deque[Request] = deque()    # accepted, simulated end not yet observed (in flight)
        self.inflight = 0                           # queued + running (wall time)
        self.running: Request | None = None
        self.deferred: list[tuple[Any, Callable[[], None]]] = []   # unloads asked from callbacks
        self.cv = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"nrt-async-nc{cs.vnc}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        self.owner.thread_ids.add(threading.get_ident())
        while True:
            with self.cv:
                while not self.items and not self.stopping:
                    self.cv.wait()
                if not self.items:
                    return
                req = self.running = self.items.popleft()
            self.owner.complete(self, req)

    def holds(self, model: Any, own: bool) -> bool:
        """Is a request of ``model`` queued, or running on this queue's thread (``own``: not counting ours)?"""
        running = self.running
        if running is not None and running.prepared.model is model and not own:
            return True
        return any(r.prepared.model is model for r in self.items)


class AsyncQueue:
    """The process's async machinery: per-core queues, the callback, output reservations."""

    def __init__(self, rt: Runtime, max_inflight: int) -> None:
        self.rt = rt
        self.max_inflight = max_inflight
        self.callback: Callback = default_callback
        self.params: Any = None
        self.jobs = itertools.count(1)
        self.queues: dict[int, _CoreQueue] = {}
        self.thread_ids: set[int] = set()
        self.lock = threading.Lock()
        self.closed = False

    def on_runtime_thread(self) -> bool:
        """Is the caller one of the runtime threads (so running inside an async callback)?"""
        return threading.get_ident() in self.thread_ids

    def _queue(self, cs: CoreState) -> _CoreQueue:
        q = self.queues.get(cs.vnc)
        if q is None:
            with self.lock:
                if self.closed:
                    raise _closing()
                q = self.queues.get(cs.vnc)
                if q is None:
                    q = self.queues[cs.vnc] = _CoreQueue(self, cs)
        return q

    def submit(self, model: Any, inputs: Any, outputs: Any,
               on_done: Callable[[int], Any] | None = None, block: bool = False) -> NrtStatus:
        """Check, reserve, schedule and enqueue; returns at once (NRT_QUEUE_FULL / NRT_RESOURCE when it cannot).

        ``block``: when the queue is full, wait (in simulated time) for the oldest request in flight to end.
        """
        rt = self.rt
        clock = rt.clock
        req = prepare(rt, model, inputs, outputs)
        m = req.model
        cs = m.cores[0]
        q = self._queue(cs)
        # virtual clock: an application thread first lets the runtime thread catch up with simulated time,
        # so what callbacks free (tensors, futures) is freed in the same order on every run
        catch_up = clock.kind == "virtual" and not self.on_runtime_thread()
        with q.cv:
            while True:
                if catch_up:
                    self._catch_up(q)           # may wait: the checks below come after it
                if q.stopping:
                    raise _closing()
                if m.unloaded:
                    raise fail(NrtStatus.INVALID_HANDLE, "NRT", "nrt_execute", f"Model {m.id} ({m.name}) was unloaded")
                self._retire(q, clock.thread_now())
                if len(q.scheduled) < self.max_inflight:
                    break
                if not block:
                    cs.stats["failed_to_queue"] = cs.stats.get("failed_to_queue", 0) + 1
                    msg = (f"Async queue of NC {cs.vnc} is full: {len(q.scheduled)} request(s) in flight at "
                           f"simulated time {clock.thread_now():.6f} s, "
                           f"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS={self.max_inflight}")
                    raise fail(NrtStatus.QUEUE_FULL, "NRT", "nrt_execute", msg)
                oldest_end = q.scheduled[0].prepared.end
                q.cv.release()
                try:
                    clock.wait_until(oldest_end)
                finally:
                    q.cv.acquire()
            need = sum(b.size for b in m.outputs)
            graph = m.neff.graph
            if graph is not None:
                need += graph.declared.output_buffer_bytes
            try:
                reservation = rt.memory.allocate(cs.core, "async_reservations", need, m.id) if need else None
            except OutOfDeviceMemory as exc:
                rt.log_oom(exc)
                msg = (f"Failed to reserve output buffers for async request of model {m.id} on NC "
                       f"{cs.vnc} ({len(q.scheduled)} in flight): {exc.message}")
                raise fail(NrtStatus.RESOURCE, "NRT", "nrt_execute", msg) from None
            schedule(rt, req)
            end = req.end
            with rt.tensor_cv:
                for t in req.in_tensors:
                    t.pending += 1
                    if end > t.ready_at:
                        t.ready_at = end
                for t in req.out_tensors:
                    t.pending += 1
                    _expect_completion(t, end)
                    if end > t.ready_at:
                        t.ready_at = end
                rt.tensor_cv.notify_all()       # a completion wait may now know when it ends
            job = Request(next(self.jobs), req, reservation, on_done)
            q.inflight += 1
            q.items.append(job)
            q.scheduled.append(job)
            if trace.recorder is not None: trace.recorder.queued(req, job.job_id, q.inflight, "start")  # noqa: E701
            q.cv.notify_all()
        return NrtStatus.SUCCESS

    def _catch_up(self, q: _CoreQueue) -> None:
        """Wait (wall time, q.cv held) until the runtime thread ran every request already ended in simulated time."""
        now = self.rt.clock.thread_now()
        while True:
            head = q.running or (q.items[0] if q.items else None)
            if head is None or head.prepared.end > now:
                return
            q.cv.wait()

    def _retire(self, q: _CoreQueue, now: float) -> None:
        """Requests that ended at or before ``now`` leave the in-flight count and return their reservation."""
        scheduled = q.scheduled
        while scheduled and scheduled[0].prepared.end <= now:
            self.rt.memory.free(scheduled.popleft().reservation)

    def complete(self, q: _CoreQueue, req: Request) -> None:
        """Run one request on the core's runtime thread and report it."""
        rt = self.rt
        prepared = req.prepared
        try:
            status = int(run(rt, prepared, accepted=True) if trace.recorder is None
                         else trace.recorder.run(rt, prepared, run, True, job_id=req.job_id))
        except NrtError as exc:
            status = int(exc.status)
        except Exception as exc:  # a bug or a failing numpy reference must not kill the runtime thread
            nrtlog.error("NRT", "async_exec", f"Async execution of model {prepared.model.id} failed: {exc!r}")
            status = int(NrtStatus.FAILURE)
        with rt.tensor_cv:
            for t in prepared.in_tensors:
                t.pending -= 1
            for t in prepared.out_tensors:
                t.pending -= 1
                t.completions += 1
            rt.tensor_cv.notify_all()
        self._notify(prepared.model.id, q.cs.vnc, req.job_id, status)
        if req.on_done is not None:
            _guarded(req.on_done, status)
        with q.cv:
            q.running = None
            ready = [d for d in q.deferred if not q.holds(d[0], own=False)]
            for d in ready:
                q.deferred.remove(d)
        for _, finish in ready:
            _guarded(finish)
        with q.cv:
            q.inflight -= 1
            if trace.recorder is not None: trace.recorder.queued(prepared, req.job_id, q.inflight, "stop")  # noqa: E701
            q.cv.notify_all()

    def _notify(self, model_id: int, vnc: int, job_id: int, status: int) -> None:
        cb, params = self.callback, self.params
        try:
            cb(params, model_id, vnc, job_id, status)
        except Exception as exc:
            nrtlog.error("NRT", "async_exec_callback", f"Async execution callback raised {exc!r}")

    def refuse_in_callback(self, function: str) -> None:
        if self.on_runtime_thread():
            raise fail(NrtStatus.FAILURE, "NRT", function,
                       f"{function} cannot be called from an async execution callback: it would wait for the "
                       "request whose completion runs the callback; call it from an application thread")

    def drain_core(self, vnc: int) -> None:
        """Wait until core ``vnc``'s queue is empty; the caller's simulated time moves to its last end."""
        self.refuse_in_callback("nrt_async_drain_queued_execs")
        q = self.queues.get(vnc)
        if q is None:
            return
        with q.cv:
            while q.inflight:
                q.cv.wait()
            if q.scheduled:
                self.rt.clock.wait_until(q.scheduled[-1].prepared.end)
            self._retire(q, self.rt.clock.thread_now())

    def release_after_requests(self, model: Any, finish: Callable[[], None]) -> bool:
        """Unload's wait for ``model``'s requests. From a callback it cannot wait: ``finish`` is deferred
        to the model's runtime thread after its last request (returns True); otherwise waits (False)."""
        q = self.queues.get(model.cores[0].vnc)
        if q is None:
            return False
        clock = self.rt.clock
        with q.cv:
            if self.on_runtime_thread():
                if q.holds(model, own=threading.current_thread() is q.thread):
                    q.deferred.append((model, finish))
                    return True
                return False
            ends = [r.prepared.end for r in q.scheduled if r.prepared.model is model]
            while q.holds(model, own=False):
                q.cv.wait()
            if ends:
                clock.wait_until(ends[-1])
            self._retire(q, clock.thread_now())
        return False

    def shutdown(self) -> None:
        """Refuse new requests, drain every queue (callbacks fire) and stop the runtime threads."""
        self.refuse_in_callback("nrt_close")
        with self.lock:
            self.closed = True
            queues = list(self.queues.values())
        for q in queues:
            with q.cv:
                q.stopping = True
                q.cv.notify_all()
                while q.inflight:
                    q.cv.wait()
                self._retire(q, float("inf"))
            q.thread.join()
        self.queues.clear()


def _expect_completion(t: Tensor, end: float) -> None:
    """Record when the request just accepted bumps ``t``'s completion counter (caller holds tensor_cv).

    Ends of counts reached long ago are dropped beyond COMPLETION_HISTORY: a wait for one of them moves the
    caller to the latest dropped end, so the list stays bounded however many requests use the tensor.
    """
    ends = t.completion_ends
    insort(ends, end)
    done = t.completions - t.completion_base
    if done > 2 * COMPLETION_HISTORY:
        drop = done - COMPLETION_HISTORY
        t.completion_floor = ends[drop - 1]
        del ends[:drop]
        t.completion_base += drop


def _closing() -> NrtError:
    return fail(NrtStatus.CLOSED, "NRT", "nrt_execute",
                "The runtime is closing (nrt_close): the request was not accepted")


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run application or teardown code on a runtime thread: an exception is logged, the thread goes on."""
    try:
        fn(*args)
    except NrtError:
        pass                                    # already logged by the runtime
    except Exception as exc:
        nrtlog.error("NRT", "async_exec", f"Completion handler raised {exc!r}")


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
