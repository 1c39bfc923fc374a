"""Simulated time: per-NeuronCore device timelines, per-thread host time, and a process-wide "now".

Model (both clocks):
- every NeuronCore has a ``Timeline``: the simulated time until which it is busy. An execution reserves
  the slot ``[start, end)`` with ``start = max(submitted, busy_until of each of its cores)`` and
  ``end = start + duration`` (``start + timeout`` when it times out), at the moment it is *called* — so the
  device schedule is a function of the calls, never of which host thread got the interpreter first.
  Independent cores have independent timelines: k threads on k cores × n executions of d end at n·d.
- every host thread has its own simulated time. Under the virtual clock host work is free: a thread's time
  moves only when it waits for the device (a synchronous execute, a drain, a blocking submit, an unload
  that waits) or when the program says so with ``clock.advance(seconds)``. A thread starts at 0.
- ``now()`` is the process-wide time: the latest simulated time any thread has reached (monotonic,
  never earlier than any host thread's time or any completed execution).

Traces read the slot of each execution: ``Timeline.reserve`` returns ``(start, end)`` and the
execution keeps it (``Prepared.start`` / ``Prepared.end``). Execution units of a core (COMPUTE,
TENSOR_OP, COLLECTIVES queues of the explicit async API) are further ``Timeline`` objects of the same
core: reserve on the unit's timeline instead of, or besides, the core's.

The real clock is wall time since the runtime started: every thread's time is the wall time, waiting
sleeps, ``advance`` sleeps, and slots are still reserved at call time so back-pressure follows them.

State owned here: the simulated time of one runtime (each thread's time and the process-wide now);
each core's ``Timeline`` is owned by its ``CoreState`` and booked by ``execution``.
"""
from __future__ import annotations

import threading
import time
import weakref


class Timeline:
    """One sequential device resource (a NeuronCore, later an execution unit of it): busy until ``busy_until``."""

    __slots__ = ("name", "busy_until", "lock")

    def __init__(self, name: str) -> None:
        self.name = name
        self.busy_until = 0.0
        self.lock = threading.Lock()

    def reserve(self, earliest: float, duration: float) -> tuple[float, float]:
        """Book the next slot of ``duration`` starting no earlier than ``earliest``; returns (start, end)."""
        with self.lock:
            start = self.busy_until if self.busy_until > earliest else earliest
            end = self.busy_until = start + duration
        return start, end


def reserve_all(timelines: tuple[Timeline, ...], earliest: float, duration: float) -> tuple[float, float]:
    """Book one slot on several timelines at once (a model spanning cores starts when all are free)."""
    if len(timelines) == 1:
        return timelines[0].reserve(earliest, duration)
    for tl in timelines:
        tl.lock.acquire()
    try:
        start = max([earliest] + [tl.busy_until for tl in timelines])
        end = start + duration
        for tl in timelines:
            tl.busy_until = end
    finally:
        for tl in reversed(timelines):
            tl.lock.release()
    return start, end


class _ThreadTime:
    """One host thread's simulated time. When its thread ends (its thread-local state goes), the time it
    reached is folded into ``_Times.retired``, so the process-wide ``now`` never moves backwards."""

    __slots__ = ("t", "times", "__weakref__")

    def __init__(self, times: _Times) -> None:
        self.t = 0.0
        self.times = times

    def __del__(self) -> None:
        self.times.retire(self)


class _Times:
    """Every host thread's simulated time: the live threads' cells, and the latest any ended thread reached.

    A thread writes only its own cell (no lock on the hot path); ``latest`` reads them all (rarely called:
    traces, the demo), which is why the process-wide time is computed rather than kept.
    """

    __slots__ = ("live", "retired", "lock")

    def __init__(self) -> None:
        self.live: dict[int, weakref.ref[_ThreadTime]] = {}    # id(cell) -> cell, for the live threads
        self.retired = 0.0
        self.lock = threading.RLock()      # reentrant: a cell may be finalised while its thread holds it

    def add(self, cell: _ThreadTime) -> None:
        with self.lock:
            self.live[id(cell)] = weakref.ref(cell)

    def retire(self, cell: _ThreadTime) -> None:
        with self.lock:
            self.live.pop(id(cell), None)
            if cell.t > self.retired:
                self.retired = cell.t

    def latest(self) -> float:
        with self.lock:
            cells = [ref() for ref in self.live.values()]
            return max([self.retired, *(cell.t for cell in cells if cell is not None)])


class _PerThread(threading.local):
    """The calling thread's ``_ThreadTime``, made and registered at its first use."""

    def __init__(self, times: _Times) -> None:
        self.time = _ThreadTime(times)
        times.add(self.time)


class VirtualClock:
    """Simulated seconds that advance only when the runtime (or ``advance``) says so; a 30 s timeout costs nothing."""

    kind = "virtual"

    def __init__(self) -> None:
        self._times = _Times()
        self._host = _PerThread(self._times)

    def now(self) -> float:
        """The process-wide simulated time: the latest any thread has reached."""
        return self._times.latest()

    def thread_now(self) -> float:
        """The calling thread's simulated time (0 for a thread that never waited)."""
        return self._host.time.t

    def wait_until(self, t: float) -> None:
        """The calling thread waits for the device until simulated time ``t`` (never backwards); no wall time."""
        cell = self._host.time
        if t > cell.t:
            cell.t = t

    def reach(self, t: float) -> None:
        """``wait_until(t)`` for a caller that knows its thread's time is not after ``t`` (the hot path)."""
        self._host.time.t = t

    def advance(self, seconds: float) -> None:
        """Count ``seconds`` of host work on the calling thread (host work is otherwise free)."""
        if seconds > 0:
            self.wait_until(self.thread_now() + seconds)


class RealClock:
    """Simulated time is wall time since the runtime started; waiting really sleeps."""

    kind = "real"

    def __init__(self) -> None:
        self._origin = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._origin

    thread_now = now

    def wait_until(self, t: float) -> None:
        """Sleep until simulated time ``t``."""
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)

    reach = wait_until

    def advance(self, seconds: float) -> None:
        """Host work takes real time: sleep ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


def make_clock(kind: str) -> VirtualClock | RealClock:
    """The clock NEURON_SIM_CLOCK asks for (already validated by the config)."""
    return RealClock() if kind == "real" else VirtualClock()
