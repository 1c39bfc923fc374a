"""neuron_sim: the AWS Neuron Runtime (libnrt) and the Trainium/Inferentia machines it drives, emulated in Python.

Faces: ``neuron_sim.nrt`` (flat libnrt-style API returning NRT status codes), ``neuron_sim.Runtime``
(Pythonic), the ``neuron-sim`` command line. See README.md. The Pythonic names load on first use, so a
process that only needs ``neuron_sim.nrt`` or the reservation layer starts quickly.
"""
from __future__ import annotations

import importlib
from typing import Any

from neuron_sim.status import NrtError, NrtStatus, status_name

_LAZY = {
    "Model": "neuron_sim.api", "NumericalError": "neuron_sim.api", "Runtime": "neuron_sim.api",
    "Tensor": "neuron_sim.api", "TensorInfo": "neuron_sim.api",
    "neuron_cores_context": "neuron_sim.api", "multicore_context": "neuron_sim.api",
    "register_reference": "neuron_sim.runtime.references", "unregister_reference": "neuron_sim.runtime.references",
}

__all__ = ["NrtError", "NrtStatus", "status_name", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuron_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
