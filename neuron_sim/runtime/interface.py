"""The one door into the runtime: every face (flat ``nrt``, Pythonic ``api``, nrtpy, the C library, the
pytest plugin, the tools) calls these functions and nothing else of ``neuron_sim.runtime``.

How to write a face:

- Import this module and the vocabulary (``neuron_sim.status``: ``NrtStatus``, ``NrtError``,
  ``status_name``; ``neuron_sim.dtypes``). Never import another runtime module, never keep runtime state,
  never repeat a check: translate names, argument order and result shapes, nothing more.
- Every function acts on the process's one runtime (``init`` … ``close``) and raises ``NrtError`` carrying
  the NRT status; the failure has already been logged in the runtime's format. A face that returns
  statuses wraps each call in ``guard`` (or ``guarded``), which also turns an unexpected exception into
  ``NRT_FAILURE`` with a log line, so no argument ever raises out of a status-returning face (a call
  with the wrong number of arguments is a Python TypeError, as for any function).
- Handles (``Model``, ``Tensor``, ``TensorSet``) are opaque objects: pass back what you were given; the
  runtime checks them (a freed tensor or an unloaded model is ``NRT_INVALID_HANDLE``).
- Functions are thread-safe; executions serialise per NeuronCore. ``run_arrays``/``submit_arrays`` give
  each call its own tensors, so a face may call one model from many threads.
- ``execute`` / ``execute_status`` are the hot path: one lookup of the live runtime, then the execution
  itself; a status face binds ``execute_status`` directly (``nrt_execute = interface.execute_status``).
- Example, a status face function: ``def nrt_tensor_memset(t, off, value, size): return
  guard("nrt_tensor_memset", lambda: interface.tensor_memset(t, off, value, size))[0]``; a raising face
  just calls ``interface.tensor_memset(...)`` and lets ``NrtError`` through.

Groups: lifecycle (``init``, ``close``, ``state``, counts and instance info before init), models (``load``
with ``vnc_count`` replication, ``unload``, model info, ``model_copies``), tensors and tensor sets, execute (``execute``, ``execute_status``, ``execute_repeat``,
``execute_now``, ``run_arrays``),
async (``submit``, ``submit_arrays``, ``wait_output_completion``, ``drain``, ``register_callback``),
memory statistics, version and status strings; explicit async (``async_*``: nrta_* execution units,
``CompletionStatus``); for test harnesses: ``reset_process``, ``save_references``,
``injected_faults``, ``fault_plan_changed``.

State owned here: none; it routes to the modules that own it.
"""
from __future__ import annotations

import contextlib
import functools
import json
from concurrent.futures import Future
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from neuron_sim.regular_files import open_regular
from neuron_sim.dtypes import NrtDtype, numpy_dtype
from neuron_sim import nrtlog
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import (arrays, async_exec, execution, faults, lifecycle, models, neff_cache, references,
                                trace)
from neuron_sim.runtime.core import Runtime, as_bytes, preview, visible_count_for
from neuron_sim.runtime.memory import format_bytes
from neuron_sim.runtime.models import Model
from neuron_sim.runtime.tensors import Placement, Tensor, TensorSet
from neuron_sim.status import NrtError, NrtStatus, status_name

__all__ = [
    "Model", "Tensor", "TensorSet", "Placement", "TensorInfo", "InstanceInfo", "fail", "guard", "guarded",
    "internal_error",
    "init", "close", "state", "total_nc_count", "visible_nc_count", "instance_info", "version", "status_string",
    "machine", "config", "clock", "global_core_ids",
    "load", "load_file", "neff_file_size", "load_collectives", "unload", "model_nc_count", "model_start_nc", "model_instance_count",
    "model_copies", "model_tensor_info", "loaded_models",
    "tensor_allocate", "tensor_allocate_empty", "tensor_free", "tensor_read", "tensor_write", "tensor_read_batch",
    "tensor_write_batch", "tensor_copy", "tensor_memset", "tensor_slice", "tensor_attach_buffer", "tensor_size",
    "tensor_va", "tensor_device_allocation_info", "tensor_fill", "tensor_of_array", "tensor_array", "wait_output_completion",
    "reset_output_completion", "numpy_dtype_of",
    "tensor_set_allocate", "tensor_set_destroy", "tensor_set_add", "tensor_set_get", "tensor_set_of",
    "execute", "execute_status", "execute_repeat", "execute_now", "run_arrays", "submit", "submit_arrays", "async_enabled", "async_depth",
    "register_callback", "pause_core",
    "drain", "memory_stats", "memory_by_category", "format_bytes",
    "model_execution_time_s", "live_runtime", "reset_process", "save_references", "injected_faults", "fault_plan_changed",
    "SysTraceConfig", "SysTraceFetchOptions", "sys_trace_config_new", "sys_trace_config_defaults",
    "sys_trace_config_free", "sys_trace_config_max_events", "sys_trace_config_nc", "sys_trace_config_event_type",
    "sys_trace_config_enabled_types", "sys_trace_event_types", "sys_trace_start", "sys_trace_stop",
    "sys_trace_fetch_options_new", "sys_trace_fetch_options_defaults", "sys_trace_fetch_options_free",
    "sys_trace_fetch_options_max_events", "sys_trace_fetch_options_nc", "sys_trace_fetch", "profile_start",
    "profile_stop", "publish_state", "state_dir",
]

