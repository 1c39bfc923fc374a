"""The explicit async API (``nrta_*``, the runtime 2.29+ "NRTA 3.0" generation): execution units and their queues.

Every NeuronCore has execution units (XUs): TENSOR_OP (2 queues), COMPUTE (1 queue), COLLECTIVES (3 queues).
An operation is checked on the caller's thread (the returned status covers that preparation only), gets a
sequence id and its slot on its queue's simulated timeline at the call, and is performed by the queue's
runtime thread, which then writes the final status through the caller's status (``NRT_STATUS *ret``),
marks the sequence id completed and signals the registered eventfds.

- Sequence id: ``xu_id << 48 | n`` with n = 1, 2, ... per XU queue; ``xu_id = vnc << 5 | type << 3 | queue``
  (the encoding is not documented for libnrt; this one is ours). n = 0 is "nothing completed yet".
- Timelines: the COMPUTE queue is the core's own timeline (legacy executions and nrta executions share the
  core); each TENSOR_OP and COLLECTIVES queue has its own, so a transfer overlaps an execution. A slot
  starts at the later of the caller thread's simulated time and the queue's end; transfers cost
  ``cost.transfer_duration`` (DMA latency + bytes / host-device bandwidth).
- Ordering: one queue completes in order. Different queues are not ordered with each other (as on the
  hardware): an operation sees another queue's result only when the caller ordered them by waiting for
  its completion first. Operations on the same bytes whose simulated slots overlap across queues are a
  hazard: neuron_sim logs a warning naming both sequence ids (their data outcome depends on timing).
- Back-pressure: a queue holds ``QUEUE_DEPTH`` operations in flight (from the call to their simulated end,
  as the calling thread sees time); one more is ``NRT_QUEUE_FULL``.
- Observing a completion (``is_completed`` true, ``last_completed``, ``CompletionStatus.wait``) moves the
  calling thread's simulated time to the operation's end, as a host that waited for it.
- Buffers and tensors must stay alive until completion: a tensor freed while its operation is pending
  gives that operation ``NRT_INVALID_HANDLE`` at completion with an ERROR line, never a crash.

State owned here: the ``Units`` of a runtime (``Runtime.execution_units``): queues, their timelines,
sequence counters, pending operations, runtime threads, eventfd registrations and the hazard table.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.compute.cost import transfer_duration
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import execution, faults, trace
from neuron_sim.runtime.clock import Timeline
from neuron_sim.runtime.core import CoreState, Runtime, as_bytes
from neuron_sim.runtime.tensors import Placement, Tensor
from neuron_sim.status import NrtError, NrtStatus, status_name


class XuType(IntEnum):
    """nrta_xu_t of the 2.29+ headers."""

    TENSOR_OP = 0
    COMPUTE = 1
    COLLECTIVES = 2


QUEUES = {XuType.TENSOR_OP: 2, XuType.COMPUTE: 1, XuType.COLLECTIVES: 3}
SEQ_NUM_BITS = 48
SEQ_NUM_MAX = (1 << SEQ_NUM_BITS) - 1
QUEUE_DEPTH = 64            # operations in flight per XU queue (libnrt does not document its depth)
RECENT_KEPT = 4096          # completed operations whose simulated end is remembered per queue

StatusSink = Callable[[int], Any]


def xu_id(vnc: int, xu: int, queue: int) -> int:
    """The 16-bit id of an XU queue."""
    return vnc << 5 | int(xu) << 3 | queue


def seq_id(xid: int, num: int) -> int:
    return xid << SEQ_NUM_BITS | num


def seq_xu_id(seq: int) -> int:
    """NRTA_SEQ_GET_XU_ID."""
    return seq >> SEQ_NUM_BITS


def seq_num(seq: int) -> int:
    """NRTA_SEQ_GET_SEQ_NUM."""
    return seq & SEQ_NUM_MAX


class CompletionStatus:
    """The Python form of ``NRT_STATUS *ret``: ``value`` is None until the operation completes, then its status."""

    __slots__ = ("value", "seq", "start", "end", "_clock", "_event")

    def __init__(self) -> None:
        self.value: int | None = None
        self.seq: int | None = None
        self.start: float | None = None     # the operation's simulated slot on its queue's timeline
        self.end: float | None = None
        self._clock: Any = None
        self._event = threading.Event()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until completion (``timeout`` in wall seconds); returns the status, None on timeout.

        The calling thread's simulated time moves to the operation's end."""
        if not self._event.wait(timeout):
            return None
        if self._clock is not None and self.end is not None:
            self._clock.wait_until(self.end)
        return self.value

    def _complete(self, status: int) -> None:
        self.value = status
        self._event.set()

    def __repr__(self) -> str:
        state = "pending" if self.value is None else status_name(self.value)
        return f"<CompletionStatus {state}{'' if self.seq is None else f' seq {self.seq:#x}'}>"


