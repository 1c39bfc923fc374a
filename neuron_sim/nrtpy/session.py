"""The process's one nrtpy singleton: lazy runtime start, ``configure`` (NEURON_RT_VISIBLE_CORES) and ``reset``.

Every NrtpyTensor and NrtpyModel records the generation it was made in; ``reset()`` closes the runtime and starts
a new generation, so every older object raises NrtpyError when used, and its GC finaliser frees nothing.
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


class NrtpySingleton:
    """The nrtpy runtime of this process (``nrtpy.get_nrtpy_singleton()``); its documented member is free_tensor."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.active = False
        self.generation = 0
        self._saved_env: Any = _UNSET        # NEURON_RT_VISIBLE_CORES before the first configure()

    def free_tensor(self, tensor: Any) -> None:
        """Free an NrtpyTensor's device memory now; using it afterwards raises NrtpyError."""
        ref = getattr(tensor, "tensor_ref", None)     # duck-typed: nrtpy.tensor imports this module
        if ref is None:
            raise TypeError(f"free_tensor() takes an NrtpyTensor, got {type(tensor).__name__}")
        ref.free(tensor.name)

    # ---- used by the face -----------------------------------------------------------------------------
    def start(self) -> int:
        """Initialise the runtime on first use; the current generation."""
        with self._lock:
            if not self.active:
                _backend.init()
                self.active = True
            return self.generation

    def check(self, generation: int, what: str, function: str) -> None:
        """NrtpyError when an object of an older generation (before reset()) is used."""
        if generation != self.generation or not self.active:
            raise nrtpy_error(function, f"{what} was invalidated by nrtpy.reset(); create it again")

    def live(self, generation: int) -> bool:
        return self.active and generation == self.generation

    def configure(self, visible_cores: Iterable[int] | None) -> None:
        with self._lock:
            if self.active:
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
            if self.active:
                self.active = False
                _backend.close()
            self.generation += 1
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


SINGLETON = NrtpySingleton()


def configure(visible_cores: Iterable[int] | None = None) -> None:
    """Set NEURON_RT_VISIBLE_CORES for the next (lazy) runtime start; NrtpyError while the runtime is active."""
    SINGLETON.configure(visible_cores)


def reset() -> None:
    """Close the runtime, clear the configuration and invalidate every NrtpyTensor and NrtpyModel."""
    SINGLETON.reset()


def get_nrtpy_singleton() -> NrtpySingleton:
    """The process's nrtpy singleton, starting the runtime if it is not running yet."""
    SINGLETON.start()
    return SINGLETON
