"""The flat libnrt face: one function per nrt.h / nrt_experimental.h function, C names and argument order.

Every function returns the NRT status as an int (``NRT_SUCCESS`` = 0); out-parameters come back as
return values after the status: ``status, model = nrt_load(neff_bytes, -1, -1)``. Failures are also
logged in the runtime's line format.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.config import load_config
from neuron_sim.hardware.select import select_machine
from neuron_sim.runtime import execution, lifecycle, models
from neuron_sim.runtime.core import as_bytes
from neuron_sim.runtime.tensors import Placement, Tensor, TensorSet
from neuron_sim.status import NrtError, NrtStatus, status_name

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
    """Run ``fn`` and turn an NrtError into its status code (already logged)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            fn(*args, **kwargs)
            return NRT_SUCCESS  # type: ignore[name-defined]  # noqa: F821
        except NrtError as exc:
            return int(exc.status)
    return wrapper


def _pair(fn: Callable[..., Any]) -> Callable[..., tuple[int, Any]]:
    """Run ``fn`` returning ``(NRT_SUCCESS, value)``, or ``(status, None)`` on NrtError."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            return 0, fn(*args, **kwargs)
        except NrtError as exc:
            return int(exc.status), None
    return wrapper


def _rt(function: str):
    return lifecycle.current(function)


def _tensor(rt, t: Any, function: str) -> Tensor:
    return rt.check_tensor(t, function)


def _tset(s: Any, function: str) -> TensorSet:
    if not isinstance(s, TensorSet) or s.destroyed:
        msg = f"Invalid tensor set handle {s!r}"
        nrtlog.error("NRT", function, msg)
        raise NrtError(NrtStatus.INVALID, msg)
    return s


# ---- init / close / counts ----------------------------------------------------------------------------
@_status
def nrt_init(framework: int = 1, fw_version: str = "", fal_version: str = "") -> None:
    """Initialise the runtime and reserve this process's NeuronCores (reads NEURON_RT_* now)."""
    if framework not in (1, 2, 3, 4, 5):
        msg = f"Invalid framework type {framework!r}: expected NRT_FRAMEWORK_TYPE_NO_FW (1) .. PRECHECK (5)"
        nrtlog.error("NRT", "nrt_init", msg)
        raise NrtError(NrtStatus.INVALID, msg)
    lifecycle.init()


def nrt_close() -> None:
    """Tear the runtime down: unload models, free tensors' device bytes, release the cores."""
    try:
        lifecycle.close()
    except NrtError:
        pass  # void in nrt.h; refused from an async callback, already logged


def _machine_from_env():
    config = load_config(os.environ)
    return config, select_machine(config.instance_type, config.topology_file, config.logical_nc_config)


@_pair
def nrt_get_total_nc_count() -> int:
    """All NeuronCores of the instance, ignoring NEURON_RT_VISIBLE_CORES/NUM_CORES; allowed before init."""
    rt = lifecycle.peek()
    if rt is not None:
        return rt.machine.total_cores
    try:
        return _machine_from_env()[1].total_cores
    except ValueError as exc:
        raise NrtError(NrtStatus.INVALID, str(exc)) from None


nrt_get_total_vnc_count = nrt_get_total_nc_count


@_pair
def nrt_get_visible_nc_count() -> int:
    """NeuronCores this process has (or would have) after the environment variables apply."""
    rt = lifecycle.peek()
    if rt is not None:
        return rt.visible_count
    try:
        config, machine = _machine_from_env()
    except ValueError as exc:
        raise NrtError(NrtStatus.INVALID, str(exc)) from None
    if config.visible_cores is not None:
        return len(config.visible_cores)
    return min(config.num_cores, machine.total_cores) if config.num_cores else machine.total_cores


nrt_get_visible_vnc_count = nrt_get_visible_nc_count


# ---- models -------------------------------------------------------------------------------------------
@_pair
def nrt_load(neff: Any, vnc: int = -1, vnc_count: int = -1) -> models.Model:
    """Load a NEFF (bytes or a buffer) at ``vnc`` (-1: least-used cores). ``vnc_count`` is deprecated."""
    rt = _rt("nrt_load")
    if isinstance(neff, (str, os.PathLike)):
        msg = "nrt_load takes the NEFF's bytes, not a path: pass open(path, 'rb').read()"
        nrtlog.error("NRT", "nrt_load", msg)
        raise NrtError(NrtStatus.INVALID, msg)
    return models.load(rt, as_bytes(neff, "nrt_load"), vnc, vnc_count)


