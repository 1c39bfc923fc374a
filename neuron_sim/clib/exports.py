"""The Python side of every function ``libnrt.so.1`` exports: C pointers and structs in, runtime calls out.

Each function translates its C arguments (handles, caller buffers viewed in place, C strings), makes the
one matching call on the runtime interface (through ``guard``: every argument gets a status) and writes the
results through the caller's pointers. Behaviour lives in the runtime; what is decided here is C-only: a
NULL out-pointer is ``NRT_INVALID`` before anything happens, versioned structs are copied
``min(size_in, sizeof)`` bytes with ``*size_out`` set to the bytes written, enum codes come from the header,
and an unexpected Python error is logged and returned as ``NRT_FAILURE``. The handle table (pointer <->
object) and the tensor info arrays are this library's own C memory, not runtime state.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from neuron_sim.clib.handles import HandleTable
from neuron_sim.runtime import interface
from neuron_sim.runtime.interface import execute_status, fail, guard
from neuron_sim.status import NrtStatus

NRT_SUCCESS, NRT_FAILURE, NRT_INVALID = 0, 1, 2

ffi: Any = None
handles: HandleTable
_strings: dict[int, Any] = {}
_strings_lock = threading.Lock()


# ---- translation helpers -------------------------------------------------------------------------
def _null_out(function: str, what: str) -> int:
    return int(fail(NrtStatus.INVALID, "NRT", function,
                    f"{what} is NULL: pass a pointer the result can be written to").status)


def _status(function: str, call: Any) -> int:
    """The status of one interface call (NRT_SUCCESS when it returns)."""
    return guard(function, call)[0]


def _text(ptr: Any) -> str | None:
    """A C string as str (None for NULL)."""
    return None if ptr == ffi.NULL else ffi.string(ptr).decode("utf-8", "replace")


def _memory(ptr: Any, size: int) -> Any:
    """The caller's bytes [ptr, ptr+size) viewed in place (None for NULL). Sizes no buffer can have view
    nothing: the runtime rejects them against the tensor before touching the memory."""
    if ptr == ffi.NULL:
        return None
    return ffi.buffer(ptr, size if size <= sys.maxsize else 0)


def _copy_versioned(dst: Any, ctype: str, values: dict, size_in: int, size_out: Any = None) -> None:
    """The versioned-struct protocol: copy ``min(size_in, sizeof)`` bytes, report them in ``*size_out``."""
    n = min(size_in, ffi.sizeof(ctype))
    ffi.memmove(dst, ffi.new(ctype + " *", values), n)
    if size_out is not None and size_out != ffi.NULL:
        size_out[0] = n


def _enum(ctype: str, member: str, unknown: str) -> int:
    """The header's code of an enum member (the ``unknown`` member's code when the header lacks it)."""
    codes = ffi.typeof(ctype).relements
    return codes.get(member, codes[unknown])


class _InfoArray:
    """A tensor info array handed to C: the C memory (with its shape arrays), until freed once."""

    __slots__ = ("memory", "shapes", "freed")

    def __init__(self, memory: Any, shapes: list) -> None:
        self.memory, self.shapes, self.freed = memory, shapes, False


# ---- init, close, counts -------------------------------------------------------------------------
def nrt_init(framework: int, fw_version: Any, fal_version: Any) -> int:
    return _status("nrt_init", lambda: interface.init(framework=framework))


def nrt_close() -> None:
    guard("nrt_close", interface.close)


def _count(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "count pointer")
    status, value = guard(function, call)
    if status == NRT_SUCCESS:
        out[0] = value
    return status


def nrt_get_total_nc_count(out: Any) -> int:
    return _count("nrt_get_total_nc_count", interface.total_nc_count, out)


def nrt_get_total_vnc_count(out: Any) -> int:
    return _count("nrt_get_total_vnc_count", interface.total_nc_count, out)


def nrt_get_visible_nc_count(out: Any) -> int:
    return _count("nrt_get_visible_nc_count", interface.visible_nc_count, out)


def nrt_get_visible_vnc_count(out: Any) -> int:
    return _count("nrt_get_visible_vnc_count", interface.visible_nc_count, out)


def nrt_get_instance_info(info: Any, length: int) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_get_instance_info", "info")
    status, value = guard("nrt_get_instance_info", interface.instance_info)
    if status == NRT_SUCCESS:
        _copy_versioned(info, "nrt_instance_info_t", {
            "family": _enum("nrt_instance_family_t", f"NRT_INSTANCE_{value.family}", "NRT_INSTANCE_UNKNOWN"),
            "size": _enum("nrt_instance_size_t", f"NRT_INSTANCE_SIZE_{value.size}", "NRT_INSTANCE_SIZE_UNKNOWN"),
            "arch_name": value.arch_name.encode()[:15], "device_revision": value.device_revision.encode()[:7]},
            length)
    return status


# ---- models --------------------------------------------------------------------------------------
def _load(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "model pointer")
    status, model = guard(function, call)
    if status == NRT_SUCCESS:
        out[0] = handles.issue(model, "nrt_model_t *")
    return status


def nrt_load(neff: Any, size: int, vnc: int, vnc_count: int, out: Any) -> int:
    return _load("nrt_load", lambda: interface.load(_memory(neff, size), vnc, vnc_count), out)


def nrt_load_collectives(neff: Any, size: int, vnc: int, vnc_count: int, ctx_device_id: int,
                         ctx_device_count: int, out: Any) -> int:
    return _load("nrt_load_collectives", lambda: interface.load_collectives(
        _memory(neff, size), vnc, vnc_count, ctx_device_id, ctx_device_count), out)


def nrt_unload(model: Any) -> int:
    status = _status("nrt_unload", lambda: interface.unload(handles.get(model)))
    if status == NRT_SUCCESS:
        handles.retire(model)
    return status


def nrt_get_model_nc_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_nc_count", lambda: interface.model_nc_count(handles.get(model)), out)


def nrt_get_model_vnc_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_vnc_count", lambda: interface.model_nc_count(handles.get(model)), out)


def nrt_get_model_instance_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_instance_count",
                  lambda: interface.model_instance_count(handles.get(model)), out)


def nrt_get_model_info(model: Any, info: Any, size_in: int, size_out: Any) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_get_model_info", "info")
    status, vnc = guard("nrt_get_model_info", lambda: interface.model_start_nc(handles.get(model)))
    if status == NRT_SUCCESS:
        _copy_versioned(info, "nrt_model_info_t", {"vnc": vnc}, size_in, size_out)
    return status


def nrt_get_model_tensor_info(model: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_get_model_tensor_info", "tensor info pointer")
    status, info = guard("nrt_get_model_tensor_info", lambda: interface.model_tensor_info(handles.get(model)))
    if status != NRT_SUCCESS:
        return status
    memory = ffi.new("nrt_tensor_info_array_t *", {"tensor_count": len(info), "tensor_array": len(info)})
    shapes = []
    for i, ti in enumerate(info):
        entry = memory.tensor_array[i]
        entry.name = ti.name.encode()[:255]
        entry.usage, entry.size, entry.dtype = ti.usage, ti.size, int(ti.dtype)
        shape = ffi.new("uint32_t[]", list(ti.shape) or [0])
        shapes.append(shape)
        entry.shape, entry.ndim = shape, len(ti.shape)
    handles.adopt(memory, _InfoArray(memory, shapes))
    out[0] = memory
    return NRT_SUCCESS


def nrt_free_model_tensor_info(info: Any) -> int:
    """The array is this library's own memory: anything else, or a second free, is NRT_INVALID."""
    held = handles.get(info)
    if not isinstance(held, _InfoArray) or held.freed:
        return int(fail(NrtStatus.INVALID, "NRT", "nrt_free_model_tensor_info",
                        "nrt_free_model_tensor_info: not a live nrt_tensor_info_array_t (freed twice?)").status)
    held.freed = True
    handles.retire(info)
    return NRT_SUCCESS


