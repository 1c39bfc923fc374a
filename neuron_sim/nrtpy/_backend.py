"""Every runtime call the nrtpy face makes, in one place (nrtpy spec §1.7: nrtpy → libnrt).

The face goes through the flat libnrt face ``neuron_sim.nrt``; each function here turns a non-success
status into ``NrtError(status, context)`` (the runtime has already logged the cause). Swapping the flat
face for the runtime interface module changes this file only.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neuron_sim import nrt
from neuron_sim.status import NrtError, NrtStatus


def _check(status: int, context: str) -> None:
    if status != nrt.NRT_SUCCESS:
        raise NrtError(NrtStatus(status), context)


def init() -> None:
    """nrt_init with no framework: reserves the cores NEURON_RT_VISIBLE_CORES names (all when unset)."""
    _check(nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", ""), "Failed to initialize the Neuron runtime")


def close() -> None:
    nrt.nrt_close()


def load(neff: bytes, core_id: int, context: str) -> Any:
    status, model = nrt.nrt_load(neff, core_id, -1)
    _check(status, context)
    return model


def load_collectives(neff: bytes, core_id: int, rank_id: int, world_size: int, context: str) -> Any:
    status, model = nrt.nrt_load_collectives(neff, core_id, -1, rank_id, world_size)
    _check(status, context)
    return model


def unload(model: Any) -> None:
    nrt.nrt_unload(model)


def tensor_info(model: Any, context: str) -> list[nrt.nrt_tensor_info_t]:
    """Inputs then outputs of the model (name, usage, size, dtype code, shape)."""
    status, info = nrt.nrt_get_model_tensor_info(model)
    _check(status, context)
    entries = list(info.tensor_array)
    nrt.nrt_free_model_tensor_info(info)
    return entries


def is_input(info: nrt.nrt_tensor_info_t) -> bool:
    return info.usage == nrt.NRT_TENSOR_USAGE_INPUT


def allocate(core_id: int, size: int, name: str, context: str) -> Any:
    """A device tensor of ``size`` bytes in the HBM of visible core ``core_id``."""
    status, tensor = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, core_id, size, name)
    _check(status, context)
    return tensor


def free(tensor: Any) -> None:
    nrt.nrt_tensor_free(tensor)


def write(tensor: Any, array: np.ndarray, context: str) -> None:
    """The whole tensor from a contiguous array of the same byte size."""
    _check(nrt.nrt_tensor_write(tensor, array, 0, array.nbytes), context)


def read(tensor: Any, out: np.ndarray, context: str) -> None:
    """The whole tensor into a contiguous array of the same byte size."""
    _check(nrt.nrt_tensor_read(tensor, out, 0, out.nbytes), context)


def tensor_sets(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> tuple[Any, Any]:
    """nrt_allocate_tensor_set ×2 and nrt_add_tensor_to_tensor_set per name."""
    sets = []
    for tensors in (inputs, outputs):
        status, tset = nrt.nrt_allocate_tensor_set()
        _check(status, "Failed to allocate a tensor set")
        for name, tensor in tensors.items():
            _check(nrt.nrt_add_tensor_to_tensor_set(tset, name, tensor), f"Failed to add tensor '{name}'")
        sets.append(tset)
    return sets[0], sets[1]


def destroy_sets(*sets: Any) -> None:
    for tset in sets:
        nrt.nrt_destroy_tensor_set(tset)


def execute(model: Any, inputs: Any, outputs: Any, context: str) -> None:
    _check(nrt.nrt_execute(model, inputs, outputs), context)


def device_time_s(model: Any) -> float:
    """Simulated device seconds charged so far to the model's first core: the runtime's own account of
    its executions (read here until the system trace of the tracing work provides device events)."""
    return float(model.cores[0].stats["device_time_s"])