TENSOR_USAGE_INPUT, TENSOR_USAGE_OUTPUT = 0, 1
TENSOR_NAME_MAX = 256


class TensorInfo(NamedTuple):
    """One model input or output: name, usage (0 input, 1 output), byte size, nrt dtype, numpy dtype, shape."""

    name: str
    usage: int
    size: int
    dtype: NrtDtype
    np_dtype: np.dtype
    shape: tuple[int, ...]


class InstanceInfo(NamedTuple):
    """The simulated instance: family (``TRN1``...), size (``32XL``...), architecture name, device revision."""

    family: str
    size: str
    arch_name: str
    device_revision: str


# ---- status-returning faces -----------------------------------------------------------------------------
def guard(function: str, call: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``call``: ``(0, value)``, ``(status, None)`` on NrtError, ``(NRT_FAILURE, None)`` on anything else."""
    try:
        return 0, call()
    except NrtError as exc:
        return int(exc.status), None
    except Exception as exc:  # a face must answer every argument with a status, never a traceback
        return internal_error(function, exc), None


def internal_error(function: str, exc: BaseException) -> int:
    """Log an exception the runtime did not turn into a status (a neuron_sim bug) and return NRT_FAILURE."""
    fail(NrtStatus.FAILURE, "NRT", function, f"internal error in {function}: {exc!r}")
    return int(NrtStatus.FAILURE)


def guarded(function: str) -> Callable[[Callable[..., Any]], Callable[..., tuple[int, Any]]]:
    """Decorator form of ``guard``; a call with the wrong number of arguments stays a Python TypeError."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., tuple[int, Any]]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> tuple[int, Any]:
            try:
                return 0, fn(*args, **kwargs)
            except NrtError as exc:
                return int(exc.status), None
            except Exception as exc:
                if isinstance(exc, TypeError) and exc.__traceback__.tb_next is None:
                    raise  # the arguments did not bind to fn's signature: the caller's programming error
                return internal_error(function, exc), None
        return wrapper
    return wrap


# ---- lifecycle ------------------------------------------------------------------------------------------
def init(environ: Mapping[str, str] | None = None, framework: int = 1) -> Runtime:
    """nrt_init: reserve this process's cores (reads NEURON_RT_* now). Returns an opaque runtime handle."""
    if not _is_int(framework) or framework not in (1, 2, 3, 4, 5):
        raise fail(NrtStatus.INVALID, "NRT", "nrt_init", f"Invalid framework type {framework!r}: expected "
                                                         "NRT_FRAMEWORK_TYPE_NO_FW (1) .. PRECHECK (5)")
    return lifecycle.init(environ)


def close(handle: Runtime | None = None) -> None:
    """nrt_close: unload every model, free the runtime's bytes, release the cores. ``handle``: only that one."""
    lifecycle.close(handle)


def state() -> str:
    """``"uninitialized"``, ``"initialized"`` or ``"closed"``."""
    return lifecycle.state()


def _live(function: str) -> Runtime:
    return lifecycle.current(function)


def total_nc_count() -> int:
    """All NeuronCores of the instance, ignoring VISIBLE_CORES/NUM_CORES; allowed before init."""
    rt = lifecycle.peek()
    if rt is not None:
        return rt.machine.total_cores
    return preview(None, "nrt_get_total_nc_count")[1].total_cores


def visible_nc_count() -> int:
    """Cores this process has, or would get from nrt_init (the same error status where nrt_init fails)."""
    fn = "nrt_get_visible_nc_count"
    rt = lifecycle.peek()
    if rt is not None:
        return rt.visible_count
    config, machine = preview(None, fn)
    return visible_count_for(config, machine, fn)


def instance_info() -> InstanceInfo:
    """The simulated instance; allowed before init."""
    rt = lifecycle.peek()
    m = rt.machine if rt is not None else preview(None, "nrt_get_instance_info")[1]
    return InstanceInfo(m.family, m.size, m.generation.arch_name, "1")


def version() -> tuple[int, int, int, int]:
    """The emulated runtime version (NEURON_SIM_RUNTIME_VERSION); allowed before init."""
    rt = lifecycle.peek()
    config = rt.config if rt is not None else preview(None, "nrt_get_version")[0]
    return tuple((tuple(config.runtime_version) + (0, 0, 0, 0))[:4])  # type: ignore[return-value]


def status_string(status: Any) -> str:
    """The bare ``NRT_*`` name of a status, or ``UNKNOWN``."""
    if isinstance(status, bool) or not isinstance(status, int):
        return "UNKNOWN"
    return status_name(status)


def machine(function: str = "machine") -> Any:
    """The simulated machine (hardware.model.Machine) of the live runtime."""
    return _live(function).machine


def config(function: str = "config") -> Any:
    """The parsed configuration (config.RuntimeConfig) of the live runtime."""
    return _live(function).config


def clock(function: str = "clock") -> Any:
    """The live runtime's simulated clock (``now()`` in simulated seconds)."""
    return _live(function).clock


def global_core_ids(function: str = "global_core_ids") -> tuple[int, ...]:
    """Machine-wide id of each visible core (index i is visible core i)."""
    return _live(function).global_core_ids()


# ---- models ---------------------------------------------------------------------------------------------
def load(neff: Any, vnc: int = -1, vnc_count: int = -1, function: str = "nrt_load", source: str | None = None) -> Model:
    """Load a NEFF from its bytes (any buffer) at visible core ``vnc`` (-1: least-used cores or NeuronCore
    groups); ``vnc_count`` > 0 stages floor(vnc_count / cores per copy) copies (-1: one); ``source`` names
    the NEFF in log lines (its path)."""
    rt = _live(function)
    if isinstance(neff, (str, os.PathLike)):
        raise fail(NrtStatus.INVALID, "NRT", function,
                   f"{function} takes the NEFF's bytes, not a path: pass open(path, 'rb').read()")
    return models.load(rt, as_bytes(neff, function), vnc, vnc_count, source=source)


def read_neff_file(path: str | os.PathLike) -> bytes:
    """The bytes of a NEFF file; OSError naming the cause unless it is a regular file (a FIFO would block)."""
    with os.fdopen(open_regular(path, "a NEFF"), "rb") as handle:
        return handle.read()


def neff_file_size(path: str | os.PathLike) -> int:
    """The size of a NEFF file; OSError naming the cause unless it is a regular file this process can open."""
    fd = open_regular(path, "a NEFF")
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def load_file(path: str | os.PathLike, vnc: int = -1, vnc_count: int = -1) -> Model:
    """Load a NEFF file, streamed when it is large (no copy of the file held); the path names it in log lines
    (``vnc_count`` as for ``load``)."""
    rt = _live("nrt_load")
    try:
        with os.fdopen(open_regular(path, "a NEFF"), "rb") as handle:
            small = os.fstat(handle.fileno()).st_size <= neff_cache.ENTRY_MAX_BYTES
            data = handle.read() if small else None     # small: read whole, so the cache of NEFFs knows it
    except (OSError, ValueError) as exc:
        raise fail(NrtStatus.INVALID, "NRT", "nrt_load",
                   f"Cannot read NEFF {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if data is None:
        return models.load_streamed(rt, os.fspath(path), vnc, vnc_count)
    return models.load(rt, data, vnc, vnc_count, source=str(path))


def load_collectives(neff: Any, vnc: int, vnc_count: int, ctx_device_id: int, ctx_device_count: int) -> Model:
    """nrt_load_collectives: only the single-rank group (device 0 of 1) is emulated."""
    fn = "nrt_load_collectives"
    _live(fn)
    if not (_is_int(ctx_device_count) and _is_int(ctx_device_id) and ctx_device_count == 1 and ctx_device_id == 0):
        raise fail(NrtStatus.FAILURE, "NRT", fn, f"Collectives across {ctx_device_count!r} ranks are not emulated "
                   "by neuron_sim; only ctx_device_id=0, ctx_device_count=1 is accepted")
    return load(neff, vnc, vnc_count, fn)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _model(model: Any, function: str) -> Model:
    return models.check_model(_live(function), model, function)


def unload(model: Any) -> None:
    """Free every byte of the model (after its queued requests); twice is NRT_INVALID_HANDLE."""
    rt = _live("nrt_unload")
    m = models.check_model(rt, model, "nrt_unload")
    for copy in m.copies or (m,):
        arrays.release(rt, copy)
    models.unload(rt, m)


def model_nc_count(model: Any) -> int:
    return _model(model, "nrt_get_model_nc_count").vnc_count


def model_start_nc(model: Any) -> int:
    """The visible core index the model landed on (resolves ``vnc=-1``)."""
    return _model(model, "nrt_get_model_info").start_vnc


def model_instance_count(model: Any) -> int:
    """Staged copies of the model: floor(nc_count / cores per copy) of a replicating load, else 1."""
    return models.instance_count(_model(model, "nrt_get_model_instance_count"))


def model_copies(model: Any) -> list[Model]:
    """Every staged copy of the model (itself alone unless the load replicated it)."""
    m = _model(model, "model_copies")
    return list(m.copies or (m,))


def model_tensor_info(model: Any, function: str = "nrt_get_model_tensor_info") -> list[TensorInfo]:
    """Every input then every output of the model."""
    m = _model(model, function)
    return ([TensorInfo(t.name, TENSOR_USAGE_INPUT, t.size, t.dtype, numpy_dtype(t.dtype), tuple(t.shape))
             for t in m.neff.inputs]
            + [TensorInfo(t.name, TENSOR_USAGE_OUTPUT, t.size, t.dtype, numpy_dtype(t.dtype), tuple(t.shape))
               for t in m.neff.outputs])


def loaded_models() -> list[Model]:
    """Models loaded in the live runtime (for tools)."""
    return models.loaded(_live("loaded_models"))


# ---- tensors --------------------------------------------------------------------------------------------
def tensor_allocate(placement: Any, vnc: int, size: int, name: str | None = None) -> Tensor:
    """DEVICE bytes are accounted on ``vnc``'s HBM bank (never allocated for real); contents NEURON_SIM_FILL."""
    return _live("nrt_tensor_allocate").tensor_allocate(placement, vnc, size, name)


def tensor_allocate_empty(name: str | None = None) -> Tensor:
    """A tensor with no storage, for ``tensor_attach_buffer``."""
    return _live("nrt_tensor_allocate_empty").tensor_allocate_empty(name)


def tensor_free(tensor: Any) -> None:
    """Free a tensor (slices keep shared storage alive); after close it still drops its storage."""
    if not isinstance(tensor, Tensor):
        return
    rt = lifecycle.peek()
    if rt is not None:
        rt.tensor_free(tensor)
    else:
        tensor.free()


def tensor_read(tensor: Any, buf: Any, offset: int, size: int) -> Any:
    """Copy bytes [offset, offset+size) of the tensor into ``buf`` (a writable buffer); returns ``buf``."""
    fn = "nrt_tensor_read"
    rt = _live(fn)
    if buf is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL buffer: pass a writable bytes-like object or numpy array")
    return rt.tensor_read(tensor, offset, size, out=buf)


def tensor_write(tensor: Any, buf: Any, offset: int, size: int) -> None:
    """Copy ``size`` bytes of ``buf`` into the tensor at ``offset``."""
    fn = "nrt_tensor_write"
    rt = _live(fn)
    if buf is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL buffer: pass a bytes-like object or numpy array")
    rt.tensor_write(tensor, buf, offset, size)


def _batches(batches: Any, function: str) -> list[tuple[Any, list[tuple[Any, Any, Any]]]]:
    """Parse ``[(tensor, [(offset, size, buffer), ...]), ...]`` (or dicts with those keys) up front."""
    def bad(what: str) -> NrtError:
        return fail(NrtStatus.INVALID, "NRT", function, f"Invalid batch {what}: expected an iterable of "
                    "(tensor, [(offset, size, buffer), ...]) or {'tensor': t, 'ops': [{'offset', 'size', 'buffer'}]}")
    if batches is None or isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable):
        raise bad(repr(batches)[:80])
    out = []
    for b in batches:
        try:
            tensor, ops = (b["tensor"], b["ops"]) if isinstance(b, Mapping) else b
            parsed = []
            for o in ops:
                offset, size, buf = (o["offset"], o["size"], o["buffer"]) if isinstance(o, Mapping) else o
                parsed.append((offset, size, buf))
        except (TypeError, ValueError, KeyError) as exc:
            raise bad(f"entry {b!r:.80}: {exc!r}") from None
        out.append((tensor, parsed))
    return out


def tensor_read_batch(batches: Any) -> None:
    """Several reads, all entries checked before any is done."""
    fn = "nrt_tensor_read_batch"
    _live(fn)
    for tensor, ops in _batches(batches, fn):
        for offset, size, buf in ops:
            tensor_read(tensor, buf, offset, size)


def tensor_write_batch(batches: Any) -> None:
    """Several writes, all entries parsed before any is done."""
    fn = "nrt_tensor_write_batch"
    _live(fn)
    for tensor, ops in _batches(batches, fn):
        for offset, size, buf in ops:
            tensor_write(tensor, buf, offset, size)


def tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> None:
    _live("nrt_tensor_copy").tensor_copy(src, src_offset, dst, dst_offset, size)


def tensor_memset(tensor: Any, offset: int, value: int, size: int) -> None:
    _live("nrt_tensor_memset").tensor_memset(tensor, offset, value, size)


def tensor_slice(src: Any, offset: int, size: int, name: str | None = None) -> Tensor:
    """A tensor sharing ``src``'s storage (refcounted: it outlives a freed source)."""
    return _live("nrt_tensor_allocate_slice").tensor_slice(src, offset, size, name)


def tensor_attach_buffer(tensor: Any, buffer: Any, size: int) -> None:
    """Use caller memory as the tensor's storage (placement becomes VIRTUAL)."""
    _live("nrt_tensor_attach_buffer").tensor_attach_buffer(tensor, buffer, size)


def tensor_size(tensor: Any) -> int:
    """Size in bytes (0 for anything that is not a tensor)."""
    return tensor.size if isinstance(tensor, Tensor) else 0


def tensor_va(tensor: Any) -> int | None:
    """Host address of the tensor's bytes (materialises them), or None without storage."""
    if not isinstance(tensor, Tensor) or tensor.freed or tensor.storage is None:
        return None
    return int(tensor.bytes_view().ctypes.data)


def tensor_device_allocation_info(tensor: Any) -> tuple[int, int, int]:
    """(simulated physical address, size, HBM index) of a device tensor; the address is stable per tensor."""
    fn = "nrt_tensor_get_device_allocation_info"
    t = _live(fn).check_tensor(tensor, fn)
    if t.placement is not Placement.DEVICE:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Tensor '{t.name}' is not in device memory "
                                                 f"(placement {t.placement.name})")
    return id(t.storage) * 64 + t.offset, t.size, t.core.hbm_bank