# ---- tensor sets and execute ---------------------------------------------------------------------
def nrt_allocate_tensor_set(out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_allocate_tensor_set", "tensor set pointer")
    status, tensor_set = guard("nrt_allocate_tensor_set", interface.tensor_set_allocate)
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor_set)
    return status


def nrt_destroy_tensor_set(ref: Any) -> None:
    if ref == ffi.NULL or ref[0] == ffi.NULL:
        return
    held = handles.get(ref[0])
    guard("nrt_destroy_tensor_set", lambda: interface.tensor_set_destroy(held))
    if getattr(held, "destroyed", False):
        handles.retire(ref[0])
        ref[0] = ffi.NULL


def nrt_add_tensor_to_tensor_set(tensor_set: Any, name: Any, tensor: Any) -> int:
    return _status("nrt_add_tensor_to_tensor_set",
                   lambda: interface.tensor_set_add(handles.get(tensor_set), _text(name), handles.get(tensor)))


def nrt_get_tensor_from_tensor_set(tensor_set: Any, name: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_get_tensor_from_tensor_set", "tensor pointer")
    status, tensor = guard("nrt_get_tensor_from_tensor_set",
                           lambda: interface.tensor_set_get(handles.get(tensor_set), _text(name)))
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor, "nrt_tensor_t *")
    return status


