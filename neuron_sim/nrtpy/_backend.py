"""Every runtime call the nrtpy face makes, in one place (nrtpy spec §1.7: nrtpy → libnrt).

The face goes through the runtime interface. A failure becomes ``NrtError(status, "<context>: <cause>")``:
nrtpy's context (the operation and its object) followed by the runtime's own message (the runtime has
already logged it). Calls made from garbage-collection finalisers go through ``guard`` and never raise.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neuron_sim.runtime import interface
from neuron_sim.runtime.interface import Placement, TensorInfo
from neuron_sim.status import NrtError, NrtStatus


def _with_context(exc: NrtError, context: str) -> NrtError:
    return NrtError(exc.status, f"{context}: {exc.message}")


def init() -> Any:
    """nrt_init with no framework: reserves the cores NEURON_RT_VISIBLE_CORES names (all when unset).
    Returns the runtime's opaque handle."""
    try:
        return interface.init()
    except NrtError as exc:
        raise _with_context(exc, "Failed to initialize the Neuron runtime") from None


def live_runtime() -> Any:
    """The live runtime's opaque handle, or None."""
    return interface.live_runtime()


def close() -> None:
    interface.close()


def read_neff_file(path: Any) -> bytes:
    """The NEFF file's bytes (regular files only); OSError naming the cause."""
    return interface.read_neff_file(path)


def check_readable(path: Any) -> None:
    """OSError naming the cause unless ``path`` is a regular file this process can open."""
    interface.neff_file_size(path)


def load_file(path: Any, core_id: int, context: str) -> Any:
    """Load the NEFF at ``path`` (streamed when large: no copy of the file held)."""
    try:
        return interface.load_file(path, core_id, -1)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def load(neff: bytes, core_id: int, context: str, source: str | None = None) -> Any:
    try:
        return interface.load(neff, core_id, -1, source=source)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def load_collectives(neff: bytes, core_id: int, rank_id: int, world_size: int, context: str) -> Any:
    try:
        return interface.load_collectives(neff, core_id, -1, rank_id, world_size)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def unload(model: Any) -> None:
    """For the model's finaliser: a failure is logged, never raised."""
    interface.guard("nrt_unload", lambda: interface.unload(model))


def tensor_info(model: Any, context: str) -> list[TensorInfo]:
    """Inputs then outputs of the model (name, usage, size, dtype, numpy dtype, shape)."""
    try:
        return interface.model_tensor_info(model)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def is_input(info: TensorInfo) -> bool:
    return info.usage == interface.TENSOR_USAGE_INPUT


def allocate(core_id: int, size: int, name: str, context: str) -> Any:
    """A device tensor of ``size`` bytes in the HBM of visible core ``core_id``."""
    try:
        return interface.tensor_allocate(Placement.DEVICE, core_id, size, name)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def free(tensor: Any) -> None:
    """For the tensor's finaliser and free_tensor: a failure is logged, never raised."""
    interface.guard("nrt_tensor_free", lambda: interface.tensor_free(tensor))


def write(tensor: Any, array: np.ndarray, context: str) -> None:
    """The whole tensor from a contiguous array of the same byte size."""
    try:
        interface.tensor_write(tensor, array, 0, array.nbytes)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def read(tensor: Any, out: np.ndarray, context: str) -> None:
    """The whole tensor into a contiguous array of the same byte size."""
    try:
        interface.tensor_read(tensor, out, 0, out.nbytes)
    except NrtError as exc:
        raise _with_context(exc, context) from None


def tensor_sets(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> tuple[Any, Any]:
    """The input and output tensor sets of one execution."""
    try:
        return interface.tensor_set_of(inputs), interface.tensor_set_of(outputs)
    except NrtError as exc:
        raise _with_context(exc, "Failed to build the tensor sets") from None


def destroy_sets(*sets: Any) -> None:
    for tset in sets:
        interface.tensor_set_destroy(tset)


def execute(model: Any, inputs: Any, outputs: Any, context: str) -> None:
    """nrt_execute; any status but success (numerical errors included) raises NrtError."""
    try:
        status = interface.execute(model, inputs, outputs)
    except NrtError as exc:
        raise _with_context(exc, context) from None
    if status != NrtStatus.SUCCESS:
        raise NrtError(status, context)


def execution_device_time_s(model: Any) -> float | None:
    """Simulated device seconds the execution that just returned took; None when executions are queued
    (legacy async mode: the execution completes after the call returns)."""
    if interface.async_enabled():
        return None
    return interface.model_execution_time_s(model)
