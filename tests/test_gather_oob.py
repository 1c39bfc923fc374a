"""The gather op (an indirect load) and the NRT_EXEC_OOB fault of an out-of-bounds index, through the flat face."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuron_sim import nrt
from neuron_sim.compute.cost import graph_work
from neuron_sim.compute.ops import OutOfBoundsAccess, apply_op
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.int8, ml_dtypes.float8_e4m3fn])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_matches_numpy_take(dtype, axis):
    data = np.arange(60).reshape(3, 4, 5).astype(dtype)
    idx = np.array([[2, 0], [1, 1]], np.int32)
    np.testing.assert_array_equal(apply_op("gather", [data, idx], {"axis": axis}), np.take(data, idx, axis=axis))


@given(size=st.integers(1, 16), idx=st.lists(st.integers(-40, 40), min_size=1, max_size=8))
def test_gather_faults_exactly_when_an_index_leaves_the_tensor(size, idx):
    data = np.arange(size * 2, dtype=np.float32).reshape(size, 2)
    indices = np.array(idx, np.int64)
    if all(0 <= i < size for i in idx):
        np.testing.assert_array_equal(apply_op("gather", [data, indices]), data[indices])
    else:
        bad = next(i for i in idx if not 0 <= i < size)
        with pytest.raises(OutOfBoundsAccess, match=rf"gather index {bad} is outside \[0, {size}\) on axis 0"):
            apply_op("gather", [data, indices])


@pytest.mark.parametrize("indices, attrs, match", [
    (np.array([1.0], np.float32), {}, "indices must be integers, got float32"),
    (np.array([1], np.int32), {"axis": 2}, "attr axis=2 is out of range for rank 2"),
    (np.array([1], np.int32), {"mode": "clip"}, "unknown attrs"),
])
def test_gather_shape_errors_name_the_accepted_form(indices, attrs, match):
    with pytest.raises(ValueError, match=match) as exc:
        apply_op("gather", [np.zeros((2, 3), np.float32), indices], attrs)
    assert "accepted form: gather(data, indices; axis=0)" in str(exc.value)


def gather_neff(tmp_path) -> bytes:
    b = NeffBuilder("gather_rows", target="v2")
    src = b.input("src", "float32", (8, 4))
    idx = b.input("idx", "int32", (3,))
    b.output("rows", b.op("gather", src, idx, axis=0))
    assert graph_work(b.graph(), b.weights).total_flops == 0        # a DMA, no compute
    return b.build()


def test_out_of_bounds_index_is_nrt_exec_oob_and_the_runtime_carries_on(tmp_path, capfd):
    assert nrt.nrt_init() == 0
    status, model = nrt.nrt_load(gather_neff(tmp_path), 0, -1)
    assert status == 0
    tensors = {}
    for name, size in (("src", 128), ("idx", 12), ("rows", 48)):
        tensors[name] = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, size, name)[1]
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "src", tensors["src"])
    nrt.nrt_add_tensor_to_tensor_set(ins, "idx", tensors["idx"])
    nrt.nrt_add_tensor_to_tensor_set(outs, "rows", tensors["rows"])
    src = np.arange(32, dtype=np.float32).reshape(8, 4)
    assert nrt.nrt_tensor_write(tensors["src"], src, 0, src.nbytes) == 0

    def run(indices):
        idx = np.array(indices, np.int32)
        assert nrt.nrt_tensor_write(tensors["idx"], idx, 0, idx.nbytes) == 0
        return nrt.nrt_execute(model, ins, outs)

    assert run([7, 0, 3]) == nrt.NRT_SUCCESS
    rows = np.empty((3, 4), np.float32)
    nrt.nrt_tensor_read(tensors["rows"], rows, 0, rows.nbytes)
    np.testing.assert_array_equal(rows, src[[7, 0, 3]])
    assert "ERROR" not in capfd.readouterr().err

    assert run([7, 8, 3]) == nrt.NRT_EXEC_OOB == 1006
    err = capfd.readouterr().err
    assert "TDRV:generate_custom_notification_msg" in err and "due to out-of-bound access." in err
    assert "Inference completed with err: 1006." in err
    assert run([0, -1, 0]) == nrt.NRT_EXEC_OOB                      # negative: unsigned on the device
    assert run([1, 2, 3]) == nrt.NRT_SUCCESS                        # the core is not left locked
    stats = lifecycle.peek().cores[0].stats
    assert stats["completed_with_err"] == 2 and stats["completed"] == 2
    nrt.nrt_close()