def tensor_fill(tensor: Any, data: Any) -> None:
    """Overwrite the whole tensor with ``data``, whose byte size must equal the tensor's."""
    fn = "nrt_tensor_write"
    rt = _live(fn)
    src = as_bytes(data, fn)
    t = rt.check_tensor(tensor, fn)
    if src.nbytes != t.size:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"array of {src.nbytes} bytes does not fit tensor '{t.name}' "
                                                 f"of {t.size} bytes")
    rt.tensor_write(t, src, 0, src.nbytes)


def tensor_of_array(array: Any, placement: Any, vnc: int, name: str | None = None) -> Tensor:
    """A new tensor holding a copy of ``array``'s bytes (numbers only; freed again if the copy fails)."""
    fn = "nrt_tensor_allocate"
    try:
        arr = np.ascontiguousarray(array)
    except (TypeError, ValueError) as exc:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid array {type(array).__name__}: {exc}") from None
    if arr.dtype.hasobject:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid array of Python objects ({arr.dtype}): tensors hold "
                                                 "numbers; pass a numeric numpy array")
    t = tensor_allocate(placement, vnc, arr.nbytes, name)
    try:
        tensor_fill(t, arr)
    except BaseException:
        tensor_free(t)
        raise
    return t


def tensor_array(tensor: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A copy of the whole tensor as an array of ``dtype`` and ``shape``."""
    out = np.empty(shape, dtype)
    tensor_read(tensor, out, 0, out.nbytes)
    return out


def numpy_dtype_of(dtype: Any, function: str = "nrt_tensor_allocate") -> np.dtype:
    """A dtype name, NrtDtype code or numpy dtype as the numpy dtype tensors use; NRT_INVALID otherwise."""
    try:
        if isinstance(dtype, (str, NrtDtype, int)):
            return numpy_dtype(dtype)
        return np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid dtype {dtype!r}: {exc}") from None


def wait_output_completion(tensor: Any, timeout_us: Any, expected: Any) -> None:
    """Block until the tensor's completion counter reaches ``expected`` (negative timeout: forever)."""
    fn = "nrt_tensor_check_output_completion"
    rt = _live(fn)
    if tensor is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL tensor")
    t = rt.check_tensor(tensor, fn)
    for label, value in (("timeout_us", timeout_us), ("expected", expected)):
        if not _is_int(value):
            raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid {label} {value!r}: expected an integer")
    rt.wait_completions(t, expected, None if timeout_us < 0 else timeout_us / 1e6, fn)


def reset_output_completion(tensor: Any) -> None:
    fn = "nrt_tensor_reset_output_completion"
    rt = _live(fn)
    if tensor is None:
        raise fail(NrtStatus.INVALID, "NRT", fn, "NULL tensor")
    rt.reset_completions(rt.check_tensor(tensor, fn))


# ---- tensor sets ----------------------------------------------------------------------------------------
def tensor_set_allocate() -> TensorSet:
    _live("nrt_allocate_tensor_set")
    return TensorSet()


def tensor_set_destroy(tensor_set: Any) -> None:
    """Forget the set's entries; its tensors are not freed."""
    if isinstance(tensor_set, TensorSet):
        tensor_set.clear()
        tensor_set.destroyed = True


def _tset(s: Any, function: str) -> TensorSet:
    if not isinstance(s, TensorSet) or s.destroyed:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid tensor set handle {s!r}")
    return s


def tensor_set_add(tensor_set: Any, name: Any, tensor: Any) -> None:
    """Add, or replace, the tensor under ``name`` (the key need not equal the tensor's own name)."""
    fn = "nrt_add_tensor_to_tensor_set"
    rt = _live(fn)
    s = _tset(tensor_set, fn)
    if not isinstance(name, str) or not name or len(name) >= TENSOR_NAME_MAX:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid tensor name {name!r}: expected a non-empty string "
                                                 f"shorter than {TENSOR_NAME_MAX}")
    s[name] = rt.check_tensor(tensor, fn)


