"""Simulated time: a virtual clock that never sleeps, or a real one that sleeps to match simulated durations.

State owned here: the simulated time of one runtime.
"""
from __future__ import annotations

import threading
import time


class VirtualClock:
    """Simulated seconds that advance only when the runtime says so; a 30 s timeout costs no wall time."""

    kind = "virtual"

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def wait_until(self, t: float) -> None:
        """Move simulated time forward to ``t`` (never backwards)."""
        with self._lock:
            if t > self._now:
                self._now = t


class RealClock:
    """Simulated time is wall time since the runtime started; waiting really sleeps."""

    kind = "real"

    def __init__(self) -> None:
        self._origin = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._origin

    def wait_until(self, t: float) -> None:
        """Sleep until simulated time ``t``."""
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)


def make_clock(kind: str) -> VirtualClock | RealClock:
    """The clock NEURON_SIM_CLOCK asks for (already validated by the config)."""
    return RealClock() if kind == "real" else VirtualClock()
