"""The virtual clock's process-wide time: the latest any host thread reached, ended threads included.

Each thread writes only its own time (no lock on the execute path); ``now`` is computed from the live
threads' times and the latest an ended thread reached, so it must never move backwards when a thread ends.
"""
from __future__ import annotations

import gc
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim.runtime.clock import VirtualClock


def _in_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_a_new_thread_starts_at_zero_and_reaching_moves_only_its_own_time():
    clock = VirtualClock()
    clock.reach(2.0)
    seen = []
    _in_thread(lambda: seen.append(clock.thread_now()))
    assert seen == [0.0]
    assert clock.thread_now() == 2.0 and clock.now() == 2.0


def test_now_keeps_the_time_an_ended_thread_reached():
    clock = VirtualClock()
    _in_thread(lambda: clock.wait_until(5.0))
    gc.collect()
    assert clock.now() == 5.0
    assert clock.thread_now() == 0.0
    assert len(clock._times.live) <= 1      # the ended thread's cell is gone, its time kept as retired


def test_cells_of_ended_threads_do_not_accumulate():
    clock = VirtualClock()
    for i in range(200):
        _in_thread(lambda i=i: clock.reach(float(i)))
    gc.collect()
    assert clock.now() == 199.0
    assert len(clock._times.live) <= 1


def test_wait_until_never_moves_a_thread_backwards():
    clock = VirtualClock()
    clock.wait_until(3.0)
    clock.wait_until(1.0)
    clock.advance(0.5)
    assert clock.thread_now() == 3.5 and clock.now() == 3.5


def test_many_threads_racing_leave_now_at_the_maximum():
    clock = VirtualClock()
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(2000):
            clock.reach(k * 10_000 + i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert clock.now() == 7 * 10_000 + 1999


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["wait", "advance", "end"]),
                          st.floats(0, 100, allow_nan=False)), max_size=30))
def test_now_is_the_running_maximum_whatever_threads_do(steps):
    """A model of the clock: each of 4 worker slots waits, advances or ends its thread; ``now`` is always the
    maximum any thread ever reached, and never decreases."""
    clock = VirtualClock()
    model_times = [0.0] * 4
    reached = 0.0
    workers: list[_Worker | None] = [None] * 4
    previous = clock.now()
    for slot, action, value in steps:
        worker = workers[slot] or _Worker(clock)
        workers[slot] = worker
        if action == "end":
            worker.stop()
            workers[slot] = None
            model_times[slot] = 0.0
        else:
            worker.do(clock.wait_until if action == "wait" else clock.advance, value)
            model_times[slot] = max(model_times[slot], value) if action == "wait" else model_times[slot] + value
            assert worker.do(clock.thread_now) == model_times[slot]
            reached = max(reached, model_times[slot])
        now = clock.now()
        assert now == reached and now >= previous
        previous = now
    for w in workers:
        if w is not None:
            w.stop()


class _Worker:
    """A thread that runs the calls it is given, one at a time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._calls: list = []
        self._cv = threading.Condition()
        self._result = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._calls)
                call = self._calls.pop()
                if call is None:
                    return
                fn, args = call
                self._result = fn(*args)
                self._done = True
                self._cv.notify_all()

    def do(self, fn, *args):
        with self._cv:
            self._done = False
            self._calls.append((fn, args))
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._done)
            return self._result

    def stop(self) -> None:
        with self._cv:
            self._calls.append(None)
            self._cv.notify_all()
        self._thread.join()