@dataclass(slots=True, eq=False)
class Op:
    """One scheduled operation of an XU queue."""

    seq: int
    function: str
    start: float
    end: float
    work: Callable[["Op"], int]                   # performs the operation, returns its status (or raises)
    tensors: tuple[Tensor, ...]
    ret: CompletionStatus | StatusSink
    on_done: Callable[[int], Any] | None = None
    fds: list[int] = field(default_factory=list)  # eventfds registered for this sequence id


class XuQueue:
    """One queue of one XU of one core: its timeline, in-order operations and the runtime thread running them."""

    def __init__(self, units: "Units", cs: CoreState, xu: XuType, queue: int) -> None:
        self.units = units
        self.cs = cs
        self.xu = xu
        self.queue = queue
        self.id = xu_id(cs.vnc, xu, queue)
        self.name = f"NC {cs.vnc} {xu.name} queue {queue}"
        self.timeline = cs.timeline if xu is XuType.COMPUTE else Timeline(f"nc{cs.vnc}.{xu.name.lower()}{queue}")
        self.cv = threading.Condition()
        self.items: deque[Op] = deque()
        self.inflight_ends: deque[float] = deque()    # simulated ends of accepted operations (back-pressure)
        self.issued = 0
        self.completed = 0
        self.recent_ends: OrderedDict[int, float] = OrderedDict()
        self.xu_fds: list[int] = []
        self.stopping = False
        self.thread: threading.Thread | None = None

    # ---- caller side ---------------------------------------------------------------------------------
    def admit(self, function: str, clock: Any, block: bool = False) -> float:
        """NRT_QUEUE_FULL when QUEUE_DEPTH operations are in flight at the caller's simulated time; with
        ``block`` wait for the oldest to end instead. Returns the caller's simulated time."""
        with self.cv:
            while True:
                now = clock.thread_now()
                while self.items and self.items[0].end <= now:   # ended in simulated time: let the thread catch up
                    self.cv.wait()
                ends = self.inflight_ends
                while ends and ends[0] <= now:
                    ends.popleft()
                if len(ends) < QUEUE_DEPTH:
                    return now
                if not block:
                    raise fail(NrtStatus.QUEUE_FULL, "NRT", function,
                               f"{self.name} is full: {len(ends)} operations in flight (depth {QUEUE_DEPTH}); "
                               f"wait for sequence {seq_id(self.id, self.completed + 1):#x} to complete and retry")
                oldest = ends[0]
                while self.items and self.items[0].end <= oldest:
                    self.cv.wait()
                clock.wait_until(oldest)

    def enqueue(self, op: Op) -> None:
        with self.cv:
            if self.stopping:
                raise fail(NrtStatus.CLOSED, "NRT", op.function, f"{op.function}: the runtime is closing; "
                                                                 f"{self.name} accepts no more operations")
            self.items.append(op)
            self.inflight_ends.append(op.end)
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name=f"nrta-nc{self.cs.vnc}-"
                                               f"{self.xu.name.lower()}{self.queue}", daemon=True)
                self.thread.start()
            self.cv.notify_all()

    def next_seq(self) -> int:
        """Called under the units' lock: the next sequence id of this queue."""
        self.issued += 1
        return seq_id(self.id, self.issued)

    # ---- runtime thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.items and not self.stopping:
                    self.cv.wait()
                if not self.items:
                    return
                op = self.items[0]
            self._finish(op, self.units.perform(op))

    def _finish(self, op: Op, status: int) -> None:
        """Write the status, mark the sequence completed, signal eventfds, then call ``on_done``."""
        if isinstance(op.ret, CompletionStatus):
            op.ret._complete(status)
        else:
            try:
                op.ret(status)
            except Exception as exc:  # noqa: BLE001 - a face's status writer must not kill the runtime thread
                nrtlog.error("NRT", op.function, f"cannot write the completion status of {op.seq:#x}: {exc!r}")
        with self.cv:
            self.items.popleft()
            self.completed = seq_num(op.seq)
            self.recent_ends[self.completed] = op.end
            if len(self.recent_ends) > RECENT_KEPT:
                self.recent_ends.popitem(last=False)
            fds = op.fds + self.xu_fds
            self.cv.notify_all()
        for fd in fds:
            _signal(fd, op.function)
        if op.on_done is not None:
            try:
                op.on_done(status)
            except Exception as exc:  # noqa: BLE001
                nrtlog.error("NRT", op.function, f"completion handler of {op.seq:#x} raised {exc!r}")

    def drain(self) -> None:
        with self.cv:
            while self.items:
                self.cv.wait()

    def stop(self) -> None:
        with self.cv:
            while self.items:
                self.cv.wait()
            self.stopping = True
            self.cv.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()