def tensor_set_get(tensor_set: Any, name: Any) -> Tensor:
    fn = "nrt_get_tensor_from_tensor_set"
    s = _tset(tensor_set, fn)
    t = s.get(name) if isinstance(name, str) else None
    if t is None:
        raise fail(NrtStatus.FAILURE, "NRT", fn, f"Tensor {name!r} is not in the tensor set "
                                                 f"(has: {', '.join(sorted(s)) or 'nothing'})")
    return t


def tensor_set_of(tensors: Any) -> TensorSet:
    """A tensor set holding a name -> tensor mapping, every entry checked as ``tensor_set_add`` does."""
    if not isinstance(tensors, Mapping):
        raise fail(NrtStatus.INVALID, "NRT", "nrt_add_tensor_to_tensor_set",
                   f"Invalid tensors {tensors!r:.80}: expected a mapping of names to tensors")
    s = TensorSet()
    for name, tensor in tensors.items():
        tensor_set_add(s, name, tensor)
    return s


# ---- execute and async ----------------------------------------------------------------------------------
def execute(model: Any, inputs: Any, outputs: Any) -> NrtStatus:
    """nrt_execute: run now, or enqueue with NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS > 0 (QUEUE_FULL if full)."""
    rt = lifecycle.current("nrt_execute")
    if rt.async_queue is not None:
        return rt.async_queue.submit(model, inputs, outputs)
    return execution.execute(rt, model, inputs, outputs)