def nrt_execute(model: Any, inputs: Any, outputs: Any) -> int:
    get = handles.get
    return execute_status(get(model), get(inputs), get(outputs))


def nrt_execute_repeat(model: Any, inputs: Any, outputs: Any, repeat_count: int) -> int:
    get = handles.get
    status, result = guard("nrt_execute_repeat", lambda: interface.execute_repeat(
        get(model), get(inputs), get(outputs), repeat_count))
    return status or int(result)


# ---- tensors -------------------------------------------------------------------------------------
def _new_tensor(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "tensor pointer")
    status, tensor = guard(function, call)
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor, "nrt_tensor_t *")
    return status


def nrt_tensor_allocate(placement: int, vnc: int, size: int, name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate",
                       lambda: interface.tensor_allocate(placement, vnc, size, _text(name)), out)


def nrt_tensor_allocate_empty(name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate_empty", lambda: interface.tensor_allocate_empty(_text(name)), out)


def nrt_tensor_allocate_slice(source: Any, offset: int, size: int, name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate_slice", lambda: interface.tensor_slice(
        handles.get(source), offset, size, _text(name)), out)


def nrt_tensor_free(ref: Any) -> None:
    if ref == ffi.NULL or ref[0] == ffi.NULL:
        return
    held = handles.get(ref[0])
    guard("nrt_tensor_free", lambda: interface.tensor_free(held))
    if getattr(held, "freed", False):
        handles.retire(ref[0])
        ref[0] = ffi.NULL


def nrt_tensor_read(tensor: Any, buf: Any, offset: int, size: int) -> int:
    return _status("nrt_tensor_read",
                   lambda: interface.tensor_read(handles.get(tensor), _memory(buf, size), offset, size))


def nrt_tensor_write(tensor: Any, buf: Any, offset: int, size: int) -> int:
    return _status("nrt_tensor_write",
                   lambda: interface.tensor_write(handles.get(tensor), _memory(buf, size), offset, size))


def _batches(batches: Any, count: int) -> list | None:
    """C batches as the runtime's (tensor, [(offset, size, buffer), ...]); None if a pointer is NULL."""
    if count and batches == ffi.NULL:
        return None
    out = []
    for i in range(count):
        b = batches[i]
        if b.num_ops and b.ops == ffi.NULL:
            return None
        out.append((handles.get(b.tensor),
                    [(op.offset, op.size, _memory(op.buffer, op.size)) for op in b.ops[0:b.num_ops]]))
    return out


