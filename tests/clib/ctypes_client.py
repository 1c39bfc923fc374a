"""A Python program that drives libnrt through ctypes only, as Python tools built on the C library do.

    ctypes_client.py MODEL.neff INPUT.npy OUTPUT.npy

Loads ``libnrt.so.1`` from the library path, runs the NEFF's first input → first output and saves it.
It never imports neuron_sim: the library it loads is the whole runtime.
"""
import ctypes
import sys

import numpy as np

NAME_MAX = 256


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * NAME_MAX), ("usage", ctypes.c_int), ("size", ctypes.c_size_t),
                ("dtype", ctypes.c_int), ("shape", ctypes.POINTER(ctypes.c_uint32)), ("ndim", ctypes.c_uint32)]


class TensorInfoArray(ctypes.Structure):
    _fields_ = [("tensor_count", ctypes.c_uint64), ("tensor_array", TensorInfo * 0)]


def check(status, what):
    if status != 0:
        sys.exit(f"{what}: {lib.nrt_get_status_as_str(status).decode()} ({status})")


lib = ctypes.CDLL("libnrt.so.1")
lib.nrt_get_status_as_str.restype = ctypes.c_char_p
lib.nrt_load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
lib.nrt_tensor_allocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
lib.nrt_tensor_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
lib.nrt_tensor_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
lib.nrt_add_tensor_to_tensor_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
lib.nrt_execute.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
lib.nrt_unload.argtypes = [ctypes.c_void_p]
lib.nrt_free_model_tensor_info.argtypes = [ctypes.c_void_p]
lib.nrt_get_model_tensor_info.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

neff = open(sys.argv[1], "rb").read()
x = np.load(sys.argv[2])
check(lib.nrt_init(1, b"", b""), "nrt_init")
model = ctypes.c_void_p()
check(lib.nrt_load(neff, len(neff), -1, -1, ctypes.byref(model)), "nrt_load")
info_ptr = ctypes.POINTER(TensorInfoArray)()
check(lib.nrt_get_model_tensor_info(model, ctypes.byref(info_ptr)), "nrt_get_model_tensor_info")
count = info_ptr.contents.tensor_count
infos = ctypes.cast(ctypes.addressof(info_ptr.contents.tensor_array), ctypes.POINTER(TensorInfo * count)).contents
sets = {0: ctypes.c_void_p(), 1: ctypes.c_void_p()}
for s in sets.values():
    check(lib.nrt_allocate_tensor_set(ctypes.byref(s)), "nrt_allocate_tensor_set")
result = None
for ti in infos:
    t = ctypes.c_void_p()
    check(lib.nrt_tensor_allocate(0, 0, ti.size, ti.name, ctypes.byref(t)), "nrt_tensor_allocate")
    check(lib.nrt_add_tensor_to_tensor_set(sets[ti.usage], ti.name, t), "nrt_add_tensor_to_tensor_set")
    if ti.usage == 0:
        assert x.nbytes == ti.size, (x.nbytes, ti.size)
        check(lib.nrt_tensor_write(t, x.ctypes.data, 0, ti.size), "nrt_tensor_write")
    else:
        shape = [ti.shape[d] for d in range(ti.ndim)]
        result = (t, np.empty(shape, np.float32))
check(lib.nrt_execute(model, sets[0], sets[1]), "nrt_execute")
check(lib.nrt_tensor_read(result[0], result[1].ctypes.data, 0, result[1].nbytes), "nrt_tensor_read")
np.save(sys.argv[3], result[1])
check(lib.nrt_unload(model), "nrt_unload")
check(lib.nrt_free_model_tensor_info(info_ptr), "nrt_free_model_tensor_info")
lib.nrt_close()
print("ok")