def _signal(fd: int, function: str) -> None:
    try:
        os.eventfd_write(fd, 1)
    except OSError as exc:
        nrtlog.warn_once(f"nrta-eventfd-{fd}", "NRT", function,
                         f"Cannot signal eventfd {fd}: {exc.strerror}; was it closed before the operation completed?")


@dataclass(slots=True, eq=False)
class _Use:
    """An operation's use of bytes [lo, hi) of a storage (for hazard warnings)."""

    op: Op
    queue: XuQueue
    lo: int
    hi: int
    writes: bool


class Units:
    """The execution units of one runtime: an XuQueue per (core, type, queue), created on first use."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.lock = threading.Lock()
        self.queues: dict[int, XuQueue] = {}
        self.uses: dict[int, list[_Use]] = {}          # id(storage) -> uses whose simulated slot may not be over
        self.use_order: deque[tuple[float, int, _Use]] = deque()

    def queue(self, cs: CoreState, xu: XuType, queue: int) -> XuQueue:
        xid = xu_id(cs.vnc, xu, queue)
        q = self.queues.get(xid)
        if q is None:
            with self.lock:
                q = self.queues.get(xid)
                if q is None:
                    q = self.queues[xid] = XuQueue(self, cs, xu, queue)
        return q

    def find(self, xid: int) -> XuQueue | None:
        """The queue a 16-bit xu id names, if it exists in this runtime."""
        vnc, xu, queue = xid >> 5, (xid >> 3) & 3, xid & 7
        if vnc >= len(self.rt.cores) or xu not in (0, 1, 2) or queue >= QUEUES[XuType(xu)]:
            return None
        return self.queue(self.rt.cores[vnc], XuType(xu), queue)

    # ---- scheduling --------------------------------------------------------------------------------
    def schedule(self, q: XuQueue, function: str, duration: float | None, work: Callable[[Op], int],
                 uses: tuple[tuple[Tensor, int, int, bool], ...], ret: CompletionStatus | StatusSink,
                 on_done: Callable[[int], Any] | None = None,
                 book: Callable[[], tuple[float, float]] | None = None, block: bool = False) -> int:
        """Admit, book the slot (``duration`` on the queue's timeline, or ``book()``), enqueue; the sequence id."""
        clock = self.rt.clock
        now = q.admit(function, clock, block)
        with self.lock:       # sequence numbers, slots and queue order agree on every queue
            start, end = book() if book is not None else q.timeline.reserve(now, duration)
            seq = q.next_seq()
            op = Op(seq, function, start, end, work, tuple(t for t, *_ in uses), ret, on_done)
            if isinstance(ret, CompletionStatus):
                ret.seq, ret.start, ret.end, ret._clock = seq, start, end, clock
            q.enqueue(op)
            self._check_hazards(op, q, uses, now)
        return seq

    def _check_hazards(self, op: Op, q: XuQueue, uses: tuple[tuple[Tensor, int, int, bool], ...],
                       now: float) -> None:
        """Warn when the op touches bytes another queue's op writes (or reads, if this one writes) in an
        overlapping simulated slot: the hardware does not order execution units."""
        order = self.use_order
        while order and order[0][0] <= now:
            _, key, use = order.popleft()
            lst = self.uses.get(key)
            if lst is not None:
                lst.remove(use)
                if not lst:
                    del self.uses[key]
        for t, lo, size, writes in uses:
            if t.storage is None:
                continue
            key = id(t.storage)
            lo += t.offset
            hi = lo + size
            for u in self.uses.get(key, ()):
                if (u.queue is not q and u.op.end > op.start and u.lo < hi and lo < u.hi
                        and (writes or u.writes)):
                    nrtlog.warn_once(
                        f"nrta-hazard-{u.op.seq}-{op.seq}", "NRT", op.function,
                        f"Hazard: {op.function} {op.seq:#x} on {q.name} {'writes' if writes else 'reads'} "
                        f"tensor '{t.name}' while {u.op.function} {u.op.seq:#x} on {u.queue.name} "
                        f"{'writes' if u.writes else 'reads'} it (until simulated t={u.op.end:.6f} s); execution "
                        f"units are not ordered with each other: wait for {u.op.seq:#x} to complete first")
            use = _Use(op, q, lo, hi, writes)
            self.uses.setdefault(key, []).append(use)
            order.append((op.end, key, use))

    # ---- the runtime thread's side -----------------------------------------------------------------
    def perform(self, op: Op) -> int:
        """Run ``op`` (on its queue's thread) and return its final status; never raises."""
        try:
            for t in op.tensors:
                if t.freed:
                    nrtlog.error("NRT", op.function,
                                 f"{op.function} {op.seq:#x}: tensor '{t.name}' was freed before the operation "
                                 "completed; keep tensors alive until their sequence id completes")
                    self.rt.clock.wait_until(op.end)
                    return int(NrtStatus.INVALID_HANDLE)
            return int(op.work(op))
        except NrtError as exc:
            return int(exc.status)
        except Exception as exc:  # noqa: BLE001 - a bug must become a status, not a dead runtime thread
            nrtlog.error("NRT", op.function, f"{op.function} {op.seq:#x} failed: {exc!r}")
            return int(NrtStatus.FAILURE)

    def shutdown(self) -> None:
        """Complete every pending operation (statuses written, eventfds signalled) and stop the threads."""
        for q in list(self.queues.values()):
            q.stop()


# ---- entry points (called through runtime.interface) ---------------------------------------------------
def units(rt: Runtime) -> Units:
    u = rt.execution_units
    if u is None:
        with rt.lock:
            u = rt.execution_units
            if u is None:
                u = rt.execution_units = Units(rt)
    return u


def _check_ret(ret: Any, function: str) -> CompletionStatus | StatusSink:
    if isinstance(ret, CompletionStatus) or (callable(ret) and not isinstance(ret, type)):
        return ret
    raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid status {ret!r}: pass a CompletionStatus instance (the "
                                                    "Python form of NRT_STATUS *ret, nrt.nrta_status_t()) or a "
                                                    "callable taking the final status")


def _check_queue(queue: Any, xu: XuType, function: str) -> int:
    n = QUEUES[xu]
    if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < n:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid queue {queue!r} for {xu.name}: it has {n} "
                                                       f"queue(s), valid queues are 0-{n - 1}")
    return queue