def nrt_tensor_read_batch(batches: Any, count: int, unsafe: bool) -> int:
    converted = _batches(batches, count)
    if converted is None:
        return _null_out("nrt_tensor_read_batch", "batch or ops array")
    return _status("nrt_tensor_read_batch", lambda: interface.tensor_read_batch(converted))


def nrt_tensor_write_batch(batches: Any, count: int, unsafe: bool) -> int:
    converted = _batches(batches, count)
    if converted is None:
        return _null_out("nrt_tensor_write_batch", "batch or ops array")
    return _status("nrt_tensor_write_batch", lambda: interface.tensor_write_batch(converted))


def nrt_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> int:
    return _status("nrt_tensor_copy", lambda: interface.tensor_copy(
        handles.get(src), src_offset, handles.get(dst), dst_offset, size))


def nrt_tensor_get_size(tensor: Any) -> int:
    return interface.tensor_size(handles.get(tensor))


def nrt_tensor_memset(tensor: Any, offset: int, value: int, size: int) -> int:
    return _status("nrt_tensor_memset", lambda: interface.tensor_memset(handles.get(tensor), offset, value, size))


def nrt_tensor_attach_buffer(tensor: Any, buf: Any, size: int) -> int:
    return _status("nrt_tensor_attach_buffer",
                   lambda: interface.tensor_attach_buffer(handles.get(tensor), _memory(buf, size), size))


def nrt_tensor_get_va(tensor: Any) -> Any:
    address = interface.tensor_va(handles.get(tensor))
    return ffi.NULL if address is None else ffi.cast("void *", address)


def nrt_tensor_get_device_allocation_info(tensor: Any, info: Any) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_tensor_get_device_allocation_info", "alloc_info")
    status, value = guard("nrt_tensor_get_device_allocation_info",
                          lambda: interface.tensor_device_allocation_info(handles.get(tensor)))
    if status == NRT_SUCCESS:
        info.physical_address, info.size, info.hbm_index = value
    return status


def nrt_tensor_check_output_completion(tensor: Any, timeout_us: int, expected: int) -> int:
    return _status("nrt_tensor_check_output_completion",
                   lambda: interface.wait_output_completion(handles.get(tensor), timeout_us, expected))


def nrt_tensor_reset_output_completion(tensor: Any) -> int:
    return _status("nrt_tensor_reset_output_completion",
                   lambda: interface.reset_output_completion(handles.get(tensor)))


def nrt_get_vnc_memory_stats(vnc: int, stats: Any, size_in: int, size_out: Any) -> int:
    if stats == ffi.NULL:
        return _null_out("nrt_get_vnc_memory_stats", "stats")
    status, value = guard("nrt_get_vnc_memory_stats", lambda: interface.memory_stats(vnc))
    if status == NRT_SUCCESS:
        used, limit = value
        _copy_versioned(stats, "nrt_vnc_memory_stats_t", {"bytes_used": used, "bytes_limit": limit},
                        size_in, size_out)
    return status


# ---- async, version, status strings --------------------------------------------------------------
def nrt_register_async_exec_callback(callback: Any, params: Any) -> int:
    if callback == ffi.NULL:
        return _status("nrt_register_async_exec_callback", lambda: interface.register_callback(None, params))

    def relay(p: Any, model_id: int, vnc: int, job_id: int, status: int) -> None:
        callback(p, model_id, vnc, job_id, status)       # on the runtime's thread; the GIL is released in C
    return _status("nrt_register_async_exec_callback", lambda: interface.register_callback(relay, params))


def nrt_async_drain_queued_execs(vnc: int) -> int:
    return _status("nrt_async_drain_queued_execs", lambda: interface.drain(vnc))