@_pair
def nrt_load_collectives(neff: Any, vnc: int, vnc_count: int, ctx_device_id: int,
                         ctx_device_count: int) -> models.Model:
    """Load a NEFF for a collectives group; neuron_sim emulates the single-rank group only."""
    rt = _rt("nrt_load_collectives")
    if ctx_device_count != 1 or ctx_device_id != 0:
        msg = (f"Collectives across {ctx_device_count} ranks are not emulated by neuron_sim; "
               "only ctx_device_id=0, ctx_device_count=1 is accepted")
        nrtlog.error("NRT", "nrt_load_collectives", msg)
        raise NrtError(NrtStatus.FAILURE, msg)
    return models.load(rt, as_bytes(neff, "nrt_load_collectives"), vnc, vnc_count)


@_status
def nrt_unload(model: Any) -> None:
    rt = _rt("nrt_unload")
    models.unload(rt, models.check_model(rt, model, "nrt_unload"))


@_pair
def nrt_get_model_nc_count(model: Any) -> int:
    rt = _rt("nrt_get_model_nc_count")
    return models.check_model(rt, model, "nrt_get_model_nc_count").vnc_count


nrt_get_model_vnc_count = nrt_get_model_nc_count


@_pair
def nrt_get_model_info(model: Any) -> nrt_model_info_t:
    """The visible core index the model landed on (resolves ``vnc=-1``)."""
    rt = _rt("nrt_get_model_info")
    return nrt_model_info_t(models.check_model(rt, model, "nrt_get_model_info").start_vnc)


@_pair
def nrt_get_model_instance_count(model: Any) -> int:
    """Staged copies of the model (deprecated): neuron_sim stages one."""
    rt = _rt("nrt_get_model_instance_count")
    models.check_model(rt, model, "nrt_get_model_instance_count")
    return 1


@_pair
def nrt_get_model_tensor_info(model: Any) -> nrt_tensor_info_array_t:
    """Name, usage, size, dtype and shape of every input then output of the model."""
    rt = _rt("nrt_get_model_tensor_info")
    m = models.check_model(rt, model, "nrt_get_model_tensor_info")
    infos = [nrt_tensor_info_t(t.name, NRT_TENSOR_USAGE_INPUT, t.size, int(t.dtype), tuple(t.shape))
             for t in m.neff.inputs]
    infos += [nrt_tensor_info_t(t.name, NRT_TENSOR_USAGE_OUTPUT, t.size, int(t.dtype), tuple(t.shape))
              for t in m.neff.outputs]
    return nrt_tensor_info_array_t(len(infos), infos)


@_status
def nrt_free_model_tensor_info(info: Any) -> None:
    """Free the array of nrt_get_model_tensor_info, once."""
    if not isinstance(info, nrt_tensor_info_array_t) or info.freed:
        msg = "nrt_free_model_tensor_info: not a live nrt_tensor_info_array_t (freed twice?)"
        nrtlog.error("NRT", "nrt_free_model_tensor_info", msg)
        raise NrtError(NrtStatus.INVALID, msg)
    info.freed = True
    info.tensor_array = []


# ---- tensor sets --------------------------------------------------------------------------------------
@_pair
def nrt_allocate_tensor_set() -> TensorSet:
    _rt("nrt_allocate_tensor_set")
    return TensorSet()


def nrt_destroy_tensor_set(tensor_set: Any) -> None:
    """Free the set; its tensors are not freed."""
    if isinstance(tensor_set, TensorSet):
        tensor_set.clear()
        tensor_set.destroyed = True


@_status
def nrt_add_tensor_to_tensor_set(tensor_set: Any, name: str, tensor: Any) -> None:
    """Add, or replace, the tensor under ``name`` (the key need not equal the tensor's own name)."""
    fn = "nrt_add_tensor_to_tensor_set"
    rt = _rt(fn)
    s = _tset(tensor_set, fn)
    if not isinstance(name, str) or not name or len(name) >= NRT_TENSOR_NAME_MAX:
        msg = f"Invalid tensor name {name!r}: expected a non-empty string shorter than {NRT_TENSOR_NAME_MAX}"
        nrtlog.error("NRT", fn, msg)
        raise NrtError(NrtStatus.INVALID, msg)
    s[name] = _tensor(rt, tensor, fn)


@_pair
def nrt_get_tensor_from_tensor_set(tensor_set: Any, name: str) -> Tensor:
    fn = "nrt_get_tensor_from_tensor_set"
    s = _tset(tensor_set, fn)
    t = s.get(name)
    if t is None:
        msg = f"Tensor '{name}' is not in the tensor set (has: {', '.join(sorted(s)) or 'nothing'})"
        nrtlog.error("NRT", fn, msg)
        raise NrtError(NrtStatus.FAILURE, msg)
    return t


