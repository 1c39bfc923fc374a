"""The process's one runtime instance: uninitialised → initialised → closed (→ initialised again)."""
from __future__ import annotations

import threading
from collections.abc import Mapping

from neuron_sim import nrtlog
from neuron_sim.runtime.async_exec import ensure_queue
from neuron_sim.runtime.core import Runtime, start_runtime
from neuron_sim.status import NrtError, NrtStatus

_lock = threading.Lock()
_runtime: Runtime | None = None
_ever_closed = False


def init(environ: Mapping[str, str] | None = None) -> Runtime:
    """nrt_init: a second init while initialised is NRT_FAILURE; init after close starts afresh."""
    global _runtime
    with _lock:
        if _runtime is not None:
            msg = "Neuron Runtime is already initialized in this process; call nrt_close() before nrt_init()"
            nrtlog.error("NRT", "nrt_init", msg)
            raise NrtError(NrtStatus.FAILURE, msg)
        rt = start_runtime(environ)
        ensure_queue(rt)
        _runtime = rt
        return rt


def close() -> None:
    """nrt_close: release everything; calling it when not initialised does nothing.

    From an async execution callback it is NRT_FAILURE (logged): it would wait for that callback's request.
    """
    global _runtime, _ever_closed
    with _lock:
        rt = _runtime
        if rt is not None and rt.async_queue is not None:
            rt.async_queue.refuse_in_callback("nrt_close")
        _runtime = None
        if rt is not None:
            _ever_closed = True
    if rt is not None:
        rt.close()


def current(function: str) -> Runtime:
    """The live runtime, or NRT_UNINITIALIZED before nrt_init / NRT_CLOSED after nrt_close."""
    rt = _runtime
    if rt is not None:
        return rt
    if _ever_closed:
        msg = f"{function} called after nrt_close(); call nrt_init() first"
        nrtlog.error("NRT", function, msg)
        raise NrtError(NrtStatus.CLOSED, msg)
    msg = f"{function} called before nrt_init()"
    nrtlog.error("NRT", function, msg)
    raise NrtError(NrtStatus.UNINITIALIZED, msg)


def peek() -> Runtime | None:
    """The live runtime or None, without logging."""
    return _runtime


def reset_for_tests() -> None:
    """Close any runtime and forget that one was ever closed (test isolation)."""
    global _ever_closed
    close()
    _ever_closed = False