def nrt_get_version(version: Any, size: int) -> int:
    if version == ffi.NULL:
        return _null_out("nrt_get_version", "version")
    status, value = guard("nrt_get_version", interface.version)
    if status == NRT_SUCCESS:
        major, minor, patch, maintenance = value
        detail = f"neuron_sim emulation of Neuron Runtime {'.'.join(str(p) for p in value)}"
        _copy_versioned(version, "nrt_version_t", {
            "rt_major": major, "rt_minor": minor, "rt_patch": patch, "rt_maintenance": maintenance,
            "rt_detail": detail.encode()[:127], "git_hash": b"neuron_sim"}, size)
    return status


def nrt_get_status_as_str(status: int) -> Any:
    """A string that lives as long as the process, as C callers expect."""
    text = _strings.get(status)
    if text is None:
        with _strings_lock:
            text = _strings.setdefault(status, ffi.new("char[]", interface.status_string(status).encode()))
    return text


# ---- attaching to the library --------------------------------------------------------------------
def _on_error(name: str):
    def report(exc_type: type, exc: BaseException, tb: Any) -> None:
        interface.internal_error(name, exc)
    return report


def install(library_ffi: Any) -> None:
    """Attach every exported function of the library (``ffi`` of the embedded module) to its Python side.

    An unexpected exception is logged and the function returns NRT_FAILURE (0 / NULL where it returns a
    size or a pointer)."""
    global ffi, handles
    ffi = library_ffi
    handles = HandleTable(ffi)
    from neuron_sim.clib.build import exported_functions
    module = sys.modules[__name__]
    for name, return_type in exported_functions().items():
        extra = {"error": NRT_FAILURE} if return_type == "NRT_STATUS" else {}
        ffi.def_extern(name=name, onerror=_on_error(name), **extra)(getattr(module, name))


# ---- nrt_async.h: the explicit async API (NRTA 3.0) ---------------------------------------------
def _status_writer(ret: Any) -> Any:
    """The caller's ``NRT_STATUS *ret`` as the runtime's status sink: written once, at completion."""
    def write(status: int) -> None:
        ret[0] = status
    return write


def _scheduled(function: str, ret: Any, seq: Any, call: Any) -> int:
    """Check the out-pointers, schedule (``call(sink)`` returns the sequence id), write ``*seq``."""
    if ret == ffi.NULL:
        return _null_out(function, "ret (the completion status pointer)")
    if seq == ffi.NULL:
        return _null_out(function, "seq pointer")
    status, value = guard(function, lambda: call(_status_writer(ret)))
    if status == NRT_SUCCESS:
        seq[0] = value
    return status


def nrta_tensor_write(tensor: Any, buf: Any, offset: int, size: int, queue: int, ret: Any, seq: Any) -> int:
    return _scheduled("nrta_tensor_write", ret, seq, lambda sink: interface.async_tensor_write(
        handles.get(tensor), _memory(buf, size), offset, size, queue, sink))


def nrta_tensor_read(buf: Any, tensor: Any, offset: int, size: int, queue: int, ret: Any, seq: Any) -> int:
    return _scheduled("nrta_tensor_read", ret, seq, lambda sink: interface.async_tensor_read(
        _memory(buf, size), handles.get(tensor), offset, size, queue, sink))


def nrta_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int, queue: int, ret: Any,
                     seq: Any) -> int:
    return _scheduled("nrta_tensor_copy", ret, seq, lambda sink: interface.async_tensor_copy(
        handles.get(src), src_offset, handles.get(dst), dst_offset, size, queue, sink))


def nrta_execute_schedule(model: Any, inputs: Any, outputs: Any, queue: int, ret: Any, seq: Any) -> int:
    get = handles.get
    return _scheduled("nrta_execute_schedule", ret, seq, lambda sink: interface.async_execute(
        get(model), get(inputs), get(outputs), queue, sink))


def nrta_is_completed(seq: int, done: Any) -> int:
    if done == ffi.NULL:
        return _null_out("nrta_is_completed", "is_completed pointer")
    status, value = guard("nrta_is_completed", lambda: interface.async_is_completed(seq))
    if status == NRT_SUCCESS:
        done[0] = value
    return status


