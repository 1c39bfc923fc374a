"""Stochastic rounding of fp32 results to bf16 / fp16 / fp8 (NEURON_RT_STOCHASTIC_ROUNDING_EN / _SEED).

An fp32 value ``x`` between two neighbours ``a`` (nearer zero) and ``b`` of the target format rounds to ``b`` with
probability ``(|x| - |a|) / (|b| - |a|)`` and to ``a`` otherwise, so the mean of many roundings is ``x``. Exact
values, NaN and values that overflow under round-to-nearest-even keep that rounding. Random numbers come from
the generator the runtime installs at nrt_init (seeded with NEURON_RT_STOCHASTIC_ROUNDING_SEED): the same seed
and the same executions give the same bits. Without one installed every cast rounds to nearest even.

State owned here: the installed generator (the runtime owns it and installs/removes it) and its lock.
"""
from __future__ import annotations

import threading

import numpy as np

F32 = np.dtype(np.float32)
_UINT = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16)}

generator: np.random.Generator | None = None
_lock = threading.Lock()


def install(gen: np.random.Generator | None) -> None:
    """Make casts inside executions round stochastically with ``gen`` (None: round to nearest even)."""
    global generator
    with _lock:
        generator = gen


def stochastic_round_into(x: np.ndarray, dst: np.dtype, out: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Round float32 ``x`` to ``dst`` (a 1- or 2-byte float) stochastically into ``out``."""
    res = np.empty(x.shape, dst)
    np.copyto(res, x, casting="unsafe")                     # round to nearest even first
    back = res.astype(F32)
    inexact = np.flatnonzero((back != x) & np.isfinite(back))
    if inexact.size:
        flat = res.reshape(-1)
        xv = np.abs(x.reshape(-1)[inexact])
        bits = flat[inexact].view(_UINT[dst.itemsize])
        yb = np.abs(back.reshape(-1)[inexact])
        rounded_away = yb > xv                              # RNE went away from zero: the other one is nearer
        other = np.where(rounded_away, bits - 1, bits + 1).astype(bits.dtype)
        ob = np.abs(other.view(dst).astype(F32))
        near, far = np.where(rounded_away, ob, yb), np.where(rounded_away, yb, ob)
        with np.errstate(invalid="ignore"):
            p_far = (xv - near) / (far - near)
        with _lock:
            u = gen.random(inexact.size, dtype=np.float32)
        take_far = u < p_far
        flat[inexact] = np.where(take_far == rounded_away, bits, other).view(dst)
    np.copyto(out, res)
    return out
