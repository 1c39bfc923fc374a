"""nrtpy's module functions ``configure``, ``reset``, ``get_nrtpy_singleton`` and the singleton they return.

The singleton is the public face of the session (``session.SESSION``): it sits above the tensors, whose
``free_tensor`` it offers, while tensors and models sit above the session they record their generation in.
"""
from __future__ import annotations

from collections.abc import Iterable

from neuron_sim.nrtpy.session import SESSION
from neuron_sim.nrtpy.tensor import NrtpyTensor


class NrtpySingleton:
    """The nrtpy runtime of this process (``nrtpy.get_nrtpy_singleton()``); its documented member is free_tensor."""

    def free_tensor(self, tensor: NrtpyTensor) -> None:
        """Free the tensor's device memory now; using it afterwards raises NrtpyError."""
        if not isinstance(tensor, NrtpyTensor):
            raise TypeError(f"free_tensor() takes an NrtpyTensor, got {type(tensor).__name__}")
        tensor.tensor_ref.free(tensor.name)


SINGLETON = NrtpySingleton()


def configure(visible_cores: Iterable[int] | None = None) -> None:
    """Set NEURON_RT_VISIBLE_CORES for the next (lazy) runtime start; NrtpyError while the runtime is active."""
    SESSION.configure(visible_cores)


def reset() -> None:
    """Close the runtime, clear the configuration and invalidate every NrtpyTensor and NrtpyModel."""
    SESSION.reset()


def get_nrtpy_singleton() -> NrtpySingleton:
    """The process's nrtpy singleton, starting the runtime if it is not running yet."""
    SESSION.start()
    return SINGLETON