def execute_status(model: Any, inputs: Any, outputs: Any) -> int:
    """``execute`` for status-returning faces: the status as an int, never an exception (one frame: the hot path)."""
    try:
        rt = lifecycle.current("nrt_execute")
        if rt.async_queue is not None:
            return int(rt.async_queue.submit(model, inputs, outputs))
        return int(execution.execute(rt, model, inputs, outputs))
    except NrtError as exc:
        return int(exc.status)
    except Exception as exc:  # never a traceback out of a status-returning face
        return internal_error("nrt_execute", exc)


def execute_repeat(model: Any, inputs: Any, outputs: Any, repeat_count: Any) -> NrtStatus:
    """Run ``repeat_count`` times, outputs of run n-1 feeding the inputs of run n."""
    return execution.execute_repeat(_live("nrt_execute_repeat"), model, inputs, outputs, repeat_count)


def execute_now(model: Any, inputs: Any, outputs: Any) -> NrtStatus:
    """Run synchronously even when async execution is on (the Pythonic ``Model.run``)."""
    return execution.execute(_live("nrt_execute"), model, inputs, outputs)


def run_arrays(model: Any, inputs: Mapping[str, Any]) -> tuple[NrtStatus, dict[str, np.ndarray]]:
    """Execute on numpy inputs (see runtime.arrays for the conversion rule); thread-safe per call."""
    rt = lifecycle.current("nrt_execute")
    if type(inputs) is not dict and not isinstance(inputs, Mapping):
        raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"inputs must map input names to arrays, got {inputs!r}")
    if type(model) is not Model or model.unloaded or model.copies:     # the common case needs no call
        model = models.pick_copy(models.check_model(rt, model, "nrt_execute"))
    return arrays.run(rt, model, inputs)


