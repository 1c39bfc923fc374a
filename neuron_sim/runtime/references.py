"""Numpy references for compiler-made NEFFs, whose instructions neuron_sim cannot run.

Register a function keyed by the NEFF's name or uuid; executing such a model calls it with the input
arrays and copies what it returns into the output tensors. Without one, outputs are filled with a
sentinel byte and a warning is logged once per model.

State owned here: the process-wide table of registered numpy references.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import numpy as np

Reference = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

SENTINEL_BYTE = 0xAB  # fills outputs of opaque NEFFs that have no registered reference

_lock = threading.Lock()
_references: dict[str, Reference] = {}


def register_reference(key: str, fn: Reference) -> None:
    """Run ``fn(inputs) -> outputs`` when a NEFF whose name or uuid equals ``key`` is executed."""
    if not callable(fn):
        raise TypeError("register_reference: fn must be callable(inputs: dict[str, ndarray]) -> dict[str, ndarray]")
    with _lock:
        _references[str(key)] = fn


def unregister_reference(key: str) -> None:
    """Forget a reference registered under ``key`` (no error when absent)."""
    with _lock:
        _references.pop(str(key), None)


def find_reference(name: str, uuid: str) -> Reference | None:
    """The reference for a NEFF: by uuid first, then by name."""
    with _lock:
        return _references.get(uuid) or _references.get(name)


def snapshot() -> dict[str, Reference]:
    """A copy of the registry (interface.save_references: test harnesses restore it)."""
    with _lock:
        return dict(_references)


def restore(saved: Mapping[str, Reference]) -> None:
    """Replace the registry with a snapshot."""
    with _lock:
        _references.clear()
        _references.update(saved)
