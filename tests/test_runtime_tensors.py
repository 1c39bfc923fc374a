"""Tensors and tensor sets through the flat nrt face: nrt.h semantics and every status path."""
from __future__ import annotations

import numpy as np
import pytest

from neuron_sim import nrt

DEVICE, HOST, VIRTUAL = nrt.NRT_TENSOR_PLACEMENT_DEVICE, nrt.NRT_TENSOR_PLACEMENT_HOST, nrt.NRT_TENSOR_PLACEMENT_VIRTUAL


@pytest.fixture
def rt(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == 0
    yield
    nrt.nrt_close()


def alloc(size, vnc=0, placement=DEVICE, name="t"):
    status, t = nrt.nrt_tensor_allocate(placement, vnc, size, name)
    assert status == 0, status
    return t


def read(t, offset=0, size=None):
    size = nrt.nrt_tensor_get_size(t) if size is None else size
    buf = bytearray(size)
    assert nrt.nrt_tensor_read(t, buf, offset, size) == 0
    return bytes(buf)


def test_new_tensors_are_zero_filled(rt):
    t = alloc(64)
    assert read(t) == bytes(64)
    assert nrt.nrt_tensor_get_size(t) == 64


def test_fill_nan_makes_unwritten_memory_visible(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_SIM_FILL", "nan")
    assert nrt.nrt_init() == 0
    t = alloc(16)
    assert np.isnan(np.frombuffer(read(t), np.float32)).all()


def test_write_then_read_with_offsets(rt):
    t = alloc(16)
    assert nrt.nrt_tensor_write(t, b"\x01\x02\x03\x04", 4, 4) == 0
    assert read(t, 0, 16) == bytes(4) + b"\x01\x02\x03\x04" + bytes(8)
    assert read(t, 5, 2) == b"\x02\x03"


@pytest.mark.parametrize("offset,size", [(0, 17), (16, 1), (10, 7), (-1, 2)])
def test_out_of_bounds_is_invalid_and_copies_nothing(rt, capsys, offset, size):
    t = alloc(16)
    assert nrt.nrt_tensor_write(t, bytes(range(20)), offset, size) == nrt.NRT_INVALID
    assert read(t) == bytes(16)
    buf = bytearray(b"\xee" * 20)
    assert nrt.nrt_tensor_read(t, buf, offset, size) == nrt.NRT_INVALID
    assert buf == bytearray(b"\xee" * 20)
    assert "Out of bounds" in capsys.readouterr().err


def test_buffer_smaller_than_size_is_invalid(rt):
    t = alloc(16)
    assert nrt.nrt_tensor_write(t, b"\x01\x02", 0, 8) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_read(t, bytearray(2), 0, 8) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_read(t, b"immutable-bytes!", 0, 8) == nrt.NRT_INVALID


def test_copy_on_same_core_and_refused_across_cores(rt, capsys):
    a, b, c = alloc(8, 0, name="a"), alloc(8, 0, name="b"), alloc(8, 1, name="c")
    nrt.nrt_tensor_write(a, b"abcdefgh", 0, 8)
    assert nrt.nrt_tensor_copy(a, 2, b, 0, 4) == 0
    assert read(b) == b"cdef" + bytes(4)
    assert nrt.nrt_tensor_copy(a, 0, c, 0, 8) == nrt.NRT_INVALID
    assert read(c) == bytes(8)
    assert "same NeuronCore" in capsys.readouterr().err
    h = alloc(8, -1, HOST, "h")
    assert nrt.nrt_tensor_copy(a, 0, h, 0, 8) == 0
    assert read(h) == b"abcdefgh"


def test_memset(rt):
    t = alloc(8)
    assert nrt.nrt_tensor_memset(t, 2, 0x7F, 3) == 0
    assert read(t) == b"\x00\x00\x7f\x7f\x7f\x00\x00\x00"
    assert nrt.nrt_tensor_memset(t, 6, 1, 3) == nrt.NRT_INVALID


def test_slice_shares_storage_and_outlives_its_source(rt):
    used0 = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    src = alloc(32, name="src")
    status, view = nrt.nrt_tensor_allocate_slice(src, 8, 8, "view")
    assert status == 0 and nrt.nrt_tensor_get_size(view) == 8
    nrt.nrt_tensor_write(view, b"slice!!!", 0, 8)
    assert read(src, 8, 8) == b"slice!!!"
    nrt.nrt_tensor_free(src)
    assert read(view) == b"slice!!!"                       # storage still alive
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used0 + 32
    nrt.nrt_tensor_free(view)
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used0
    assert nrt.nrt_tensor_allocate_slice(alloc(4), 2, 4, "x")[0] == nrt.NRT_INVALID


def test_attach_buffer_uses_caller_memory(rt):
    status, t = nrt.nrt_tensor_allocate_empty("empty")
    assert status == 0 and nrt.nrt_tensor_get_size(t) == 0
    mine = np.zeros(4, np.float32)
    assert nrt.nrt_tensor_attach_buffer(t, mine, 16) == 0
    nrt.nrt_tensor_write(t, np.array([1, 2, 3, 4], np.float32), 0, 16)
    assert mine.tolist() == [1, 2, 3, 4]                  # the caller's array changed
    assert nrt.nrt_tensor_get_va(t) == mine.ctypes.data
    assert nrt.nrt_tensor_attach_buffer(t, mine, 17) == nrt.NRT_INVALID


def test_attach_buffer_frees_owned_device_bytes(rt):
    used0 = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    t = alloc(1024)
    assert nrt.nrt_tensor_attach_buffer(t, bytearray(8), 8) == 0
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used0


def test_device_tensor_is_accounted_not_allocated(rt):
    used0, limit = (lambda s: (s.bytes_used, s.bytes_limit))(nrt.nrt_get_vnc_memory_stats(0)[1])
    t = alloc(3 << 30, name="huge")                       # 3 GiB accounted, no host memory touched
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used0 + (3 << 30)
    assert not t.storage.materialised
    assert limit == 32 << 30
    nrt.nrt_tensor_free(t)
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used0


def test_device_out_of_memory_is_resource_with_usage_table(rt, capsys):
    tensors = [alloc(3 << 30, name=f"kv{i}") for i in range(10)]
    status, t = nrt.nrt_tensor_allocate(DEVICE, 1, 3 << 30, "one_too_many")
    assert status == nrt.NRT_RESOURCE and t is None
    err = capsys.readouterr().err
    assert "TDRV:log_dev_mem" in err and "usage: tensors" in err and "on ND 0:NC 1" in err
    assert "Displaying Current Memory Utilization:" in err and "ND 0 HBM 0" in err
    assert 'status=4 message="Allocation Failure"' in err
    for x in tensors:
        nrt.nrt_tensor_free(x)
    assert nrt.nrt_tensor_allocate(DEVICE, 1, 3 << 30, "fits_now")[0] == 0


def test_tensor_of_4gb_or_more_is_refused(rt):
    assert nrt.nrt_tensor_allocate(DEVICE, 0, 4 << 30, "big")[0] == nrt.NRT_RESOURCE


def test_bad_core_and_placement(rt, capsys):
    assert nrt.nrt_tensor_allocate(DEVICE, 5, 8, "x")[0] == nrt.NRT_INVALID
    assert "valid indices are 0-1" in capsys.readouterr().err
    assert nrt.nrt_tensor_allocate(DEVICE, -1, 8, "x")[0] == nrt.NRT_INVALID
    assert nrt.nrt_tensor_allocate(7, 0, 8, "x")[0] == nrt.NRT_INVALID
    assert nrt.nrt_tensor_allocate(HOST, -1, 5 << 20, "x")[0] == nrt.NRT_RESOURCE
    assert nrt.nrt_tensor_allocate(VIRTUAL, -1, 5 << 20, "x")[0] == 0


def test_freed_tensor_is_an_invalid_handle(rt):
    t = alloc(8)
    nrt.nrt_tensor_free(t)
    nrt.nrt_tensor_free(t)  # harmless
    assert nrt.nrt_tensor_write(t, bytes(8), 0, 8) == nrt.NRT_INVALID_HANDLE


def test_batch_read_write(rt):
    t = alloc(8)
    assert nrt.nrt_tensor_write_batch([(t, [(0, 2, b"ab"), (6, 2, b"yz")])]) == 0
    a, b = bytearray(2), bytearray(2)
    assert nrt.nrt_tensor_read_batch([{"tensor": t, "ops": [{"offset": 0, "size": 2, "buffer": a},
                                                             {"offset": 6, "size": 2, "buffer": b}]}]) == 0
    assert (a, b) == (bytearray(b"ab"), bytearray(b"yz"))


def test_device_allocation_info(rt):
    t = alloc(8, 1)
    status, info = nrt.nrt_tensor_get_device_allocation_info(t)
    assert status == 0 and info.size == 8 and info.hbm_index == 0
    assert nrt.nrt_tensor_get_device_allocation_info(alloc(8, -1, HOST))[0] == nrt.NRT_INVALID


def test_tensor_sets(rt):
    status, s = nrt.nrt_allocate_tensor_set()
    a, b = alloc(4, name="a"), alloc(4, name="b")
    assert nrt.nrt_add_tensor_to_tensor_set(s, "input", a) == 0
    assert nrt.nrt_get_tensor_from_tensor_set(s, "input") == (0, a)
    assert nrt.nrt_add_tensor_to_tensor_set(s, "input", b) == 0     # replaces
    assert nrt.nrt_get_tensor_from_tensor_set(s, "input") == (0, b)
    assert nrt.nrt_get_tensor_from_tensor_set(s, "missing") == (nrt.NRT_FAILURE, None)
    nrt.nrt_destroy_tensor_set(s)
    assert nrt.nrt_tensor_write(b, b"1234", 0, 4) == 0              # tensors survive the set
    assert nrt.nrt_add_tensor_to_tensor_set(s, "x", a) == nrt.NRT_INVALID
    status, s2 = nrt.nrt_allocate_tensor_set()
    assert nrt.nrt_add_tensor_to_tensor_set(s2, "", a) == nrt.NRT_INVALID


def test_output_completion_counter(rt):
    t = alloc(4)
    assert nrt.nrt_tensor_check_output_completion(t, 0, 0) == 0
    assert nrt.nrt_tensor_check_output_completion(t, 1000, 1) == nrt.NRT_TIMEOUT
    assert nrt.nrt_tensor_reset_output_completion(t) == 0     # counts reached by executions: test_async_time.py
    assert nrt.nrt_tensor_check_output_completion(None, 0, 0) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_reset_output_completion(None) == nrt.NRT_INVALID