def submit(model: Any, inputs: Any, outputs: Any, on_done: Callable[[int], Any] | None = None) -> NrtStatus:
    """Enqueue one async execution on tensor sets; ``on_done(status)`` runs on the runtime thread after it."""
    rt = _live("nrt_execute")
    if rt.async_queue is None:
        raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", "async execution is off: set NEURON_RT_ASYNC_EXEC_"
                   "MAX_INFLIGHT_REQUESTS to a queue depth > 0 before the runtime starts")
    return rt.async_queue.submit(model, inputs, outputs, on_done=on_done)


def submit_arrays(model: Any, inputs: Mapping[str, Any],
                  on_done: Callable[[int, dict[str, np.ndarray]], Any], block: bool = False) -> None:
    """Enqueue one async execution on numpy inputs; ``on_done(status, outputs)`` runs when it completes.

    ``block``: when the core's queue is full, wait (in simulated time) for the oldest request to end
    instead of NRT_QUEUE_FULL."""
    rt = _live("nrt_execute")
    if not isinstance(inputs, Mapping):
        raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"inputs must map input names to arrays, got {inputs!r}")
    arrays.submit(rt, models.pick_copy(models.check_model(rt, model, "nrt_execute")), inputs, on_done, block)


def completion_future() -> Future:
    """A Future whose ``result()`` also waits in simulated time for its request's end (set ``.end``)."""
    return async_exec.Completion(_live("nrt_execute").clock)


def async_enabled() -> bool:
    """Whether nrt_execute enqueues (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS > 0)."""
    return _live("nrt_execute").async_queue is not None


def async_depth() -> int:
    """The per-core in-flight limit in effect (0 when async execution is off)."""
    q = _live("nrt_execute").async_queue
    return 0 if q is None else q.max_inflight


@contextlib.contextmanager
def pause_core(vnc: int) -> Iterator[None]:
    """Hold NeuronCore ``vnc``'s execution lock for the block: its runtime thread runs nothing (in wall time),
    so accepted requests stay pending — to test code that waits on a pending request."""
    rt = _live("pause_core")
    with rt.core_state(vnc, "pause_core").lock:
        yield


def register_callback(callback: Callable[..., Any] | None, params: Any = None) -> None:
    """The async thread calls ``callback(params, model_id, vnc, job_id, status)`` (None: the default)."""
    async_exec.register_callback(_live("nrt_register_async_exec_callback"), callback, params)


def drain(vnc: int) -> None:
    """Block until core ``vnc``'s async queue is empty."""
    async_exec.drain(_live("nrt_async_drain_queued_execs"), vnc)


# ---- memory ---------------------------------------------------------------------------------------------
def memory_stats(vnc: int) -> tuple[int, int]:
    """(bytes used by visible core ``vnc``, limit of the HBM bank it allocates from)."""
    return _live("nrt_get_vnc_memory_stats").memory_stats(vnc)


def memory_by_category(vnc: int) -> dict[str, int]:
    """Bytes per category (tensors, model_code, constants, ...) attributed to visible core ``vnc``."""
    rt = _live("nrt_get_vnc_memory_stats")
    return rt.memory.usage_by_category(rt.core_state(vnc, "nrt_get_vnc_memory_stats").core)


