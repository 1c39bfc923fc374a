"""The Python side of every function ``libnrt.so.1`` exports: C pointers and structs in, runtime calls out.

Each function translates its C arguments (handles, caller buffers viewed in place, C strings), makes the
one matching call on the runtime face and writes the results through the caller's pointers. Behaviour
lives in the runtime; what is decided here is C-only: a NULL out-pointer is ``NRT_INVALID`` before
anything happens, versioned structs are copied ``min(size_in, sizeof)`` bytes with ``*size_out`` set to
the bytes written, and an unexpected Python error is logged and returned as ``NRT_FAILURE``.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from neuron_sim import nrt as face          # the runtime entry every face calls: switch it here, nowhere else
from neuron_sim import nrtlog
from neuron_sim.clib.handles import HandleTable

NRT_SUCCESS, NRT_FAILURE, NRT_INVALID = 0, 1, 2

ffi: Any = None
handles: HandleTable
_strings: dict[int, Any] = {}
_strings_lock = threading.Lock()


# ---- translation helpers -------------------------------------------------------------------------
def _null_out(function: str, what: str) -> int:
    nrtlog.error("NRT", function, f"{what} is NULL: pass a pointer the result can be written to")
    return NRT_INVALID


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


class _InfoArray:
    """A tensor info array handed to C: the runtime's value and the C memory (with its shape arrays)."""

    __slots__ = ("info", "memory", "shapes")

    def __init__(self, info: Any, memory: Any, shapes: list) -> None:
        self.info, self.memory, self.shapes = info, memory, shapes


# ---- init, close, counts -------------------------------------------------------------------------
def nrt_init(framework: int, fw_version: Any, fal_version: Any) -> int:
    return face.nrt_init(framework, _text(fw_version) or "", _text(fal_version) or "")


def nrt_close() -> None:
    face.nrt_close()


def _count(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "count pointer")
    status, value = call()
    if status == NRT_SUCCESS:
        out[0] = value
    return status


def nrt_get_total_nc_count(out: Any) -> int:
    return _count("nrt_get_total_nc_count", face.nrt_get_total_nc_count, out)


def nrt_get_total_vnc_count(out: Any) -> int:
    return _count("nrt_get_total_vnc_count", face.nrt_get_total_vnc_count, out)


def nrt_get_visible_nc_count(out: Any) -> int:
    return _count("nrt_get_visible_nc_count", face.nrt_get_visible_nc_count, out)


def nrt_get_visible_vnc_count(out: Any) -> int:
    return _count("nrt_get_visible_vnc_count", face.nrt_get_visible_vnc_count, out)


def nrt_get_instance_info(info: Any, length: int) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_get_instance_info", "info")
    status, value = face.nrt_get_instance_info()
    if status == NRT_SUCCESS:
        _copy_versioned(info, "nrt_instance_info_t", {
            "family": value.family, "size": value.size, "arch_name": value.arch_name.encode()[:15],
            "device_revision": value.device_revision.encode()[:7]}, length)
    return status


# ---- models --------------------------------------------------------------------------------------
def _load(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "model pointer")
    status, model = call()
    if status == NRT_SUCCESS:
        out[0] = handles.issue(model, "nrt_model_t *")
    return status


def nrt_load(neff: Any, size: int, vnc: int, vnc_count: int, out: Any) -> int:
    return _load("nrt_load", lambda: face.nrt_load(_memory(neff, size), vnc, vnc_count), out)


def nrt_load_collectives(neff: Any, size: int, vnc: int, vnc_count: int, ctx_device_id: int,
                         ctx_device_count: int, out: Any) -> int:
    return _load("nrt_load_collectives", lambda: face.nrt_load_collectives(
        _memory(neff, size), vnc, vnc_count, ctx_device_id, ctx_device_count), out)


def nrt_unload(model: Any) -> int:
    status = face.nrt_unload(handles.get(model))
    if status == NRT_SUCCESS:
        handles.retire(model)
    return status


def nrt_get_model_nc_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_nc_count", lambda: face.nrt_get_model_nc_count(handles.get(model)), out)


def nrt_get_model_vnc_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_vnc_count", lambda: face.nrt_get_model_vnc_count(handles.get(model)), out)


def nrt_get_model_instance_count(model: Any, out: Any) -> int:
    return _count("nrt_get_model_instance_count",
                  lambda: face.nrt_get_model_instance_count(handles.get(model)), out)