def nrta_get_sequence(lnc: int, xu: int, queue: int, seq: Any) -> int:
    if seq == ffi.NULL:
        return _null_out("nrta_get_sequence", "seq pointer")
    status, value = guard("nrta_get_sequence", lambda: interface.async_last_sequence(lnc, xu, queue))
    if status == NRT_SUCCESS:
        seq[0] = value
    return status


def nrta_event_register_seq_id_completion(seq: int, eventfd: int) -> int:
    return guard("nrta_event_register_seq_id_completion", lambda: interface.async_notify_seq(seq, eventfd))[0]


def nrta_event_register_xu_completion(lnc: int, xu: int, queue: int, eventfd: int) -> int:
    return guard("nrta_event_register_xu_completion",
                     lambda: interface.async_notify_xu(lnc, xu, queue, eventfd))[0]


# ---- system trace and profile (nrt_sys_trace.h, nrt_profile.h) -------------------------------------
def _libc() -> Any:
    """The C library's malloc/free: what nrt_sys_trace hands out, the caller may free() itself."""
    global _libc_handle
    if _libc_handle is None:
        import ctypes
        lib = ctypes.CDLL(None)
        lib.malloc.restype, lib.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        lib.free.restype, lib.free.argtypes = None, [ctypes.c_void_p]
        _libc_handle = lib
    return _libc_handle


_libc_handle: Any = None


def _c_string(text: str) -> Any:
    """A malloc()ed, NUL-terminated copy of ``text`` (the caller frees it)."""
    data = text.encode("utf-8")
    address = _libc().malloc(len(data) + 1)
    if not address:
        raise MemoryError(f"malloc({len(data) + 1}) failed")
    ffi.memmove(ffi.cast("char *", address), data + b"\0", len(data) + 1)
    return ffi.cast("char *", address)


def _c_free(ptr: Any) -> None:
    if ptr != ffi.NULL:
        _libc().free(int(ffi.cast("uintptr_t", ptr)))


def _allocate_handle(function: str, call: Any, ctype: str, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "output pointer")
    status, obj = guard(function, call)
    if status == NRT_SUCCESS:
        out[0] = handles.issue(obj, ctype)
    return status


def _free_handle(function: str, ptr: Any, free: Any) -> None:
    guard(function, lambda: free(handles.get(ptr)))
    handles.retire(ptr)


def _void(function: str, call: Any) -> None:
    """A void C function: a bad argument is logged by the runtime, nothing is returned."""
    guard(function, call)


def nrt_sys_trace_config_allocate(out: Any) -> int:
    return _allocate_handle("nrt_sys_trace_config_allocate", interface.sys_trace_config_new,
                            "nrt_sys_trace_config_t *", out)


def nrt_sys_trace_config_set_defaults(config: Any) -> None:
    _void("nrt_sys_trace_config_set_defaults", lambda: interface.sys_trace_config_defaults(handles.get(config)))


def nrt_sys_trace_config_free(config: Any) -> None:
    _free_handle("nrt_sys_trace_config_free", config, interface.sys_trace_config_free)


def nrt_sys_trace_config_set_max_events_per_nc(config: Any, n: int) -> None:
    _void("nrt_sys_trace_config_set_max_events_per_nc",
          lambda: interface.sys_trace_config_max_events(handles.get(config), n))


def nrt_sys_trace_config_set_capture_enabled_for_nc(config: Any, nc_idx: int, enabled: bool) -> None:
    _void("nrt_sys_trace_config_set_capture_enabled_for_nc",
          lambda: interface.sys_trace_config_nc(handles.get(config), nc_idx, bool(enabled)))


def nrt_sys_trace_config_set_capture_enabled_for_event_type(config: Any, event_type: Any, enabled: bool) -> int:
    return _status("nrt_sys_trace_config_set_capture_enabled_for_event_type",
                   lambda: interface.sys_trace_config_event_type(handles.get(config), _text(event_type),
                                                                 bool(enabled)))