# ---- additions for the faces that landed with the interface (nrtpy, testing) -----------------------------
def model_execution_time_s(model: Any) -> float:
    """Simulated device seconds each execution of the model takes (what a completed execution charges its
    cores; the cost model's duration), e.g. for a face's per-execution device time."""
    return _model(model, "nrt_get_model_info").duration_s


def live_runtime() -> Runtime | None:
    """The live runtime's opaque handle (what ``init`` returned), or None: a face may tag the objects it makes
    with it and tell, by identity, whether the runtime they belong to is still the live one."""
    return lifecycle.peek()


def reset_process() -> None:
    """Close the runtime and return to the never-initialised state, forget this process's fault state and
    re-read the log settings from os.environ (test isolation: ``neuron_sim.testing.emulate``)."""
    lifecycle.reset()
    faults.reset()
    nrtlog.configure(None)


def save_references() -> Callable[[], None]:
    """Snapshot the registry of numpy references (``register_reference``); calling the result puts it back."""
    saved = references.snapshot()
    return lambda: references.restore(saved)


def injected_faults() -> list[tuple[str, int, str, int]]:
    """The faults this process injected so far: (call, fault id, status name, device), oldest first."""
    return list(faults.state().events)


def fault_plan_changed(machine_dir: str | os.PathLike) -> None:
    """This process changed the fault plan of the machine at ``machine_dir``: apply it now if this process's
    runtime follows that machine (other processes see it at their next poll)."""
    if faults.state().state_dir == Path(machine_dir):
        faults.refresh()


# ---- explicit async API (nrta_*, NRTA 3.0; see runtime.xu) ----------------------------------------------
from neuron_sim.runtime import xu as _xu  # noqa: E402 - appended group, kept apart for easy merges
from neuron_sim.runtime.xu import QUEUES as XU_QUEUES, CompletionStatus, XuType  # noqa: E402,F401

__all__ += ["CompletionStatus", "XuType", "XU_QUEUES", "async_tensor_write", "async_tensor_read",
            "async_tensor_copy", "async_execute", "async_is_completed", "async_last_sequence",
            "async_notify_seq", "async_notify_xu"]


def async_tensor_write(tensor: Any, buf: Any, offset: Any, size: Any, queue: Any, ret: Any) -> int:
    """nrta_tensor_write: check now, copy ``buf`` into the tensor on its TENSOR_OP queue; the sequence id.

    ``ret`` is a ``CompletionStatus`` (or a callable taking the status) that gets the final status."""
    return _xu.tensor_write(_live("nrta_tensor_write"), tensor, buf, offset, size, queue, ret)


def async_tensor_read(buf: Any, tensor: Any, offset: Any, size: Any, queue: Any, ret: Any) -> int:
    """nrta_tensor_read (buffer first): the tensor's bytes land in ``buf`` at completion."""
    return _xu.tensor_read(_live("nrta_tensor_read"), buf, tensor, offset, size, queue, ret)


def async_tensor_copy(src: Any, src_offset: Any, dst: Any, dst_offset: Any, size: Any, queue: Any, ret: Any) -> int:
    """nrta_tensor_copy: same-core device copy on the TENSOR_OP queue."""
    return _xu.tensor_copy(_live("nrta_tensor_copy"), src, src_offset, dst, dst_offset, size, queue, ret)


def async_execute(model: Any, inputs: Any, outputs: Any, queue: Any, ret: Any,
                  on_done: Callable[[int], Any] | None = None) -> int:
    """nrta_execute_schedule on the model's COMPUTE queue; ``on_done(status)`` runs after ``ret`` is written."""
    return _xu.execute_schedule(_live("nrta_execute_schedule"), model, inputs, outputs, queue, ret, on_done)


def async_is_completed(seq: Any) -> bool:
    """nrta_is_completed (an id this runtime never issued is NRT_INVALID)."""
    return _xu.is_completed(_live("nrta_is_completed"), seq)


def async_last_sequence(vnc: Any, xu: Any, queue: Any) -> int:
    """nrta_get_sequence: the last completed sequence id of that XU queue."""
    return _xu.last_completed(_live("nrta_get_sequence"), vnc, xu, queue)


def async_notify_seq(seq: Any, eventfd: Any) -> None:
    """nrta_event_register_seq_id_completion: the eventfd is written once when ``seq`` completes."""
    _xu.notify_seq(_live("nrta_event_register_seq_id_completion"), seq, eventfd)


def async_notify_xu(vnc: Any, xu: Any, queue: Any, eventfd: Any) -> None:
    """nrta_event_register_xu_completion: the eventfd counts every completion of the queue (-1 unregisters)."""
    _xu.notify_xu(_live("nrta_event_register_xu_completion"), vnc, xu, queue, eventfd)


# ---- system trace and profile (nrt_sys_trace.h, nrt_profile.h; see runtime.trace) ---------------------------
SysTraceConfig, SysTraceFetchOptions = trace.SysTraceConfig, trace.FetchOptions


def _trace_config(config: Any, function: str) -> trace.SysTraceConfig:
    if not isinstance(config, trace.SysTraceConfig) or config.freed:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid system trace config {config!r:.80}: pass one "
                                                       "from nrt_sys_trace_config_allocate")
    return config