# ---- execute ------------------------------------------------------------------------------------------
def nrt_execute(model: Any, input_set: Any, output_set: Any) -> int:
    """Run the model once; with NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS > 0 enqueue and return at once."""
    try:
        rt = lifecycle.current("nrt_execute")
        if rt.async_queue is not None:
            return int(rt.async_queue.submit(model, input_set, output_set))
        return int(execution.execute(rt, model, input_set, output_set))
    except NrtError as exc:
        return int(exc.status)


def nrt_execute_repeat(model: Any, input_set: Any, output_set: Any, repeat_count: int) -> int:
    """Run ``repeat_count`` times, outputs of run n-1 feeding the inputs of run n."""
    try:
        rt = lifecycle.current("nrt_execute_repeat")
        return int(execution.execute_repeat(rt, model, input_set, output_set, repeat_count))
    except NrtError as exc:
        return int(exc.status)


# ---- tensors ------------------------------------------------------------------------------------------
@_pair
def nrt_tensor_allocate(placement: int, vnc: int, size: int, name: str | None = None) -> Tensor:
    """Allocate a tensor: DEVICE bytes are accounted on ``vnc``'s HBM, contents zero (NEURON_SIM_FILL)."""
    return _rt("nrt_tensor_allocate").tensor_allocate(placement, vnc, size, name)


def nrt_tensor_free(tensor: Any) -> None:
    """Free a tensor (slices keep shared storage alive)."""
    rt = lifecycle.peek()
    if isinstance(tensor, Tensor) and rt is not None:
        rt.tensor_free(tensor)
    elif isinstance(tensor, Tensor) and tensor.storage is not None and not tensor.freed:
        tensor.freed = True
        tensor.storage.release()


@_status
def nrt_tensor_read(tensor: Any, buf: Any, offset: int, size: int) -> None:
    """Copy bytes [offset, offset+size) of the tensor into ``buf`` (a writable buffer)."""
    rt = _rt("nrt_tensor_read")
    rt.tensor_read(tensor, offset, size, out=buf)


@_status
def nrt_tensor_write(tensor: Any, buf: Any, offset: int, size: int) -> None:
    """Copy ``size`` bytes of ``buf`` into the tensor at ``offset``."""
    _rt("nrt_tensor_write").tensor_write(tensor, buf, offset, size)


def _batches(batches: Iterable[Any]) -> list[tuple[Any, list[tuple[int, int, Any]]]]:
    out = []
    for b in batches:
        tensor, ops = (b["tensor"], b["ops"]) if isinstance(b, Mapping) else b
        out.append((tensor, [(o["offset"], o["size"], o["buffer"]) if isinstance(o, Mapping) else tuple(o)
                             for o in ops]))
    return out


@_status
def nrt_tensor_read_batch(batches: Iterable[Any], unsafe: bool = False) -> None:
    """Several reads: each batch is (tensor, [(offset, size, buffer), ...])."""
    rt = _rt("nrt_tensor_read_batch")
    for tensor, ops in _batches(batches):
        for offset, size, buf in ops:
            rt.tensor_read(tensor, offset, size, out=buf)


@_status
def nrt_tensor_write_batch(batches: Iterable[Any], unsafe: bool = False) -> None:
    """Several writes: each batch is (tensor, [(offset, size, buffer), ...])."""
    rt = _rt("nrt_tensor_write_batch")
    for tensor, ops in _batches(batches):
        for offset, size, buf in ops:
            rt.tensor_write(tensor, buf, offset, size)


@_status
def nrt_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> None:
    _rt("nrt_tensor_copy").tensor_copy(src, src_offset, dst, dst_offset, size)


def nrt_tensor_get_size(tensor: Any) -> int:
    """Size in bytes (0 for an invalid handle)."""
    return tensor.size if isinstance(tensor, Tensor) else 0


@_status
def nrt_tensor_memset(tensor: Any, offset: int, value: int, size: int) -> None:
    _rt("nrt_tensor_memset").tensor_memset(tensor, offset, value, size)


@_pair
def nrt_tensor_allocate_empty(name: str | None = None) -> Tensor:
    """A tensor with no storage, for nrt_tensor_attach_buffer."""
    return _rt("nrt_tensor_allocate_empty").tensor_allocate_empty(name)


@_status
def nrt_tensor_attach_buffer(tensor: Any, buffer: Any, size: int) -> None:
    """Use caller memory as the tensor's storage (placement becomes VIRTUAL)."""
    _rt("nrt_tensor_attach_buffer").tensor_attach_buffer(tensor, buffer, size)