def _device_tensor(rt: Runtime, t: Any, function: str, what: str = "tensor") -> Tensor:
    t = rt.check_tensor(t, function)
    if t.placement is not Placement.DEVICE:
        raise fail(NrtStatus.INVALID, "NRT", function,
                   f"{what} '{t.name}' is in host memory (placement {t.placement.name}): {function} moves data "
                   "to and from device tensors (NRT_TENSOR_PLACEMENT_DEVICE)")
    return t


def _tensor_queue(rt: Runtime, t: Tensor, queue: int) -> tuple[Units, XuQueue]:
    u = units(rt)
    return u, u.queue(rt.cores[t.vnc], XuType.TENSOR_OP, queue)


def _schedule_transfer(rt: Runtime, t: Tensor, queue: int, function: str, duration: float,
                       move: Callable[[], None], uses: tuple, ret: CompletionStatus | StatusSink) -> int:
    """Schedule a DMA on the tensor's TENSOR_OP queue: at its turn, fault check, the copy, its slot's end."""
    u, q = _tensor_queue(rt, t, queue)

    def work(op: Op) -> int:
        try:
            if faults.active is not None:
                faults.active.hit("tensor_op", (q.cs,))
            move()
        finally:
            rt.clock.wait_until(op.end)
        return int(NrtStatus.SUCCESS)
    return u.schedule(q, function, duration, work, uses, ret)


