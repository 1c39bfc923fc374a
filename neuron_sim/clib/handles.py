"""Opaque C handles (``nrt_model_t *``, ``nrt_tensor_t *``, ``nrt_tensor_set_t *``) for runtime objects.

A handle is a pointer value the library never dereferences: ``BASE + 16 * n + 8`` for a counter n that is
never reused, so a stale pointer can never name a newer object, and (being 8 mod 16) never equals the
address of memory the library hands out with malloc alignment (tensor info arrays). Retired handles
(freed tensors, unloaded models, destroyed sets) keep pointing at their retired object for the last
``RETIRED_KEPT`` retirements, so a use after free gets the runtime's own answer for a freed object
(``NRT_INVALID_HANDLE``); older or never-issued pointers resolve to an ``UnknownHandle``.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any

BASE = 0x4E52_0000_0000        # "NR": far from the heap and from mmap areas on Linux
RETIRED_KEPT = 4096


class UnknownHandle:
    """A pointer the library did not issue (or retired long ago); every runtime check rejects it."""

    __slots__ = ("address",)

    def __init__(self, address: int) -> None:
        self.address = address

    def __repr__(self) -> str:
        return f"<unknown handle {self.address:#x}>"


class HandleTable:
    """Pointer ↔ object for one library instance; safe for C callers on many threads."""

    def __init__(self, ffi: Any) -> None:
        self._ffi = ffi
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._live: dict[Any, Any] = {}           # cdata pointer → object (cdata hash/eq is the address)
        self._by_object: dict[int, Any] = {}      # id(object) → cdata pointer, for live objects
        self._retired: OrderedDict[Any, Any] = OrderedDict()

    def issue(self, obj: Any, ctype: str = "void *") -> Any:
        """A new handle for ``obj`` (or its existing one)."""
        with self._lock:
            ptr = self._by_object.get(id(obj))
            if ptr is None:
                ptr = self._ffi.cast(ctype, BASE + 16 * next(self._counter) + 8)
                self._live[ptr] = obj
                self._by_object[id(obj)] = ptr
            return ptr

    def adopt(self, ptr: Any, obj: Any) -> None:
        """Register memory the library allocated itself (its own address is the handle)."""
        with self._lock:
            self._live[ptr] = obj
            self._by_object[id(obj)] = ptr

    def get(self, ptr: Any) -> Any:
        """The object behind a pointer: live, retired, None for NULL, else an UnknownHandle."""
        obj = self._live.get(ptr)
        if obj is None:
            obj = self._retired.get(ptr)
            if obj is None:
                address = int(self._ffi.cast("uintptr_t", ptr))
                return None if address == 0 else UnknownHandle(address)
        return obj

    def retire(self, ptr: Any) -> None:
        """The object is gone: later lookups see the retired object, for a while."""
        with self._lock:
            obj = self._live.pop(ptr, None)
            if obj is None:
                return
            self._by_object.pop(id(obj), None)
            self._retired[ptr] = obj
            while len(self._retired) > RETIRED_KEPT:
                self._retired.popitem(last=False)
