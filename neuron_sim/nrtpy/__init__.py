"""nrtpy on neuron_sim: code written for AWS's nrtpy runs here after ``from neuron_sim import nrtpy``.

The names, signatures, defaults and errors of nrtpy (spec nrt-api.md §1); every operation goes through the
runtime (``_backend``), so reservation, placement, memory accounting and timeouts behave as in libnrt.
See docs/nrtpy.md for coverage and the choices where nrtpy's documentation is silent.
"""
from __future__ import annotations

from neuron_sim.nrtpy.errors import NrtError, NrtpyError
from neuron_sim.nrtpy.model import BenchmarkResult, NrtpyModel, TensorMetadata
from neuron_sim.nrtpy.singleton import configure, get_nrtpy_singleton, reset
from neuron_sim.nrtpy.tensor import NrtpyTensor, NrtTensor

__all__ = [
    "BenchmarkResult", "NrtError", "NrtTensor", "NrtpyError", "NrtpyModel", "NrtpyTensor", "TensorMetadata",
    "configure", "get_nrtpy_singleton", "reset",
]