def tensor_write(rt: Runtime, tensor: Any, buf: Any, offset: Any, size: Any, queue: Any, ret: Any) -> int:
    """nrta_tensor_write: enqueue host -> device on the tensor's TENSOR_OP queue; returns the sequence id."""
    fn = "nrta_tensor_write"
    t = _device_tensor(rt, tensor, fn)
    rt.check_range(t, offset, size, fn)
    queue = _check_queue(queue, XuType.TENSOR_OP, fn)
    ret = _check_ret(ret, fn)
    if buf is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL buffer: pass a bytes-like object or numpy array")
    src = as_bytes(buf, fn)
    if src.nbytes < size:
        raise fail(NrtStatus.INVALID, "NRT", fn,
                   f"Buffer of {src.nbytes} bytes is smaller than the {size} bytes to write to '{t.name}'")

    def move() -> None:
        t.bytes_view()[offset:offset + size] = src[:size]
    return _schedule_transfer(rt, t, queue, fn, transfer_duration(size, rt.machine.generation), move,
                              ((t, offset, size, True),), ret)


def tensor_read(rt: Runtime, buf: Any, tensor: Any, offset: Any, size: Any, queue: Any, ret: Any) -> int:
    """nrta_tensor_read (buffer first): enqueue device -> host on the tensor's TENSOR_OP queue."""
    fn = "nrta_tensor_read"
    t = _device_tensor(rt, tensor, fn)
    rt.check_range(t, offset, size, fn)
    queue = _check_queue(queue, XuType.TENSOR_OP, fn)
    ret = _check_ret(ret, fn)
    if buf is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL buffer: pass a writable bytes-like object or numpy array")
    dst = as_bytes(buf, fn, writable=True)
    if dst.nbytes < size:
        raise fail(NrtStatus.INVALID, "NRT", fn,
                   f"Buffer of {dst.nbytes} bytes is smaller than the {size} bytes to read from '{t.name}'")

    def move() -> None:
        dst[:size] = t.bytes_view()[offset:offset + size]
    return _schedule_transfer(rt, t, queue, fn, transfer_duration(size, rt.machine.generation), move,
                              ((t, offset, size, False),), ret)


def tensor_copy(rt: Runtime, src: Any, src_offset: Any, dst: Any, dst_offset: Any, size: Any, queue: Any,
                ret: Any) -> int:
    """nrta_tensor_copy: a same-core device-to-device copy on the TENSOR_OP queue of that core."""
    fn = "nrta_tensor_copy"
    s = _device_tensor(rt, src, fn, "source tensor")
    d = _device_tensor(rt, dst, fn, "destination tensor")
    rt.check_range(s, src_offset, size, fn)
    rt.check_range(d, dst_offset, size, fn)
    if s.core.global_id != d.core.global_id:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Copy from '{s.name}' (NC {s.vnc}) to '{d.name}' (NC {d.vnc}): "
                                                 "both tensors must be on the same NeuronCore")
    queue = _check_queue(queue, XuType.TENSOR_OP, fn)
    ret = _check_ret(ret, fn)

    def move() -> None:
        d.bytes_view()[dst_offset:dst_offset + size] = s.bytes_view()[src_offset:src_offset + size]
    duration = transfer_duration(size, rt.machine.generation, device_to_device=True)
    return _schedule_transfer(rt, d, queue, fn, duration, move,
                              ((s, src_offset, size, False), (d, dst_offset, size, True)), ret)


def execute_schedule(rt: Runtime, model: Any, inputs: Any, outputs: Any, queue: Any, ret: Any,
                     on_done: Callable[[int], Any] | None = None, block: bool = False) -> int:
    """nrta_execute_schedule: check and bind now, run on the model's COMPUTE queue; the sequence id.

    ``block``: wait for room in a full queue instead of NRT_QUEUE_FULL (the Pythonic ``Model.submit``)."""
    fn = "nrta_execute_schedule"
    queue = _check_queue(queue, XuType.COMPUTE, fn)
    ret = _check_ret(ret, fn)
    req = execution.prepare(rt, model, inputs, outputs)
    m = req.model
    u = units(rt)
    q = u.queue(m.cores[0], XuType.COMPUTE, queue)

    def book() -> tuple[float, float]:
        execution.schedule(rt, req)
        return req.start, req.end

    def work(op: Op) -> int:
        if m.unloaded:
            nrtlog.error("NRT", fn, f"Model {m.id} ({m.name}) was unloaded before its scheduled execution ran; "
                                    "keep models loaded until their sequence ids complete")
            return int(NrtStatus.INVALID_HANDLE)
        if trace.recorder is not None: return int(trace.recorder.run(rt, req, execution.run, True, job_id=op.seq))  # noqa: E701
        return int(execution.run(rt, req, accepted=True))
    uses = tuple((t, 0, t.size, False) for t in req.in_tensors) + tuple((t, 0, t.size, True) for t in req.out_tensors)
    return u.schedule(q, fn, None, work, uses, ret, on_done, book=book, block=block)


