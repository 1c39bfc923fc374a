"""Tensors and tensor sets with nrt.h semantics: lazily materialised storage, refcounted slices, caller buffers.

State owned here: each ``Storage`` (its bytes and reference count) and each ``Tensor``'s cached views.
``pending`` and ``completions`` of a Tensor are changed by async_exec under the runtime's ``tensor_cv``.
"""
from __future__ import annotations

import itertools
import threading
from enum import IntEnum
from typing import Any

import numpy as np

from neuron_sim.hardware.model import LogicalCore
from neuron_sim.runtime.memory import Allocation, DeviceMemory


class Placement(IntEnum):
    """nrt_tensor_placement_t."""

    DEVICE = 0
    HOST = 1
    VIRTUAL = 2


FILL_BYTES = {"zero": 0x00, "nan": 0xFF}  # 0xFF.. is NaN in fp32, fp16, bf16, fp8 e4m3fn and e5m2
_first_touch = threading.Lock()            # makes materialising a storage atomic (taken once per storage)


class Storage:
    """Bytes behind one tensor and its slices; real host memory appears only on first touch."""

    __slots__ = ("nbytes", "_buf", "fill", "refs", "alloc", "memory")

    def __init__(self, nbytes: int, fill: int, alloc: Allocation | None = None,
                 memory: DeviceMemory | None = None, buffer: np.ndarray | None = None) -> None:
        self.nbytes = nbytes
        self._buf = buffer
        self.fill = fill
        self.refs = 1
        self.alloc = alloc
        self.memory = memory

    def buffer(self) -> np.ndarray:
        """The bytes as a uint8 array, created once: its address stays valid for the storage's life
        (nrt_tensor_get_va). Zero pages cost nothing until written: np.zeros is lazy."""
        buf = self._buf
        if buf is None:
            with _first_touch:          # two threads touching a fresh tensor must get the same bytes
                buf = self._buf
                if buf is None:
                    buf = self._buf = (np.zeros(self.nbytes, np.uint8) if self.fill == 0
                                       else np.full(self.nbytes, self.fill, np.uint8))
        return buf

    @property
    def materialised(self) -> bool:
        return self._buf is not None

    def retain(self) -> None:
        self.refs += 1

    def release(self) -> None:
        """Drop one reference; the last one returns the device bytes."""
        self.refs -= 1
        if self.refs <= 0:
            if self.memory is not None:
                self.memory.free(self.alloc)
            self.alloc = None
            self._buf = None


_stale_counter = itertools.count(1)


class Tensor:
    """An nrt_tensor_t: a window [offset, offset+size) of a Storage on a NeuronCore or in host memory."""

    stale = 0     # changes whenever any tensor's views go stale: execute's one-comparison check of its hot binding

    __slots__ = ("name", "placement", "core", "vnc", "size", "offset", "storage", "freed", "pending",
                 "completions", "completion_ends", "completion_base", "completion_floor", "ready_at", "_views",
                 "epoch", "__weakref__")

    def __init__(self, name: str, placement: Placement, core: LogicalCore | None, vnc: int,
                 size: int, storage: Storage | None, offset: int = 0) -> None:
        self.name = name
        self.placement = placement
        self.core = core
        self.vnc = vnc
        self.size = size
        self.offset = offset
        self.storage = storage
        self.freed = False
        self.pending = 0          # async requests that still use this tensor
        self.completions = 0      # output completion counter (nrt_tensor_check_output_completion)
        self.completion_ends: list[float] = []   # sorted simulated ends of requests from count completion_base on
        self.completion_base = 0                 # counts below this were dropped from completion_ends ...
        self.completion_floor = 0.0              # ... and were all reached by this simulated time
        self.ready_at = 0.0       # simulated end of the last async request using this tensor
        self._views: dict = {}
        self.epoch = 0            # bumped when its views go stale (freed, new storage): cached bindings recheck

    def bytes_view(self) -> np.ndarray:
        """The tensor's bytes (a view, never a copy)."""
        if self.storage is None:
            return np.zeros(0, np.uint8)
        return self.storage.buffer()[self.offset:self.offset + self.size]

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A typed view of the tensor's bytes; cached, so the hot path builds it once."""
        key = (dtype, shape)
        v = self._views.get(key)
        if v is None:
            v = self.bytes_view().view(dtype).reshape(shape)
            self._views[key] = v
        return v

    def free(self) -> None:
        """Mark freed and drop this tensor's reference to its storage (the last one returns the device bytes)."""
        if self.freed:
            return
        self.freed = True
        if self.storage is not None:
            self.storage.release()
        self.drop_views()

    def drop_views(self) -> None:
        self._views.clear()
        self.epoch += 1
        Tensor.stale = next(_stale_counter)   # a fresh value (atomic): every binding made before is rechecked

    def __repr__(self) -> str:
        where = f"vnc {self.vnc}" if self.placement is Placement.DEVICE else self.placement.name.lower()
        return f"<Tensor {self.name!r} {self.size} B on {where}{' (freed)' if self.freed else ''}>"


class TensorSet(dict):
    """nrt_tensor_set_t: a name → tensor map of borrowed tensors; destroying it frees none of them.

    ``version`` changes with every change of the map, so execute can keep a checked binding and revalidate it
    with one comparison.
    """

    destroyed: bool = False
    version: int = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.version += 1
        super().__delitem__(key)

    def _changed(name: str):  # type: ignore[no-untyped-def]  # noqa: N805 - builds the methods below
        def method(self, *args: Any, **kwargs: Any) -> Any:
            self.version += 1
            return getattr(dict, name)(self, *args, **kwargs)
        method.__name__ = name
        return method

    pop = _changed("pop")
    popitem = _changed("popitem")
    clear = _changed("clear")
    update = _changed("update")
    setdefault = _changed("setdefault")
    __ior__ = _changed("__ior__")
    del _changed