def nrt_get_model_info(model: Any, info: Any, size_in: int, size_out: Any) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_get_model_info", "info")
    status, value = face.nrt_get_model_info(handles.get(model))
    if status == NRT_SUCCESS:
        _copy_versioned(info, "nrt_model_info_t", {"vnc": value.vnc}, size_in, size_out)
    return status


def nrt_get_model_tensor_info(model: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_get_model_tensor_info", "tensor info pointer")
    status, info = face.nrt_get_model_tensor_info(handles.get(model))
    if status != NRT_SUCCESS:
        return status
    memory = ffi.new("nrt_tensor_info_array_t *", {"tensor_count": info.tensor_count,
                                                    "tensor_array": info.tensor_count})
    shapes = []
    for i, ti in enumerate(info.tensor_array):
        entry = memory.tensor_array[i]
        entry.name = ti.name.encode()[:255]
        entry.usage, entry.size, entry.dtype = ti.usage, ti.size, ti.dtype
        shape = ffi.new("uint32_t[]", list(ti.shape) or [0])
        shapes.append(shape)
        entry.shape, entry.ndim = shape, len(ti.shape)
    handles.adopt(memory, _InfoArray(info, memory, shapes))
    out[0] = memory
    return NRT_SUCCESS


def nrt_free_model_tensor_info(info: Any) -> int:
    held = handles.get(info)
    status = face.nrt_free_model_tensor_info(held.info if isinstance(held, _InfoArray) else held)
    if status == NRT_SUCCESS:
        handles.retire(info)
    return status


# ---- tensor sets and execute ---------------------------------------------------------------------
def nrt_allocate_tensor_set(out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_allocate_tensor_set", "tensor set pointer")
    status, tensor_set = face.nrt_allocate_tensor_set()
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor_set)
    return status


def nrt_destroy_tensor_set(ref: Any) -> None:
    if ref == ffi.NULL or ref[0] == ffi.NULL:
        return
    held = handles.get(ref[0])
    face.nrt_destroy_tensor_set(held)
    if getattr(held, "destroyed", False):
        handles.retire(ref[0])
        ref[0] = ffi.NULL


def nrt_add_tensor_to_tensor_set(tensor_set: Any, name: Any, tensor: Any) -> int:
    return face.nrt_add_tensor_to_tensor_set(handles.get(tensor_set), _text(name), handles.get(tensor))


def nrt_get_tensor_from_tensor_set(tensor_set: Any, name: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out("nrt_get_tensor_from_tensor_set", "tensor pointer")
    status, tensor = face.nrt_get_tensor_from_tensor_set(handles.get(tensor_set), _text(name))
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor, "nrt_tensor_t *")
    return status


def nrt_execute(model: Any, inputs: Any, outputs: Any) -> int:
    get = handles.get
    return face.nrt_execute(get(model), get(inputs), get(outputs))


def nrt_execute_repeat(model: Any, inputs: Any, outputs: Any, repeat_count: int) -> int:
    get = handles.get
    return face.nrt_execute_repeat(get(model), get(inputs), get(outputs), repeat_count)


# ---- tensors -------------------------------------------------------------------------------------
def _new_tensor(function: str, call: Any, out: Any) -> int:
    if out == ffi.NULL:
        return _null_out(function, "tensor pointer")
    status, tensor = call()
    if status == NRT_SUCCESS:
        out[0] = handles.issue(tensor, "nrt_tensor_t *")
    return status


def nrt_tensor_allocate(placement: int, vnc: int, size: int, name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate",
                       lambda: face.nrt_tensor_allocate(placement, vnc, size, _text(name)), out)


def nrt_tensor_allocate_empty(name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate_empty", lambda: face.nrt_tensor_allocate_empty(_text(name)), out)


def nrt_tensor_allocate_slice(source: Any, offset: int, size: int, name: Any, out: Any) -> int:
    return _new_tensor("nrt_tensor_allocate_slice", lambda: face.nrt_tensor_allocate_slice(
        handles.get(source), offset, size, _text(name)), out)


def nrt_tensor_free(ref: Any) -> None:
    if ref == ffi.NULL or ref[0] == ffi.NULL:
        return
    held = handles.get(ref[0])
    face.nrt_tensor_free(held)
    if getattr(held, "freed", False):
        handles.retire(ref[0])
        ref[0] = ffi.NULL


def nrt_tensor_read(tensor: Any, buf: Any, offset: int, size: int) -> int:
    return face.nrt_tensor_read(handles.get(tensor), _memory(buf, size), offset, size)


def nrt_tensor_write(tensor: Any, buf: Any, offset: int, size: int) -> int:
    return face.nrt_tensor_write(handles.get(tensor), _memory(buf, size), offset, size)


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
    return face.nrt_tensor_read_batch(converted, bool(unsafe))


def nrt_tensor_write_batch(batches: Any, count: int, unsafe: bool) -> int:
    converted = _batches(batches, count)
    if converted is None:
        return _null_out("nrt_tensor_write_batch", "batch or ops array")
    return face.nrt_tensor_write_batch(converted, bool(unsafe))


def nrt_tensor_copy(src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> int:
    return face.nrt_tensor_copy(handles.get(src), src_offset, handles.get(dst), dst_offset, size)


def nrt_tensor_get_size(tensor: Any) -> int:
    return face.nrt_tensor_get_size(handles.get(tensor))


def nrt_tensor_memset(tensor: Any, offset: int, value: int, size: int) -> int:
    return face.nrt_tensor_memset(handles.get(tensor), offset, value, size)


def nrt_tensor_attach_buffer(tensor: Any, buf: Any, size: int) -> int:
    return face.nrt_tensor_attach_buffer(handles.get(tensor), _memory(buf, size), size)


def nrt_tensor_get_va(tensor: Any) -> Any:
    address = face.nrt_tensor_get_va(handles.get(tensor))
    return ffi.NULL if address is None else ffi.cast("void *", address)


def nrt_tensor_get_device_allocation_info(tensor: Any, info: Any) -> int:
    if info == ffi.NULL:
        return _null_out("nrt_tensor_get_device_allocation_info", "alloc_info")
    status, value = face.nrt_tensor_get_device_allocation_info(handles.get(tensor))
    if status == NRT_SUCCESS:
        info.physical_address, info.size, info.hbm_index = value.physical_address, value.size, value.hbm_index
    return status


def nrt_tensor_check_output_completion(tensor: Any, timeout_us: int, expected: int) -> int:
    return face.nrt_tensor_check_output_completion(handles.get(tensor), timeout_us, expected)


def nrt_tensor_reset_output_completion(tensor: Any) -> int:
    return face.nrt_tensor_reset_output_completion(handles.get(tensor))


def nrt_get_vnc_memory_stats(vnc: int, stats: Any, size_in: int, size_out: Any) -> int:
    if stats == ffi.NULL:
        return _null_out("nrt_get_vnc_memory_stats", "stats")
    status, value = face.nrt_get_vnc_memory_stats(vnc)
    if status == NRT_SUCCESS:
        _copy_versioned(stats, "nrt_vnc_memory_stats_t",
                        {"bytes_used": value.bytes_used, "bytes_limit": value.bytes_limit}, size_in, size_out)
    return status


# ---- async, version, status strings --------------------------------------------------------------
def nrt_register_async_exec_callback(callback: Any, params: Any) -> int:
    if callback == ffi.NULL:
        return face.nrt_register_async_exec_callback(None, params)

    def relay(p: Any, model_id: int, vnc: int, job_id: int, status: int) -> None:
        callback(p, model_id, vnc, job_id, status)       # on the runtime's thread; the GIL is released in C
    return face.nrt_register_async_exec_callback(relay, params)


def nrt_async_drain_queued_execs(vnc: int) -> int:
    return face.nrt_async_drain_queued_execs(vnc)


def nrt_get_version(version: Any, size: int) -> int:
    if version == ffi.NULL:
        return _null_out("nrt_get_version", "version")
    status, value = face.nrt_get_version()
    if status == NRT_SUCCESS:
        _copy_versioned(version, "nrt_version_t", {
            "rt_major": value.rt_major, "rt_minor": value.rt_minor, "rt_patch": value.rt_patch,
            "rt_maintenance": value.rt_maintenance, "rt_detail": value.rt_detail.encode()[:127],
            "git_hash": value.git_hash.encode()[:63]}, size)
    return status


def nrt_get_status_as_str(status: int) -> Any:
    """A string that lives as long as the process, as C callers expect."""
    text = _strings.get(status)
    if text is None:
        with _strings_lock:
            text = _strings.setdefault(status, ffi.new("char[]", face.nrt_get_status_as_str(status).encode()))
    return text


# ---- attaching to the library --------------------------------------------------------------------
def _on_error(name: str):
    def report(exc_type: type, exc: BaseException, tb: Any) -> None:
        nrtlog.error("NRT", name, f"internal error in neuron_sim's libnrt: {exc_type.__name__}: {exc}")
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
    status, obj = call()
    if status == NRT_SUCCESS:
        out[0] = handles.issue(obj, ctype)
    return status


def _free_handle(ptr: Any, free: Any) -> None:
    free(handles.get(ptr))
    handles.retire(ptr)


def nrt_sys_trace_config_allocate(out: Any) -> int:
    return _allocate_handle("nrt_sys_trace_config_allocate", face.nrt_sys_trace_config_allocate,
                            "nrt_sys_trace_config_t *", out)


def nrt_sys_trace_config_set_defaults(config: Any) -> None:
    face.nrt_sys_trace_config_set_defaults(handles.get(config))


def nrt_sys_trace_config_free(config: Any) -> None:
    _free_handle(config, face.nrt_sys_trace_config_free)


def nrt_sys_trace_config_set_max_events_per_nc(config: Any, n: int) -> None:
    face.nrt_sys_trace_config_set_max_events_per_nc(handles.get(config), n)


def nrt_sys_trace_config_set_capture_enabled_for_nc(config: Any, nc_idx: int, enabled: bool) -> None:
    face.nrt_sys_trace_config_set_capture_enabled_for_nc(handles.get(config), nc_idx, bool(enabled))


def nrt_sys_trace_config_set_capture_enabled_for_event_type(config: Any, event_type: Any, enabled: bool) -> int:
    return face.nrt_sys_trace_config_set_capture_enabled_for_event_type(handles.get(config), _text(event_type),
                                                                        bool(enabled))


def _string_array(function: str, call: Any, out: Any, count: Any) -> int:
    """A malloc()ed array of malloc()ed strings (nrt_sys_trace_free_event_types or free() release them)."""
    if out == ffi.NULL or count == ffi.NULL:
        return _null_out(function, "event types or count pointer")
    status, names = call()
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
    return _string_array("nrt_sys_trace_get_event_types", face.nrt_sys_trace_get_event_types, out, count)


def nrt_sys_trace_config_get_enabled_event_types(config: Any, out: Any, count: Any) -> int:
    return _string_array("nrt_sys_trace_config_get_enabled_event_types",
                         lambda: face.nrt_sys_trace_config_get_enabled_event_types(handles.get(config)), out, count)


def nrt_sys_trace_free_event_types(types: Any, count: int) -> None:
    if types == ffi.NULL:
        return
    for i in range(count):
        _c_free(types[i])
    _c_free(types)


def nrt_sys_trace_start(config: Any) -> int:
    return face.nrt_sys_trace_start(None if config == ffi.NULL else handles.get(config))


def nrt_sys_trace_stop() -> int:
    return face.nrt_sys_trace_stop()


def nrt_sys_trace_fetch_options_allocate(out: Any) -> int:
    return _allocate_handle("nrt_sys_trace_fetch_options_allocate", face.nrt_sys_trace_fetch_options_allocate,
                            "nrt_sys_trace_fetch_options_t *", out)


def nrt_sys_trace_fetch_options_set_defaults(options: Any) -> None:
    face.nrt_sys_trace_fetch_options_set_defaults(handles.get(options))


def nrt_sys_trace_fetch_options_free(options: Any) -> None:
    _free_handle(options, face.nrt_sys_trace_fetch_options_free)


def nrt_sys_trace_fetch_options_set_max_events_per_nc(options: Any, n: int) -> None:
    face.nrt_sys_trace_fetch_options_set_max_events_per_nc(handles.get(options), n)


def nrt_sys_trace_fetch_options_set_nc_idx(options: Any, nc_idx: int) -> None:
    face.nrt_sys_trace_fetch_options_set_nc_idx(handles.get(options), nc_idx)


def nrt_sys_trace_fetch_events(buffer: Any, written: Any, options: Any) -> int:
    """The JSON document in a malloc()ed NUL-terminated buffer; ``*written`` is its length without the NUL."""
    if buffer == ffi.NULL or written == ffi.NULL:
        return _null_out("nrt_sys_trace_fetch_events", "buffer or written pointer")
    status, text = face.nrt_sys_trace_fetch_events(None if options == ffi.NULL else handles.get(options))
    if status == NRT_SUCCESS:
        buffer[0] = _c_string(text)
        written[0] = len(text.encode("utf-8"))
    return status


def nrt_sys_trace_buffer_free(buffer: Any) -> None:
    _c_free(buffer)


def nrt_profile_start(model: Any, filename: Any) -> int:
    return face.nrt_profile_start(handles.get(model), _text(filename))


def nrt_profile_stop(filename: Any) -> int:
    return face.nrt_profile_stop(_text(filename))
