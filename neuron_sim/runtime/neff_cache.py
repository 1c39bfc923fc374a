"""NEFFs already read and compiled, by content: a load of bytes seen before skips unpacking, parsing and compiling.

Test suites load the same few NEFFs again and again (often each test in its own runtime); a load of bytes equal
to an earlier one reuses its ``Neff`` (read-only weights, views of one unpacked buffer) and its compiled graph
(shareable: scratch buffers are per thread and per binding), so models of one content also hold its weights once.
Identity is the SHA-256 of every byte given to nrt_load plus the settings that change what reading them gives
(hash validation, the size cap). Bounded: only NEFFs of at most ``ENTRY_MAX_BYTES`` (file and unpacked archive)
enter, at most ``MAX_ENTRIES`` of them and ``BUDGET_BYTES`` of unpacked archives, least recently loaded out
first (a compiled graph also keeps float32 copies of bf16 weights, and no scratch once its models unload); an
entry that leaves lives on in the models still using it. Failed loads are never remembered.

State owned here: the process-wide table of entries.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from neuron_sim.neff.reader import Neff

ENTRY_MAX_BYTES = 8 << 20         # larger NEFFs are read every time (hashing them would cost a pass of its own)
BUDGET_BYTES = 32 << 20           # unpacked archives kept, all entries together
MAX_ENTRIES = 64
T = TypeVar("T")

_entries: OrderedDict[tuple, Entry] = OrderedDict()
_held = 0                         # unpacked bytes of the entries
_lock = threading.Lock()


class Entry:
    """One content's ``Neff`` and what loads derive from it alone (its compiled graph, its IO bindings)."""

    __slots__ = ("neff", "_derived")

    def __init__(self, neff: Neff) -> None:
        self.neff = neff
        self._derived: dict[Callable[[Neff], Any], Any] = {}

    def derived(self, make: Callable[[Neff], T]) -> T:
        """``make(neff)``, computed once per entry and function (a call that raises is not remembered)."""
        try:
            return self._derived[make]
        except KeyError:
            value = self._derived[make] = make(self.neff)
            return value


def entry(data: memoryview, settings: tuple, read: Callable[[], Neff]) -> Entry:
    """The entry of ``data`` read with ``settings``: remembered, or made from ``read()`` (and remembered)."""
    if len(data) > ENTRY_MAX_BYTES:
        return Entry(read())
    key = (hashlib.sha256(data).digest(), len(data), settings)
    with _lock:
        hit = _entries.get(key)
        if hit is not None:
            _entries.move_to_end(key)
            return hit
    got = Entry(read())
    if got.neff.unpacked_bytes <= ENTRY_MAX_BYTES:
        _remember(key, got)
    return got


def _remember(key: tuple, got: Entry) -> None:
    global _held
    with _lock:
        old = _entries.pop(key, None)
        if old is not None:
            _held -= old.neff.unpacked_bytes
        _entries[key] = got
        _held += got.neff.unpacked_bytes
        while len(_entries) > MAX_ENTRIES or _held > BUDGET_BYTES:
            _held -= _entries.popitem(last=False)[1].neff.unpacked_bytes


def clear() -> None:
    """Forget every entry (the next load of any content reads it again)."""
    global _held
    with _lock:
        _entries.clear()
        _held = 0


def usage() -> tuple[int, int]:
    """(entries, unpacked bytes they hold)."""
    with _lock:
        return len(_entries), _held