@_pair
def nrt_tensor_allocate_slice(src: Any, offset: int, size: int, name: str | None = None) -> Tensor:
    return _rt("nrt_tensor_allocate_slice").tensor_slice(src, offset, size, name)


def nrt_tensor_get_va(tensor: Any) -> int | None:
    """Host address of the tensor's bytes (materialises them), or None without storage."""
    if not isinstance(tensor, Tensor) or tensor.freed or tensor.storage is None:
        return None
    return int(tensor.bytes_view().ctypes.data)


@_pair
def nrt_tensor_get_device_allocation_info(tensor: Any) -> nrt_tensor_device_allocation_info_t:
    """Simulated physical address (stable per tensor), size and HBM index of a device tensor."""
    fn = "nrt_tensor_get_device_allocation_info"
    t = _tensor(_rt(fn), tensor, fn)
    if t.placement is not Placement.DEVICE:
        msg = f"Tensor '{t.name}' is not in device memory (placement {t.placement.name})"
        nrtlog.error("NRT", fn, msg)
        raise NrtError(NrtStatus.INVALID, msg)
    return nrt_tensor_device_allocation_info_t(id(t.storage) * 64 + t.offset, t.size, t.core.hbm_bank)


@_status
def nrt_tensor_check_output_completion(tensor: Any, timeout_us: int, expected: int) -> None:
    """Wait until the tensor's completion counter reaches ``expected`` (negative timeout: forever)."""
    fn = "nrt_tensor_check_output_completion"
    rt = _rt(fn)
    if tensor is None:
        nrtlog.error("NRT", fn, "NULL tensor")
        raise NrtError(NrtStatus.INVALID, "NULL tensor")
    t = _tensor(rt, tensor, fn)
    deadline = None if timeout_us < 0 else timeout_us / 1e6
    with rt.tensor_cv:
        if not rt.tensor_cv.wait_for(lambda: t.completions >= expected, timeout=deadline):
            msg = f"Tensor '{t.name}' completion counter {t.completions} did not reach {expected}"
            nrtlog.error("NRT", fn, msg)
            raise NrtError(NrtStatus.TIMEOUT, msg)


@_status
def nrt_tensor_reset_output_completion(tensor: Any) -> None:
    fn = "nrt_tensor_reset_output_completion"
    if tensor is None:
        nrtlog.error("NRT", fn, "NULL tensor")
        raise NrtError(NrtStatus.INVALID, "NULL tensor")
    _tensor(_rt(fn), tensor, fn).completions = 0


@_pair
def nrt_get_vnc_memory_stats(vnc: int) -> nrt_vnc_memory_stats_t:
    """Device bytes used by a visible core and the limit of the HBM bank it allocates from."""
    used, limit = _rt("nrt_get_vnc_memory_stats").memory_stats(vnc)
    return nrt_vnc_memory_stats_t(used, limit)


# ---- instance, version, status ------------------------------------------------------------------------
@_pair
def nrt_get_instance_info() -> nrt_instance_info_t:
    rt = lifecycle.peek()
    machine = rt.machine if rt is not None else _machine_from_env()[1]
    return nrt_instance_info_t(INSTANCE_FAMILIES.get(machine.family, 0), INSTANCE_SIZES.get(machine.size, 9),
                               machine.generation.arch_name, "1")


@_pair
def nrt_get_version() -> nrt_version_t:
    """The emulated runtime version (NEURON_SIM_RUNTIME_VERSION); allowed before init."""
    rt = lifecycle.peek()
    version = rt.config.runtime_version if rt is not None else load_config(os.environ).runtime_version
    parts = (tuple(version) + (0, 0, 0, 0))[:4]
    return nrt_version_t(*parts, rt_detail=f"neuron_sim emulation of Neuron Runtime "
                                           f"{'.'.join(str(p) for p in parts)}", git_hash="neuron_sim")


def nrt_get_status_as_str(status: int) -> str:
    """The bare ``NRT_*`` name, or ``UNKNOWN``."""
    return status_name(status)


# ---- legacy implicit async (nrt_experimental.h) -------------------------------------------------------
@_status
def nrt_register_async_exec_callback(callback: Callable[..., Any] | None, params: Any = None) -> None:
    """Replace the callback the runtime's async thread calls as cb(params, model_id, vnc, job_id, status)."""
    from neuron_sim.runtime import async_exec
    async_exec.register_callback(_rt("nrt_register_async_exec_callback"), callback, params)


@_status
def nrt_async_drain_queued_execs(vnc: int) -> None:
    """Block until the async queue of core ``vnc`` is empty."""
    from neuron_sim.runtime import async_exec
    async_exec.drain(_rt("nrt_async_drain_queued_execs"), vnc)