def _queue_of_seq(rt: Runtime, seq: Any, function: str) -> tuple[XuQueue, int]:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1 << 64:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid sequence id {seq!r}: expected an nrta_seq_t "
                                                       "(a 64-bit id returned by an nrta_* call)")
    q = units(rt).find(seq_xu_id(seq))
    num = seq_num(seq)
    if q is None or num > q.issued:
        where = "no XU queue of this runtime" if q is None else f"{q.name}, which issued up to {q.issued}"
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid sequence id {seq:#x}: xu id {seq_xu_id(seq)} "
                                                       f"number {num} names {where}")
    return q, num


def _observe(rt: Runtime, q: XuQueue, num: int) -> None:
    end = q.recent_ends.get(num)
    if end is not None:
        rt.clock.wait_until(end)


def is_completed(rt: Runtime, seq: Any) -> bool:
    """nrta_is_completed: whether the operation has completed (its status written); invalid ids NRT_INVALID."""
    q, num = _queue_of_seq(rt, seq, "nrta_is_completed")
    done = num <= q.completed
    if done and num:
        _observe(rt, q, num)
    return done


def last_completed(rt: Runtime, vnc: Any, xu: Any, queue: Any) -> int:
    """nrta_get_sequence: the last completed sequence id of the queue (number 0 when none has)."""
    fn = "nrta_get_sequence"
    cs = rt.core_state(vnc, fn)
    x = _check_xu(xu, fn)
    q = units(rt).queue(cs, x, _check_queue(queue, x, fn))
    num = q.completed
    if num:
        _observe(rt, q, num)
    return seq_id(q.id, num)


def _check_xu(xu: Any, function: str) -> XuType:
    if isinstance(xu, bool) or not isinstance(xu, int) or xu not in (0, 1, 2):
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid execution unit {xu!r}: expected "
                                                       "NRTA_XU_TENSOR_OP (0), NRTA_XU_COMPUTE (1) or "
                                                       "NRTA_XU_COLLECTIVES (2)")
    return XuType(xu)


def _check_eventfd(fd: Any, function: str) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid eventfd {fd!r}: expected the descriptor of an "
                                                       "eventfd (eventfd(2), os.eventfd)")
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = None
    if target != "anon_inode:[eventfd]":
        raise fail(NrtStatus.INVALID, "NRT", function,
                   f"Descriptor {fd} is not an eventfd ({'not open' if target is None else target}); create one "
                   "with eventfd(0, 0) or os.eventfd(0)")
    return fd


def notify_seq(rt: Runtime, seq: Any, fd: Any) -> None:
    """nrta_event_register_seq_id_completion: write 1 to ``fd`` when ``seq`` completes (at once if it has)."""
    fn = "nrta_event_register_seq_id_completion"
    q, num = _queue_of_seq(rt, seq, fn)
    fd = _check_eventfd(fd, fn)
    with q.cv:
        if num > q.completed:
            for op in q.items:
                if op.seq == seq:
                    op.fds.append(fd)
                    return
    _signal(fd, fn)


def notify_xu(rt: Runtime, vnc: Any, xu: Any, queue: Any, fd: Any) -> None:
    """nrta_event_register_xu_completion: write 1 to ``fd`` at every completion on the queue; fd -1 unregisters."""
    fn = "nrta_event_register_xu_completion"
    cs = rt.core_state(vnc, fn)
    x = _check_xu(xu, fn)
    q = units(rt).queue(cs, x, _check_queue(queue, x, fn))
    if fd == -1 and not isinstance(fd, bool):
        with q.cv:
            q.xu_fds.clear()
        return
    fd = _check_eventfd(fd, fn)
    with q.cv:
        if fd not in q.xu_fds:
            q.xu_fds.append(fd)


def shutdown(rt: Runtime) -> None:
    """nrt_close: complete every pending nrta operation first."""
    u = rt.execution_units
    if u is not None:
        u.shutdown()
