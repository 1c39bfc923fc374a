"""The process's one runtime instance: uninitialised → initialised → closed (→ initialised again).

State owned here: the live ``Runtime`` of the process and whether one was ever closed. Closing drains the
async queue, unloads every model and then lets the Runtime return its own bytes and cores.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping

from neuron_sim.nrtlog import fail
from neuron_sim.runtime import faults, trace
from neuron_sim.runtime.async_exec import ensure_queue
from neuron_sim.runtime.core import Runtime, start_runtime
from neuron_sim.runtime.models import unload_all
from neuron_sim.runtime.publish import attach as publish_state
from neuron_sim.status import NrtError, NrtStatus

_lock = threading.Lock()
_runtime: Runtime | None = None
_ever_closed = False


def init(environ: Mapping[str, str] | None = None) -> Runtime:
    """nrt_init: a second init while initialised is NRT_FAILURE; init after close starts afresh."""
    global _runtime
    with _lock:
        if _runtime is not None:
            raise fail(NrtStatus.FAILURE, "NRT", "nrt_init",
                       "Neuron Runtime is already initialized in this process; call nrt_close() before nrt_init()")
        rt = start_runtime(environ)
        try:
            faults.start(rt)
        except NrtError:
            faults.stop()
            rt.close()
            raise
        ensure_queue(rt)
        rt.publisher = publish_state(rt)
        trace.on_init(rt, environ)
        _runtime = rt
        return rt


def close(only: Runtime | None = None) -> None:
    """nrt_close: release everything; does nothing when not initialised (or when ``only`` is not the live one).

    From an async execution callback it is NRT_FAILURE (logged): it would wait for that callback's request.
    """
    global _runtime, _ever_closed
    with _lock:
        rt = _runtime
        if rt is None or (only is not None and rt is not only):
            return
        if rt.async_queue is not None:
            rt.async_queue.refuse_in_callback("nrt_close")
        _runtime = None
        _ever_closed = True
    if rt.execution_units is not None:
        rt.execution_units.shutdown()    # every pending nrta_* operation completes (status written) first
    if rt.async_queue is not None:
        rt.async_queue.shutdown()
    unload_all(rt)
    rt.close()
    trace.on_close(rt)
    faults.stop()


def current(function: str) -> Runtime:
    """The live runtime, or NRT_UNINITIALIZED before nrt_init / NRT_CLOSED after nrt_close."""
    rt = _runtime
    if rt is not None:
        return rt
    if _ever_closed:
        raise fail(NrtStatus.CLOSED, "NRT", function, f"{function} called after nrt_close(); call nrt_init() first")
    raise fail(NrtStatus.UNINITIALIZED, "NRT", function, f"{function} called before nrt_init()")


def peek() -> Runtime | None:
    """The live runtime or None, without logging."""
    return _runtime


def state() -> str:
    """``"initialized"``, ``"closed"`` (after nrt_close) or ``"uninitialized"``."""
    if _runtime is not None:
        return "initialized"
    return "closed" if _ever_closed else "uninitialized"


def reset() -> None:
    """Close any runtime and return to the never-initialised state (interface.reset_process, for test isolation)."""
    global _ever_closed
    close()
    _ever_closed = False
