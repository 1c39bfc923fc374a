"""``NrtTensor`` (the device-tensor handle) and ``NrtpyTensor`` (shape, dtype and numpy in and out).

A tensor's device memory is freed when its NrtTensor is garbage-collected, or at once by
``get_nrtpy_singleton().free_tensor(t)``; either frees through the runtime (nrt_tensor_free).
"""
from __future__ import annotations

import itertools
import math
import weakref
from typing import Any

import numpy as np

from neuron_sim.nrtpy import _backend
from neuron_sim.nrtpy.errors import nrtpy_error
from neuron_sim.nrtpy.session import SESSION

_names = itertools.count()


def _release(handle: Any, runtime: Any) -> None:
    """GC finaliser: free the runtime tensor unless reset() already closed the runtime it belonged to."""
    if SESSION.live(runtime):
        _backend.free(handle)


class NrtTensor:
    """Low-level handle of one device tensor (nrt_tensor_t): its bytes, core and lifetime."""

    __slots__ = ("handle", "size", "core_id", "runtime", "_finalizer", "__weakref__")

    def __init__(self, handle: Any, size: int, core_id: int, runtime: Any) -> None:
        self.handle = handle
        self.size = size
        self.core_id = core_id
        self.runtime = runtime
        self._finalizer = weakref.finalize(self, _release, handle, runtime)
        self._finalizer.atexit = False

    @classmethod
    def allocate(cls, size: int, core_id: int, name: str) -> "NrtTensor":
        runtime = SESSION.start()
        handle = _backend.allocate(core_id, size, name, f"Failed to allocate tensor '{name}' of {size} bytes "
                                                        f"on NeuronCore {core_id}")
        return cls(handle, size, core_id, runtime)

    @property
    def freed(self) -> bool:
        return not self._finalizer.alive

    def checked(self, what: str, function: str) -> Any:
        """The runtime handle, or NrtpyError if the tensor was freed or invalidated by reset()."""
        SESSION.check(self.runtime, what, function)
        if self.freed:
            raise nrtpy_error(function, f"{what} was freed with free_tensor(); allocate a new one with "
                                        "NrtpyTensor.from_numpy()")
        return self.handle

    def free(self, name: str) -> None:
        self.checked(f"NrtpyTensor '{name}'", "nrtpy.free_tensor")
        self._finalizer()


class NrtpyTensor:
    """A tensor in device memory (HBM) of one NeuronCore, with numpy in and out."""

    def __init__(self, tensor_ref: NrtTensor, shape: tuple[int, ...] | int, dtype: np.dtype,
                 name: str | None = None) -> None:
        if not isinstance(tensor_ref, NrtTensor):
            raise TypeError(f"tensor_ref must be an NrtTensor, got {type(tensor_ref).__name__}")
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
            raise ValueError(f"shape must be non-negative ints (or one int for 1-D), got {shape!r}")
        self.shape: tuple[int, ...] = tuple(int(d) for d in dims)
        self.dtype: np.dtype = np.dtype(dtype)
        if math.prod(self.shape) * self.dtype.itemsize != tensor_ref.size:
            raise ValueError(f"shape {list(self.shape)} of {self.dtype} is "
                             f"{math.prod(self.shape) * self.dtype.itemsize} bytes but the tensor holds "
                             f"{tensor_ref.size} bytes")
        self.name: str = name if name is not None else f"nrtpy_tensor_{next(_names)}"
        self.tensor_ref = tensor_ref

    @classmethod
    def from_numpy(cls, array: Any, name: str | None = None, core_id: int = 0) -> "NrtpyTensor":
        """Allocate device memory on ``core_id`` and copy the (contiguous) array in."""
        arr = np.ascontiguousarray(array)
        if arr.dtype.hasobject:
            raise TypeError("from_numpy needs an array of numbers, got dtype object (Python objects have no "
                            "device representation)")
        label = name if name is not None else f"nrtpy_tensor_{next(_names)}"
        ref = NrtTensor.allocate(arr.nbytes, core_id, label)
        _backend.write(ref.handle, arr, f"Failed to write tensor '{label}'")
        return cls(ref, arr.shape, arr.dtype, label)

    @property
    def core_id(self) -> int:
        return self.tensor_ref.core_id

    def handle(self, function: str) -> Any:
        """The runtime handle for a call (NrtpyError when freed or invalidated)."""
        return self.tensor_ref.checked(f"NrtpyTensor '{self.name}'", function)

    def write_from_numpy(self, array: Any) -> None:
        """Overwrite the tensor in place; the array's byte size must equal the tensor's (shape/dtype may differ)."""
        handle = self.handle("NrtpyTensor.write_from_numpy")
        arr = np.ascontiguousarray(array)
        if arr.nbytes != self.tensor_ref.size:
            raise ValueError(f"write_from_numpy: the array has {arr.nbytes} bytes ({arr.dtype} {list(arr.shape)}) "
                             f"but tensor '{self.name}' holds {self.tensor_ref.size} bytes ({self.dtype} "
                             f"{list(self.shape)}); shape and dtype may differ, the byte size may not")
        _backend.write(handle, arr, f"Failed to write tensor '{self.name}'")

    def numpy(self) -> np.ndarray:
        """A copy of the device contents with the tensor's shape and dtype."""
        handle = self.handle("NrtpyTensor.numpy")
        out = np.empty(self.shape, self.dtype)
        _backend.read(handle, out, f"Failed to read tensor '{self.name}'")
        return out

    def __repr__(self) -> str:
        return f"NrtpyTensor(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, core_id={self.core_id})"
