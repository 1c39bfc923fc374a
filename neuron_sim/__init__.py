"""neuron_sim: the AWS Neuron Runtime (libnrt) and the Trainium/Inferentia machines it drives, emulated in Python.

Faces: ``neuron_sim.nrt`` (flat libnrt-style API returning NRT status codes), ``neuron_sim.Runtime``
(Pythonic), the ``neuron-sim`` command line. See README.md.
"""
from neuron_sim.api import Model, NumericalError, Runtime, Tensor, TensorInfo
from neuron_sim.runtime.references import register_reference, unregister_reference
from neuron_sim.status import NrtError, NrtStatus, status_name

__all__ = [
    "Model", "NrtError", "NrtStatus", "NumericalError", "Runtime", "Tensor", "TensorInfo",
    "register_reference", "status_name", "unregister_reference",
]
__version__ = "0.1.0"