def _string_array(function: str, call: Any, out: Any, count: Any) -> int:
    """A malloc()ed array of malloc()ed strings (nrt_sys_trace_free_event_types or free() release them)."""
    if out == ffi.NULL or count == ffi.NULL:
        return _null_out(function, "event types or count pointer")
    status, names = guard(function, call)
    if status != NRT_SUCCESS:
        return status
    address = _libc().malloc(max(1, len(names)) * ffi.sizeof("char *"))
    if not address:
        raise MemoryError("malloc failed")
    array = ffi.cast("const char **", address)
    for i, name in enumerate(names):
        array[i] = _c_string(name)
    out[0] = array
    count[0] = len(names)
    return status


def nrt_sys_trace_get_event_types(out: Any, count: Any) -> int:
    return _string_array("nrt_sys_trace_get_event_types", interface.sys_trace_event_types, out, count)


def nrt_sys_trace_config_get_enabled_event_types(config: Any, out: Any, count: Any) -> int:
    return _string_array("nrt_sys_trace_config_get_enabled_event_types",
                         lambda: interface.sys_trace_config_enabled_types(handles.get(config)), out, count)


def nrt_sys_trace_free_event_types(types: Any, count: int) -> None:
    if types == ffi.NULL:
        return
    for i in range(count):
        _c_free(types[i])
    _c_free(types)


def nrt_sys_trace_start(config: Any) -> int:
    return _status("nrt_sys_trace_start",
                   lambda: interface.sys_trace_start(None if config == ffi.NULL else handles.get(config)))


def nrt_sys_trace_stop() -> int:
    return _status("nrt_sys_trace_stop", interface.sys_trace_stop)


def nrt_sys_trace_fetch_options_allocate(out: Any) -> int:
    return _allocate_handle("nrt_sys_trace_fetch_options_allocate", interface.sys_trace_fetch_options_new,
                            "nrt_sys_trace_fetch_options_t *", out)


def nrt_sys_trace_fetch_options_set_defaults(options: Any) -> None:
    _void("nrt_sys_trace_fetch_options_set_defaults",
          lambda: interface.sys_trace_fetch_options_defaults(handles.get(options)))


def nrt_sys_trace_fetch_options_free(options: Any) -> None:
    _free_handle("nrt_sys_trace_fetch_options_free", options, interface.sys_trace_fetch_options_free)


def nrt_sys_trace_fetch_options_set_max_events_per_nc(options: Any, n: int) -> None:
    _void("nrt_sys_trace_fetch_options_set_max_events_per_nc",
          lambda: interface.sys_trace_fetch_options_max_events(handles.get(options), n))


def nrt_sys_trace_fetch_options_set_nc_idx(options: Any, nc_idx: int) -> None:
    _void("nrt_sys_trace_fetch_options_set_nc_idx",
          lambda: interface.sys_trace_fetch_options_nc(handles.get(options), nc_idx))


def nrt_sys_trace_fetch_events(buffer: Any, written: Any, options: Any) -> int:
    """The JSON document in a malloc()ed NUL-terminated buffer; ``*written`` is its length without the NUL."""
    function = "nrt_sys_trace_fetch_events"
    if buffer == ffi.NULL or written == ffi.NULL:
        return _null_out(function, "buffer or written pointer")
    status, text = guard(function, lambda: interface.sys_trace_fetch(
        None if options == ffi.NULL else handles.get(options)))
    if status == NRT_SUCCESS:
        buffer[0] = _c_string(text)
        written[0] = len(text.encode("utf-8"))
    return status


def nrt_sys_trace_buffer_free(buffer: Any) -> None:
    _c_free(buffer)


def nrt_profile_start(model: Any, filename: Any) -> int:
    return _status("nrt_profile_start", lambda: interface.profile_start(handles.get(model), _text(filename)))


def nrt_profile_stop(filename: Any) -> int:
    return _status("nrt_profile_stop", lambda: interface.profile_stop(_text(filename)))
