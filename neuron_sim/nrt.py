"""The flat libnrt face: one function per nrt.h / nrt_experimental.h function, C names and argument order.

Every function returns the NRT status as an int (``NRT_SUCCESS`` = 0) for any argument it is given;
out-parameters come back as return values after the status: ``status, model = nrt_load(neff_bytes, -1, -1)``.
Failures are also logged in the runtime's line format. A translation of ``neuron_sim.runtime.interface``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuron_sim.runtime import interface as rt
from neuron_sim.runtime.interface import Model, Tensor, TensorSet
from neuron_sim.status import NrtStatus

# ---- constants of nrt.h -------------------------------------------------------------------------------
for _s in NrtStatus:
    globals()["NRT_" + _s.name] = int(_s)
NRT_MAJOR_VERSION, NRT_MINOR_VERSION = 2, 0
NRT_FRAMEWORK_TYPE_INVALID, NRT_FRAMEWORK_TYPE_NO_FW, NRT_FRAMEWORK_TYPE_TENSORFLOW = 0, 1, 2
NRT_FRAMEWORK_TYPE_PYTORCH, NRT_FRAMEWORK_TYPE_MXNET, NRT_FRAMEWORK_TYPE_PRECHECK = 3, 4, 5
NRT_TENSOR_PLACEMENT_DEVICE, NRT_TENSOR_PLACEMENT_HOST, NRT_TENSOR_PLACEMENT_VIRTUAL = 0, 1, 2
NRT_TENSOR_USAGE_INPUT, NRT_TENSOR_USAGE_OUTPUT = 0, 1
NRT_TENSOR_NAME_MAX = 256
INSTANCE_FAMILIES = {"INF1": 1, "TRN1": 2, "TRN1N": 3, "INF2": 4, "TRN2": 5, "TRN2N": 6}
INSTANCE_SIZES = {"1XL": 0, "2XL": 1, "4XL": 2, "6XL": 3, "8XL": 4, "24XL": 5, "32XL": 6, "48XL": 7, "3XL": 8}


@dataclass(frozen=True)
class nrt_tensor_info_t:  # noqa: N801 - the C name
    name: str
    usage: int
    size: int
    dtype: int
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class nrt_tensor_info_array_t:  # noqa: N801
    tensor_count: int
    tensor_array: list[nrt_tensor_info_t]
    freed: bool = False


@dataclass(frozen=True)
class nrt_model_info_t:  # noqa: N801
    vnc: int


@dataclass(frozen=True)
class nrt_instance_info_t:  # noqa: N801
    family: int
    size: int
    arch_name: str
    device_revision: str


@dataclass(frozen=True)
class nrt_version_t:  # noqa: N801
    rt_major: int
    rt_minor: int
    rt_patch: int
    rt_maintenance: int
    rt_detail: str
    git_hash: str


@dataclass(frozen=True)
class nrt_vnc_memory_stats_t:  # noqa: N801
    bytes_used: int
    bytes_limit: int


@dataclass(frozen=True)
class nrt_tensor_device_allocation_info_t:  # noqa: N801
    physical_address: int
    size: int
    hbm_index: int


# ---- plumbing -----------------------------------------------------------------------------------------
def _status(fn: Callable[..., Any]) -> Callable[..., int]:
    """Call through the interface's guard and keep the status only."""
    guarded = rt.guarded(fn.__name__)(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        return guarded(*args, **kwargs)[0]
    return wrapper


def _pair(fn: Callable[..., Any]) -> Callable[..., tuple[int, Any]]:
    """``(NRT_SUCCESS, value)`` or ``(status, None)``, through the interface's guard."""
    return rt.guarded(fn.__name__)(fn)


def _quiet(fn: Callable[..., None]) -> Callable[..., None]:
    """For the void functions of nrt.h: never raise (a failure is logged)."""
    guarded = rt.guarded(fn.__name__)(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        guarded(*args, **kwargs)
    return wrapper


# ---- init / close / counts ----------------------------------------------------------------------------
@_status
def nrt_init(framework: int = 1, fw_version: str = "", fal_version: str = "") -> None:
    """Initialise the runtime and reserve this process's NeuronCores (reads NEURON_RT_* now)."""
    rt.init(framework=framework)


@_quiet
def nrt_close() -> None:
    """Tear the runtime down: unload models, free tensors' device bytes, release the cores."""
    rt.close()


@_pair
def nrt_get_total_nc_count() -> int:
    """All NeuronCores of the instance, ignoring NEURON_RT_VISIBLE_CORES/NUM_CORES; allowed before init."""
    return rt.total_nc_count()


nrt_get_total_vnc_count = nrt_get_total_nc_count


@_pair
def nrt_get_visible_nc_count() -> int:
    """NeuronCores this process has (or would have); before init, the status nrt_init would fail with."""
    return rt.visible_nc_count()


nrt_get_visible_vnc_count = nrt_get_visible_nc_count


# ---- models -------------------------------------------------------------------------------------------
@_pair
def nrt_load(neff: Any, vnc: int = -1, vnc_count: int = -1) -> Model:
    """Load a NEFF at ``vnc`` (-1: least-used cores); ``vnc_count`` > 0 replicates it (floor(count / cores) copies)."""
    return rt.load(neff, vnc, vnc_count)


@_pair
def nrt_load_collectives(neff: Any, vnc: int, vnc_count: int, ctx_device_id: int,
                         ctx_device_count: int) -> Model:
    """Load a NEFF for a collectives group; neuron_sim emulates the single-rank group only."""
    return rt.load_collectives(neff, vnc, vnc_count, ctx_device_id, ctx_device_count)


@_status
def nrt_unload(model: Any) -> None:
    rt.unload(model)


@_pair
def nrt_get_model_nc_count(model: Any) -> int:
    return rt.model_nc_count(model)


nrt_get_model_vnc_count = nrt_get_model_nc_count


@_pair
def nrt_get_model_info(model: Any) -> nrt_model_info_t:
    """The visible core index the model landed on (resolves ``vnc=-1``)."""
    return nrt_model_info_t(rt.model_start_nc(model))


@_pair
def nrt_get_model_instance_count(model: Any) -> int:
    """Staged copies of the model: floor(nc_count / cores per copy) of a replicating nrt_load, else 1."""
    return rt.model_instance_count(model)


@_pair
def nrt_get_model_tensor_info(model: Any) -> nrt_tensor_info_array_t:
    """Name, usage, size, dtype and shape of every input then output of the model."""
    infos = [nrt_tensor_info_t(i.name, i.usage, i.size, int(i.dtype), i.shape) for i in rt.model_tensor_info(model)]
    return nrt_tensor_info_array_t(len(infos), infos)


@_status
def nrt_free_model_tensor_info(info: Any) -> None:
    """Free the array of nrt_get_model_tensor_info, once."""
    if not isinstance(info, nrt_tensor_info_array_t) or info.freed:
        raise rt.fail(NrtStatus.INVALID, "NRT", "nrt_free_model_tensor_info",
                      "nrt_free_model_tensor_info: not a live nrt_tensor_info_array_t (freed twice?)")
    info.freed = True
    info.tensor_array = []


# ---- tensor sets --------------------------------------------------------------------------------------
@_pair
def nrt_allocate_tensor_set() -> TensorSet:
    return rt.tensor_set_allocate()


@_quiet
def nrt_destroy_tensor_set(tensor_set: Any) -> None:
    """Free the set; its tensors are not freed."""
    rt.tensor_set_destroy(tensor_set)


@_status
def nrt_add_tensor_to_tensor_set(tensor_set: Any, name: str, tensor: Any) -> None:
    """Add, or replace, the tensor under ``name`` (the key need not equal the tensor's own name)."""
    rt.tensor_set_add(tensor_set, name, tensor)


@_pair
def nrt_get_tensor_from_tensor_set(tensor_set: Any, name: str) -> Tensor:
    return rt.tensor_set_get(tensor_set, name)


# ---- execute ------------------------------------------------------------------------------------------
nrt_execute = rt.execute_status
"""Run the model once; with NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS > 0 enqueue and return at once."""


def nrt_execute_repeat(model: Any, input_set: Any, output_set: Any, repeat_count: int) -> int:
    """Run ``repeat_count`` times, outputs of run n-1 feeding the inputs of run n."""
    status, result = rt.guard("nrt_execute_repeat",
                              lambda: rt.execute_repeat(model, input_set, output_set, repeat_count))
    return status or int(result)


# ---- tensors ------------------------------------------------------------------------------------------
@_pair
def nrt_tensor_allocate(placement: int, vnc: int, size: int, name: str | None = None) -> Tensor:
    """Allocate a tensor: DEVICE bytes are accounted on ``vnc``'s HBM, contents zero (NEURON_SIM_FILL)."""
    return rt.tensor_allocate(placement, vnc, size, name)


@_quiet
def nrt_tensor_free(tensor: Any) -> None:
    """Free a tensor (slices keep shared storage alive)."""
    rt.tensor_free(tensor)


@_status
def nrt_tensor_read(tensor: Any, buf: Any, offset: int, size: int) -> None:
    """Copy bytes [offset, offset+size) of the tensor into ``buf`` (a writable buffer)."""
    rt.tensor_read(tensor, buf, offset, size)


@_status
def nrt_tensor_write(tensor: Any, buf: Any, offset: int, size: int) -> None:
    """Copy ``size`` bytes of ``buf`` into the tensor at ``offset``."""
    rt.tensor_write(tensor, buf, offset, size)


@_status
def nrt_tensor_read_batch(batches: Any, unsafe: bool = False) -> None:
    """Several reads: each batch is (tensor, [(offset, size, buffer), ...])."""
    rt.tensor_read_batch(batches)


@_status
def nrt_tensor_write_batch(batches: Any, unsafe: bool = False) -> None:
    """Several writes: each batch is (tensor, [(offset, size, buffer), ...])."""
    rt.tensor_write_batch(batches)


@_status
def nrt_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> None:
    rt.tensor_copy(src, src_offset, dst, dst_offset, size)


def nrt_tensor_get_size(tensor: Any) -> int:
    """Size in bytes (0 for an invalid handle)."""
    return rt.tensor_size(tensor)


@_status
def nrt_tensor_memset(tensor: Any, offset: int, value: int, size: int) -> None:
    rt.tensor_memset(tensor, offset, value, size)


@_pair
def nrt_tensor_allocate_empty(name: str | None = None) -> Tensor:
    """A tensor with no storage, for nrt_tensor_attach_buffer."""
    return rt.tensor_allocate_empty(name)


@_status
def nrt_tensor_attach_buffer(tensor: Any, buffer: Any, size: int) -> None:
    """Use caller memory as the tensor's storage (placement becomes VIRTUAL)."""
    rt.tensor_attach_buffer(tensor, buffer, size)


@_pair
def nrt_tensor_allocate_slice(src: Any, offset: int, size: int, name: str | None = None) -> Tensor:
    return rt.tensor_slice(src, offset, size, name)


def nrt_tensor_get_va(tensor: Any) -> int | None:
    """Host address of the tensor's bytes (materialises them), or None without storage."""
    return rt.tensor_va(tensor)


@_pair
def nrt_tensor_get_device_allocation_info(tensor: Any) -> nrt_tensor_device_allocation_info_t:
    """Simulated physical address (stable per tensor), size and HBM index of a device tensor."""
    return nrt_tensor_device_allocation_info_t(*rt.tensor_device_allocation_info(tensor))


@_status
def nrt_tensor_check_output_completion(tensor: Any, timeout_us: int, expected: int) -> None:
    """Wait until the tensor's completion counter reaches ``expected`` (negative timeout: forever)."""
    rt.wait_output_completion(tensor, timeout_us, expected)


@_status
def nrt_tensor_reset_output_completion(tensor: Any) -> None:
    rt.reset_output_completion(tensor)


@_pair
def nrt_get_vnc_memory_stats(vnc: int) -> nrt_vnc_memory_stats_t:
    """Device bytes used by a visible core and the limit of the HBM bank it allocates from."""
    return nrt_vnc_memory_stats_t(*rt.memory_stats(vnc))


# ---- instance, version, status ------------------------------------------------------------------------
@_pair
def nrt_get_instance_info() -> nrt_instance_info_t:
    info = rt.instance_info()
    return nrt_instance_info_t(INSTANCE_FAMILIES.get(info.family, 0), INSTANCE_SIZES.get(info.size, 9),
                               info.arch_name, info.device_revision)


@_pair
def nrt_get_version() -> nrt_version_t:
    """The emulated runtime version (NEURON_SIM_RUNTIME_VERSION); allowed before init."""
    parts = rt.version()
    return nrt_version_t(*parts, rt_detail=f"neuron_sim emulation of Neuron Runtime "
                                           f"{'.'.join(str(p) for p in parts)}", git_hash="neuron_sim")


def nrt_get_status_as_str(status: int) -> str:
    """The bare ``NRT_*`` name, or ``UNKNOWN``."""
    return rt.status_string(status)


# ---- legacy implicit async (nrt_experimental.h) -------------------------------------------------------
@_status
def nrt_register_async_exec_callback(callback: Callable[..., Any] | None, params: Any = None) -> None:
    """Replace the callback the runtime's async thread calls as cb(params, model_id, vnc, job_id, status)."""
    rt.register_callback(callback, params)


@_status
def nrt_async_drain_queued_execs(vnc: int) -> None:
    """Block until the async queue of core ``vnc`` is empty."""
    rt.drain(vnc)


# ---- nrt_async.h: the explicit async API (2.29+ "NRTA 3.0") ---------------------------------------------
# The caller's ``NRT_STATUS *ret`` is an ``nrta_status_t`` object: ``ret.value`` is None while the operation
# is pending and its final status once it completed (``ret.done``; ``ret.wait()`` blocks for it). Sequence
# ids come back after the preparation status: ``status, seq = nrta_tensor_write(t, buf, 0, n, 0, ret)``.
NRTA_XU_TENSOR_OP, NRTA_XU_COMPUTE, NRTA_XU_COLLECTIVES, NRTA_XU_TYPE_NUM = 0, 1, 2, 3
NRTA_SEQ_NUM_MAX = (1 << 48) - 1
nrta_status_t = rt.CompletionStatus


def NRTA_SEQ_GET_SEQ_NUM(seq: int) -> int:  # noqa: N802 - the C macro's name
    return seq & NRTA_SEQ_NUM_MAX


def NRTA_SEQ_GET_XU_ID(seq: int) -> int:  # noqa: N802
    return seq >> 48


@_pair
def nrta_tensor_write(tensor: Any, buf: Any, offset: int, size: int, queue: int, ret: Any) -> int:
    """Enqueue host -> device on the tensor's TENSOR_OP queue ``queue``; ``ret`` gets the final status."""
    return rt.async_tensor_write(tensor, buf, offset, size, queue, ret)


@_pair
def nrta_tensor_read(buf: Any, tensor: Any, offset: int, size: int, queue: int, ret: Any) -> int:
    """Enqueue device -> host (buffer first); ``buf`` holds the bytes once ``ret`` is written."""
    return rt.async_tensor_read(buf, tensor, offset, size, queue, ret)


@_pair
def nrta_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int, queue: int,
                     ret: Any) -> int:
    """Enqueue a same-core device copy on TENSOR_OP queue ``queue``."""
    return rt.async_tensor_copy(src, src_offset, dst, dst_offset, size, queue, ret)


@_pair
def nrta_execute_schedule(model: Any, input_set: Any, output_set: Any, queue: int, ret: Any) -> int:
    """Enqueue an execution on the model's COMPUTE queue (0); the status covers preparation only."""
    return rt.async_execute(model, input_set, output_set, queue, ret)


@_pair
def nrta_is_completed(seq: int) -> bool:
    return rt.async_is_completed(seq)


@_pair
def nrta_get_sequence(lnc: int, xu: int, queue: int) -> int:
    """The last completed sequence id of the XU queue."""
    return rt.async_last_sequence(lnc, xu, queue)


@_status
def nrta_event_register_seq_id_completion(seq: int, eventfd: int) -> None:
    """``eventfd`` (os.eventfd) becomes readable when ``seq`` completes."""
    rt.async_notify_seq(seq, eventfd)


@_status
def nrta_event_register_xu_completion(lnc: int, xu: int, queue: int, eventfd: int) -> None:
    """``eventfd`` counts every completion on the XU queue; -1 unregisters."""
    rt.async_notify_xu(lnc, xu, queue, eventfd)


# ---- system trace (nrt_sys_trace.h) and profile (nrt_profile.h) -------------------------------------------
# The functions C declares void return the status here too, as every function of this face does.
@_pair
def nrt_sys_trace_config_allocate() -> Any:
    """A new config (every visible NC, every event type); ``(status, config)``."""
    return rt.sys_trace_config_new()


@_status
def nrt_sys_trace_config_set_defaults(config: Any) -> None:
    rt.sys_trace_config_defaults(config)


@_status
def nrt_sys_trace_config_free(config: Any) -> None:
    rt.sys_trace_config_free(config)


@_status
def nrt_sys_trace_config_set_max_events_per_nc(config: Any, n: int) -> None:
    rt.sys_trace_config_max_events(config, n)


@_status
def nrt_sys_trace_config_set_capture_enabled_for_nc(config: Any, nc_idx: int, enabled: bool) -> None:
    rt.sys_trace_config_nc(config, nc_idx, enabled)


@_status
def nrt_sys_trace_config_set_capture_enabled_for_event_type(config: Any, event_type: str, enabled: bool) -> None:
    rt.sys_trace_config_event_type(config, event_type, enabled)


@_pair
def nrt_sys_trace_get_event_types() -> list[str]:
    """``(status, [event type, ...])``."""
    return rt.sys_trace_event_types()


@_pair
def nrt_sys_trace_config_get_enabled_event_types(config: Any) -> list[str]:
    return rt.sys_trace_config_enabled_types(config)


@_status
def nrt_sys_trace_start(config: Any = None) -> None:
    """Begin capture (None: defaults); the NEURON_RT_INSPECT_EVENT_FILTER_* variables are read now."""
    rt.sys_trace_start(config)


@_status
def nrt_sys_trace_stop() -> None:
    rt.sys_trace_stop()


@_pair
def nrt_sys_trace_fetch_options_allocate() -> Any:
    return rt.sys_trace_fetch_options_new()


@_status
def nrt_sys_trace_fetch_options_set_defaults(options: Any) -> None:
    rt.sys_trace_fetch_options_defaults(options)


@_status
def nrt_sys_trace_fetch_options_free(options: Any) -> None:
    rt.sys_trace_fetch_options_free(options)


@_status
def nrt_sys_trace_fetch_options_set_max_events_per_nc(options: Any, n: int) -> None:
    rt.sys_trace_fetch_options_max_events(options, n)


@_status
def nrt_sys_trace_fetch_options_set_nc_idx(options: Any, nc_idx: int) -> None:
    rt.sys_trace_fetch_options_nc(options, nc_idx)


@_pair
def nrt_sys_trace_fetch_events(options: Any = None) -> str:
    """``(status, json_text)``: the events captured since the last fetch, ``{"events": [...]}``."""
    return rt.sys_trace_fetch(options)


@_status
def nrt_profile_start(model: Any, file: str) -> None:
    """Capture ``model``'s executions into ``file`` (neuron_sim's JSON profile format) until nrt_profile_stop."""
    rt.profile_start(model, file)


@_status
def nrt_profile_stop(file: str) -> None:
    rt.profile_stop(file)


def nrt_sys_trace_free_event_types(event_types: Any, count: int = 0) -> int:
    """For C symmetry: Python lists are garbage-collected, nothing to free (NRT_SUCCESS)."""
    return NRT_SUCCESS  # type: ignore[name-defined]  # noqa: F821 - defined from NrtStatus above


def nrt_sys_trace_buffer_free(buffer: Any) -> int:
    """For C symmetry: Python strings are garbage-collected, nothing to free (NRT_SUCCESS)."""
    return NRT_SUCCESS  # type: ignore[name-defined]  # noqa: F821
