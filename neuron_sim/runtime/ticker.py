"""One daemon thread per process for a live runtime's periodic work (its published record, the fault plan).

nrt_init starts no thread of its own: it schedules tasks here, and the thread (started once, on the first
schedule of the process) runs them; with no task scheduled it only glances at its table once a second. A
schedule wakes the thread only when the task is due before the thread's next look: waking it on every nrt_init
would hand the GIL over in the middle of the call, which on a busy machine can stall it for a scheduling round.
A task is a callable returning the seconds until its next run, or None when it is done; tasks run one at a time
on the thread, outside the ticker's lock.
``cancel`` never waits for a running task: its owner makes a late run harmless (the publisher checks it was
closed under its own lock). A forked child starts with no task and no thread; its next schedule starts one.

State owned here: the task table and the thread.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

Task = Callable[[], "float | None"]

IDLE_LOOK_S = 1.0           # how often the thread looks at an empty table

_cond = threading.Condition(threading.Lock())
_tasks: dict[str, tuple[float, Task, object]] = {}     # name -> (monotonic due time, task, token)
_thread: threading.Thread | None = None
_look_at = 0.0              # (monotonic) when the thread next looks at the table by itself; 0: right after a task


def schedule(name: str, task: Task, delay: float) -> None:
    """Run ``task`` ``delay`` seconds from now (replacing any task of that name), then as often as it asks."""
    global _thread
    with _cond:
        due = time.monotonic() + delay
        _tasks[name] = (due, task, object())
        start = _thread is None
        if start:
            _thread = threading.Thread(target=_run, name="nrt-ticker", daemon=True)
        elif due < _look_at:
            _cond.notify()
    if start:
        _thread.start()


def cancel(name: str) -> None:
    """Drop the task ``name`` (a run in progress finishes; it is not run again)."""
    with _cond:
        _tasks.pop(name, None)


def scheduled(name: str) -> bool:
    """Whether a task of that name is scheduled (for tests and tools)."""
    with _cond:
        return name in _tasks


def _next() -> tuple[str, Task, object]:
    """Wait (with ``_cond`` held) until a task is due; it stays in the table, due never, while it runs."""
    global _look_at
    while True:
        now = time.monotonic()
        if not _tasks:
            _look_at = now + IDLE_LOOK_S
            _cond.wait(IDLE_LOOK_S)
            continue
        name, (due, task, token) = min(_tasks.items(), key=lambda item: item[1][0])
        if due <= now:
            _tasks[name] = (float("inf"), task, token)
            _look_at = 0.0
            return name, task, token
        _look_at = due
        _cond.wait(due - now)


def _run() -> None:
    while True:
        with _cond:
            name, task, token = _next()
        try:
            delay = task()
        except Exception:  # noqa: BLE001 - a failing task is dropped; its owner reports its own failures
            delay = None
        with _cond:
            current = _tasks.get(name)
            if current is not None and current[2] is token:      # neither cancelled nor replaced meanwhile
                if delay is None:
                    del _tasks[name]
                else:
                    _tasks[name] = (time.monotonic() + delay, task, token)


def _after_fork_in_child() -> None:
    global _cond, _thread, _look_at
    _cond = threading.Condition(threading.Lock())
    _tasks.clear()
    _thread = None
    _look_at = 0.0


os.register_at_fork(after_in_child=_after_fork_in_child)
