"""nrtpy's session with the runtime: lazy runtime start, ``configure`` (NEURON_RT_VISIBLE_CORES) and ``reset``.

Every NrtpyTensor and NrtpyModel records the runtime it was made in (the interface's opaque runtime handle);
once that runtime is closed (``reset()``, or any face's nrt_close) the object raises NrtpyError when used and
its GC finaliser frees nothing. Whether a runtime is live is the runtime's own state, read through the
interface; the session keeps only what ``configure`` saved. The public singleton object
(``get_nrtpy_singleton()``) is ``singleton.py``, above the tensors it frees.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from neuron_sim.nrtpy import _backend
from neuron_sim.nrtpy.errors import nrtpy_error

VISIBLE_CORES = "NEURON_RT_VISIBLE_CORES"
_UNSET = object()


class Session:
    """This process's nrtpy session: starts the runtime on first use, remembers the core setting to restore."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._saved_env: Any = _UNSET        # NEURON_RT_VISIBLE_CORES before the first configure()

    def start(self) -> Any:
        """The live runtime (started now if none is): the token objects made now record."""
        with self._lock:
            runtime = _backend.live_runtime()
            return _backend.init() if runtime is None else runtime

    def check(self, runtime: Any, what: str, function: str) -> None:
        """NrtpyError when an object of a runtime that was closed since (by reset()) is used."""
        if not self.live(runtime):
            raise nrtpy_error(function, f"{what} was invalidated by nrtpy.reset(); create it again")

    def live(self, runtime: Any) -> bool:
        return runtime is _backend.live_runtime()

    def configure(self, visible_cores: Iterable[int] | None) -> None:
        with self._lock:
            if _backend.live_runtime() is not None:
                raise nrtpy_error("nrtpy.configure", "nrtpy.configure() called while the runtime is active; "
                                  "call nrtpy.reset() first, then configure()")
            if visible_cores is None:
                return
            value = ",".join(str(c) for c in _core_ids(visible_cores))
            if self._saved_env is _UNSET:
                self._saved_env = os.environ.get(VISIBLE_CORES)
            os.environ[VISIBLE_CORES] = value

    def reset(self) -> None:
        with self._lock:
            _backend.close()
            if self._saved_env is not _UNSET:
                if self._saved_env is None:
                    os.environ.pop(VISIBLE_CORES, None)
                else:
                    os.environ[VISIBLE_CORES] = self._saved_env
                self._saved_env = _UNSET


def _core_ids(visible_cores: Any) -> list[int]:
    if isinstance(visible_cores, (int, np.integer)) or not isinstance(visible_cores, Iterable) \
            or isinstance(visible_cores, (str, bytes)):
        raise TypeError(f"visible_cores must be an iterable of core ids such as [0, 1] or range(4), "
                        f"not {type(visible_cores).__name__} {visible_cores!r}")
    ids = list(visible_cores)
    for c in ids:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"visible_cores elements must be ints, got {type(c).__name__} {c!r}")
    if not ids:
        raise ValueError("visible_cores is empty: give at least one core id, or None to leave "
                         f"{VISIBLE_CORES} unchanged")
    negative = [int(c) for c in ids if c < 0]
    if negative:
        raise ValueError(f"visible_cores must be non-negative core ids, got {negative}")
    return [int(c) for c in ids]


SESSION = Session()