def _fetch_options(options: Any, function: str) -> trace.FetchOptions:
    if not isinstance(options, trace.FetchOptions) or options.freed:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid fetch options {options!r:.80}: pass ones "
                                                       "from nrt_sys_trace_fetch_options_allocate")
    return options


def _count_arg(value: Any, what: str, function: str) -> int:
    if not _is_int(value) or value < 0:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid {what} {value!r}: expected an integer >= 0")
    return value


def sys_trace_config_new() -> trace.SysTraceConfig:
    """A system trace config with defaults: every visible NC and every event type."""
    return trace.SysTraceConfig()


def sys_trace_config_defaults(config: Any) -> None:
    _trace_config(config, "nrt_sys_trace_config_set_defaults").set_defaults()


def sys_trace_config_free(config: Any) -> None:
    if isinstance(config, trace.SysTraceConfig):
        config.freed = True


def sys_trace_config_max_events(config: Any, n: Any) -> None:
    """Ring size per NC: the oldest events are dropped past it (0 keeps none)."""
    fn = "nrt_sys_trace_config_set_max_events_per_nc"
    _trace_config(config, fn).max_events_per_nc = _count_arg(n, "max events per NC", fn)


def sys_trace_config_nc(config: Any, nc: Any, on: Any) -> None:
    """Capture (or not) the events of process-local NC ``nc``."""
    fn = "nrt_sys_trace_config_set_capture_enabled_for_nc"
    c = _trace_config(config, fn)
    nc = _count_arg(nc, "NeuronCore index", fn)
    (c.disabled_ncs.discard if on else c.disabled_ncs.add)(nc)


def sys_trace_config_event_type(config: Any, event_type: Any, on: Any) -> None:
    """Capture (or not) one event type; an unknown type is NRT_INVALID naming the known ones."""
    fn = "nrt_sys_trace_config_set_capture_enabled_for_event_type"
    c = _trace_config(config, fn)
    name = trace.check_event_type(event_type, fn)
    (c.event_types.add if on else c.event_types.discard)(name)


def sys_trace_config_enabled_types(config: Any) -> list[str]:
    return trace.enabled_types(_trace_config(config, "nrt_sys_trace_config_get_enabled_event_types"))


def sys_trace_event_types() -> list[str]:
    """Every event type the runtime emits (hardware, then software)."""
    return trace.event_types()


def sys_trace_start(config: Any = None) -> None:
    """Start capturing (None: defaults); NEURON_RT_INSPECT_EVENT_FILTER_NC/_TYPE are read now."""
    fn = "nrt_sys_trace_start"
    rt = _live(fn)
    trace.sys_trace_start(rt, None if config is None else _trace_config(config, fn))


def sys_trace_stop() -> None:
    trace.sys_trace_stop(_live("nrt_sys_trace_stop"))


def sys_trace_fetch_options_new() -> trace.FetchOptions:
    return trace.FetchOptions()


def sys_trace_fetch_options_defaults(options: Any) -> None:
    o = _fetch_options(options, "nrt_sys_trace_fetch_options_set_defaults")
    o.max_events_per_nc = o.nc_idx = None


def sys_trace_fetch_options_free(options: Any) -> None:
    if isinstance(options, trace.FetchOptions):
        options.freed = True


def sys_trace_fetch_options_max_events(options: Any, n: Any) -> None:
    fn = "nrt_sys_trace_fetch_options_set_max_events_per_nc"
    _fetch_options(options, fn).max_events_per_nc = _count_arg(n, "max events per NC", fn)


def sys_trace_fetch_options_nc(options: Any, nc: Any) -> None:
    fn = "nrt_sys_trace_fetch_options_set_nc_idx"
    _fetch_options(options, fn).nc_idx = _count_arg(nc, "NeuronCore index", fn)


def sys_trace_fetch(options: Any = None) -> str:
    """The events captured since the last fetch as the spec's JSON document ``{"events": [...]}``."""
    fn = "nrt_sys_trace_fetch_events"
    rt = _live(fn)
    events = trace.sys_trace_fetch(rt, None if options is None else _fetch_options(options, fn))
    return json.dumps({"events": events}, separators=(",", ":"))


def profile_start(model: Any, path: Any) -> None:
    """Capture ``model``'s executions into ``path`` (truncated now) until ``profile_stop(path)``."""
    fn = "nrt_profile_start"
    m = _model(model, fn)
    trace.profile_start(_live(fn), m, _trace_path(path, fn))


def profile_stop(path: Any) -> None:
    """Write the profile file started on ``path`` (neuron_sim's own JSON format, docs/tracing.md)."""
    fn = "nrt_profile_stop"
    trace.profile_stop(_live(fn), _trace_path(path, fn))


def _trace_path(path: Any, function: str) -> str:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid file {path!r}: expected a file path")
    return os.fspath(path)


def publish_state() -> None:
    """Rewrite this process's published record now (drawings and tools read it; normally it lags <= 1 s)."""
    publisher = _live("publish_state").publisher
    if publisher is not None:
        publisher.publish()


def state_dir() -> Path:
    """The live runtime's machine state directory (lock files, published records, memory ledger)."""
    return Path(_live("state_dir").reservation.state_dir)
