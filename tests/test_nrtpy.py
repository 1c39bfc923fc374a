"""The nrtpy face: every usage nrt-api.md §1 shows (§1.8 and the per-method tables), against the nki samples."""
from __future__ import annotations

import gc
import inspect
import json
import os
import shutil

import ml_dtypes
import numpy as np
import pytest

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.nrtpy import (
    BenchmarkResult,
    NrtError,
    NrtpyError,
    NrtpyModel,
    NrtpyTensor,
    NrtTensor,
    TensorMetadata,
    configure,
    get_nrtpy_singleton,
    reset,
)
from neuron_sim.runtime import lifecycle
from neuron_sim.status import NrtStatus
from tests.conftest import REPO

F16 = np.float16


@pytest.fixture(autouse=True)
def fresh_nrtpy():
    """Each test starts with no nrtpy runtime and leaves none behind (and NEURON_RT_VISIBLE_CORES restored)."""
    reset()
    yield
    reset()


def add_inputs(a=None, b=None, core_id=0):
    a = np.arange(12, dtype=F16).reshape(4, 3) if a is None else a
    b = np.full((4, 3), 0.25, F16) if b is None else b
    return {"a_input": NrtpyTensor.from_numpy(a, name="a_input", core_id=core_id),
            "b_input": NrtpyTensor.from_numpy(b, name="b_input", core_id=core_id)}


def used(core: int) -> int:
    status, stats = nrt.nrt_get_vnc_memory_stats(core)
    assert status == 0
    return stats.bytes_used


# ---- shape of the module ------------------------------------------------------------------------------
def test_public_names_signatures_and_defaults():
    assert issubclass(NrtpyError, RuntimeError) and issubclass(NrtError, RuntimeError)
    assert not issubclass(NrtpyError, NrtError) and not issubclass(NrtError, NrtpyError)
    sig = lambda f: str(inspect.signature(f))  # noqa: E731
    assert sig(configure) == "(visible_cores: 'Iterable[int] | None' = None) -> 'None'"
    assert list(inspect.signature(NrtpyTensor.from_numpy).parameters) == ["array", "name", "core_id"]
    assert inspect.signature(NrtpyTensor.from_numpy).parameters["core_id"].default == 0
    load = inspect.signature(NrtpyModel.load_from_neff).parameters
    assert [(n, p.default) for n, p in load.items()][1:] == [
        ("name", None), ("core_id", 0), ("cc_enabled", False), ("rank_id", 0), ("world_size", 1)]
    call = inspect.signature(NrtpyModel.__call__).parameters
    assert [(n, p.default) for n, p in call.items()][2:] == [("outputs", None), ("save_trace", False),
                                                            ("ntff_name", None)]
    bench = inspect.signature(NrtpyModel.benchmark).parameters
    assert [(n, p.default) for n, p in bench.items()][2:] == [
        ("outputs", None), ("warmup_iter", 5), ("benchmark_iter", 5), ("mode", "device")]
    assert list(inspect.signature(NrtpyTensor).parameters) == ["tensor_ref", "shape", "dtype", "name"]


def test_lazy_singleton_starts_on_first_tensor_or_model(sample):
    configure([0, 1])
    assert lifecycle.peek() is None                      # configure initialises nothing
    NrtpyTensor.from_numpy(np.zeros(4, np.float32))
    assert lifecycle.peek() is not None
    reset()
    assert lifecycle.peek() is None
    NrtpyModel.load_from_neff(sample("nki_add"))
    assert lifecycle.peek() is not None
    assert get_nrtpy_singleton() is get_nrtpy_singleton()


# ---- configure / reset ---------------------------------------------------------------------------------
def test_configure_only_sets_the_visible_cores_variable(monkeypatch):
    configure([0, 1, 2])
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "0,1,2"
    configure(range(4))
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "0,1,2,3"
    configure(None)                                      # leaves it unchanged
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "0,1,2,3"
    configure((np.int64(5),))
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "5"
    reset()                                              # clears the configuration
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "7")
    configure([1])
    reset()
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "7"  # back to what it was before configure()


@pytest.mark.parametrize("bad", [3, np.int32(1), [0, "1"], [0.0], [True], "01", 2.5, object()])
def test_configure_type_errors(bad):
    with pytest.raises(TypeError, match="visible_cores"):
        configure(bad)
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ


@pytest.mark.parametrize("bad, match", [([-1], r"non-negative core ids, got \[-1\]"),
                                        ([0, -3], r"got \[-3\]"), ([], "empty")])
def test_configure_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        configure(bad)


def test_configure_while_active_raises_and_works_again_after_reset(capsys):
    configure([0, 1])
    NrtpyTensor.from_numpy(np.zeros(2, np.float32))
    with pytest.raises(NrtpyError) as exc:
        configure([2, 3])
    assert str(exc.value) == ("nrtpy.configure() called while the runtime is active; call nrtpy.reset() "
                              "first, then configure()")
    assert "NRT:nrtpy.configure" in capsys.readouterr().err
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "0,1"
    reset()
    configure([2, 3])
    NrtpyTensor.from_numpy(np.zeros(2, np.float32))
    assert lifecycle.peek().global_core_ids() == (2, 3)


def test_configure_reset_cycles_move_the_reservation(sample):
    for cores in ([0, 1], [2, 3], [4], range(6, 10)):
        configure(cores)
        model = NrtpyModel.load_from_neff(sample("nki_add"), core_id=len(list(cores)) - 1)
        out = model(inputs=add_inputs(core_id=model.core_id))
        assert out["output_0"].numpy()[3, 2] == 11.25
        assert lifecycle.peek().global_core_ids() == tuple(cores)
        assert nrt.nrt_get_visible_nc_count() == (0, len(list(cores)))
        reset()
    reset()                                              # a no-op when nothing is running
    assert lifecycle.peek() is None


def test_without_configure_every_core_is_visible_and_core_0_is_used(sample):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    x = add_inputs()
    assert nrt.nrt_get_visible_nc_count() == nrt.nrt_get_total_nc_count() == (0, 32)
    assert model.core_id == 0 and x["a_input"].core_id == 0
    assert nrt.nrt_get_model_info(model._handle)[1].vnc == 0


def test_non_contiguous_visible_cores_fail_in_the_runtime(capsys):
    configure([0, 2])
    with pytest.raises(NrtError) as exc:
        NrtpyTensor.from_numpy(np.zeros(2, np.float32))
    assert str(exc.value) == ("NRT Error NRT_INVALID(2): Failed to initialize the Neuron runtime: "      # context: cause
                              "NEURON_RT_VISIBLE_CORES=0,2 is invalid: cores must be a single index, an inclusive "
                              "range a-b, or a contiguous increasing list such as 3-5,6 (indices 0-511)")
    assert "NEURON_RT_VISIBLE_CORES" in capsys.readouterr().err


def test_everything_is_invalid_after_reset(sample, capsys):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    x = add_inputs()
    reset()
    for use in (lambda: x["a_input"].numpy(), lambda: x["a_input"].write_from_numpy(np.zeros((4, 3), F16)),
                lambda: model(inputs=x), lambda: model.benchmark(inputs=x),
                lambda: get_nrtpy_singleton().free_tensor(x["a_input"])):
        with pytest.raises(NrtpyError, match="was invalidated by nrtpy.reset"):
            use()
    assert "invalidated by nrtpy.reset" in capsys.readouterr().err
    del model, x
    gc.collect()                                         # finalisers of the old runtime free nothing
    assert "ERROR" not in capsys.readouterr().err



def test_objects_belong_to_the_runtime_they_were_made_in_whoever_closes_it(capsys):
    """The runtime's own lifecycle decides: closed by another face, nrtpy starts a new one and the old objects
    are invalid (they never reach the new runtime); a runtime another face started is used as it is."""
    old = NrtpyTensor.from_numpy(np.ones(4, np.float32))
    assert nrt.nrt_close() is None
    new = NrtpyTensor.from_numpy(np.zeros(4, np.float32))          # nrtpy starts a new runtime on first use
    with pytest.raises(NrtpyError, match="was invalidated by nrtpy.reset"):
        old.numpy()
    assert new.numpy().tolist() == [0, 0, 0, 0]
    with pytest.raises(NrtpyError, match="called while the runtime is active"):
        configure([0])
    reset()
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    assert NrtpyTensor.from_numpy(np.full(2, 7, np.int32)).numpy().tolist() == [7, 7]   # the flat face's runtime


# ---- tensors ------------------------------------------------------------------------------------------
def test_tensor_round_trip_attributes_and_contiguity():
    src = np.arange(24, dtype=np.float32).reshape(4, 6).T    # not contiguous: made contiguous first
    t = NrtpyTensor.from_numpy(src, name="weights")
    assert (t.shape, t.dtype, t.name, t.core_id) == ((6, 4), np.dtype(np.float32), "weights", 0)
    np.testing.assert_array_equal(t.numpy(), src)
    assert isinstance(t.tensor_ref, NrtTensor) and t.tensor_ref.size == 96
    unnamed = NrtpyTensor.from_numpy(np.zeros(3, np.int8))
    assert unnamed.name.startswith("nrtpy_tensor_")
    one_d = NrtpyTensor(t.tensor_ref, 24, np.float32)         # an int shape means 1-D
    assert one_d.shape == (24,)
    np.testing.assert_array_equal(one_d.numpy(), src.ravel())
    with pytest.raises(ValueError, match="holds 96 bytes"):
        NrtpyTensor(t.tensor_ref, (5,), np.float32)
    with pytest.raises(TypeError, match="NrtTensor"):
        NrtpyTensor(src, (6, 4), np.float32)
    with pytest.raises(TypeError, match="dtype object"):
        NrtpyTensor.from_numpy(np.array([None, 1]))


def test_write_from_numpy_checks_bytes_not_shape_or_dtype():
    t = NrtpyTensor.from_numpy(np.zeros((4, 3), F16), name="a")
    t.write_from_numpy(np.arange(12, dtype=F16)[::-1].reshape(3, 4).T)    # other shape, non-contiguous
    np.testing.assert_array_equal(t.numpy().ravel(), np.arange(12, dtype=F16)[::-1].reshape(3, 4).T.ravel())
    t.write_from_numpy(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], np.float32))   # 24 bytes of float32
    assert t.numpy().ravel().view(np.float32).tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError) as exc:
        t.write_from_numpy(np.zeros((4, 4), F16))
    assert str(exc.value) == ("write_from_numpy: the array has 32 bytes (float16 [4, 4]) but tensor 'a' holds "
                              "24 bytes (float16 [4, 3]); shape and dtype may differ, the byte size may not")
    assert t.numpy().ravel().view(np.float32).tolist() == [1, 2, 3, 4, 5, 6]    # nothing written


def test_free_tensor_frees_device_memory_and_later_use_raises():
    NrtpyTensor.from_numpy(np.zeros(1, np.float32))               # start the runtime
    base = used(0)
    t = NrtpyTensor.from_numpy(np.ones((256, 1024), np.float32), name="big")
    assert used(0) == base + (1 << 20)
    get_nrtpy_singleton().free_tensor(t)
    assert used(0) == base
    for use in (t.numpy, lambda: t.write_from_numpy(np.ones((256, 1024), np.float32)),
                lambda: get_nrtpy_singleton().free_tensor(t)):
        with pytest.raises(NrtpyError) as exc:
            use()
        assert str(exc.value) == ("NrtpyTensor 'big' was freed with free_tensor(); allocate a new one with "
                                  "NrtpyTensor.from_numpy()")
    with pytest.raises(TypeError):
        get_nrtpy_singleton().free_tensor(np.zeros(3))


def test_garbage_collection_frees_tensors_and_unloads_models(sample):
    NrtpyTensor.from_numpy(np.zeros(1, np.float32))
    base = used(0)
    t = NrtpyTensor.from_numpy(np.ones((128, 512), np.float32))
    model = NrtpyModel.load_from_neff(sample("nki_exp"))
    out = model(inputs={"src_tensor": t})
    assert used(0) > base + 2 * 262144
    handle = model._handle
    del t, model, out
    gc.collect()
    assert used(0) == base
    assert handle.unloaded


def test_fp8_tensors_and_outputs_keep_their_dtype(tmp_path):
    b = NeffBuilder("fp8_double", target="v2")
    x = b.input("x", "float8_e4m3", (8,))
    b.output("y", x + x)
    path = b.save(tmp_path / "fp8_double.neff")
    model = NrtpyModel.load_from_neff(path)
    fp8 = np.dtype(ml_dtypes.float8_e4m3fn)
    assert model.input_tensors_info["x"].dtype == fp8 and model.output_tensors_info["y"].size == 8
    values = np.array([0.5, 1, 1.5, 2, -3, 4, 0, 8], fp8)
    t = NrtpyTensor.from_numpy(values)
    assert t.dtype == fp8
    out = model(inputs={"x": t})["y"]
    assert out.dtype == fp8                                   # not the int8 libnrt reports on devices
    np.testing.assert_array_equal(out.numpy().astype(np.float32), values.astype(np.float32) * 2)


def test_auto_outputs_report_the_true_dtype_so_the_void_view_idiom_still_works(sample):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    out = model(inputs=add_inputs())["output_0"]
    assert out.dtype == np.dtype(F16) and out.shape == (4, 3) and out.name == "output_0"
    viewed = out.numpy().view(np.float16)                     # what users write for a |V2 output
    np.testing.assert_array_equal(viewed, np.arange(12, dtype=F16).reshape(4, 3) + F16(0.25))


# ---- models -------------------------------------------------------------------------------------------
def test_tensor_info_as_the_tutorial_prints_it(sample):
    model = NrtpyModel.load_from_neff(sample("nki_exp"))
    assert model.name == "nki_exp"
    info = model.input_tensors_info["src_tensor"]
    assert isinstance(info, TensorMetadata)
    assert f"shape={info.shape}, size={info.size}" == "shape=[128, 512], size=262144"
    assert list(model.output_tensors_info) == ["output_0"]
    add = NrtpyModel.load_from_neff(str(sample("nki_add")), name="adder")
    assert add.name == "adder" and list(add.input_tensors_info) == ["a_input", "b_input"]
    assert add.output_tensors_info["output_0"].shape == [4, 3] and add.output_tensors_info["output_0"].size == 24


def test_usage_as_the_docs_show_it(sample, tmp_path):
    """nrt-api.md §1.8, line by line."""
    configure(visible_cores=[0, 1])
    model = NrtpyModel.load_from_neff(sample("nki_exp"))
    x = NrtpyTensor.from_numpy(np.ones((128, 512), np.float32), name="src_tensor")
    out = model(inputs={"src_tensor": x})
    res = out["output_0"].numpy()
    np.testing.assert_allclose(res, np.exp(np.ones((128, 512), np.float32)), rtol=1e-6)
    s = model.benchmark(inputs={"src_tensor": x}, warmup_iter=10, benchmark_iter=100, mode="host")
    assert isinstance(s, BenchmarkResult) and s.iterations == 100 and s.warmup_iterations == 10
    trace = tmp_path / "trace.ntff"
    model(inputs={"src_tensor": x}, save_trace=True, ntff_name=str(trace))
    assert json.loads(trace.read_text())["model"] == "nki_exp"
    del model, x
    reset()
    configure(visible_cores=[2, 3])
    NrtpyModel.load_from_neff(sample("nki_exp"))
    assert lifecycle.peek().global_core_ids() == (2, 3)


def test_caller_provided_outputs_are_written_in_place(sample):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    out = {"output_0": NrtpyTensor.from_numpy(np.zeros((4, 3), F16), name="mine")}
    assert model(inputs=add_inputs(), outputs=out) is None
    assert out["output_0"].numpy()[1].tolist() == [3.25, 4.25, 5.25]
    assert out["output_0"].name == "mine"


def test_multiple_cores_with_explicit_core_id(sample, capsys):
    configure([0, 1])
    m0 = NrtpyModel.load_from_neff(sample("nki_add"), core_id=0)
    m1 = NrtpyModel.load_from_neff(sample("nki_add"), core_id=1)
    assert nrt.nrt_get_model_info(m1._handle)[1].vnc == 1
    before = used(1)
    x1 = add_inputs(b=np.full((4, 3), 2, F16), core_id=1)
    assert used(1) == before + 48
    out = m1(inputs=x1)
    assert out["output_0"].core_id == 1 and out["output_0"].numpy()[0].tolist() == [2, 3, 4]
    assert m0(inputs=add_inputs())["output_0"].core_id == 0
    with pytest.raises(NrtError) as exc:                     # inputs in another core's HBM
        m0(inputs=x1)
    assert str(exc.value) == ("NRT Error NRT_INVALID(2): Failed to execute model nki_add: input tensor 'a_input' "
                              "is on NC 1 but model 1001 is on NC 0 (incorrect HBM)")
    assert "incorrect HBM" in capsys.readouterr().err
    with pytest.raises(NrtError) as exc:                     # a core outside the visible ones
        NrtpyModel.load_from_neff(sample("nki_add"), core_id=2)
    assert str(exc.value).startswith(f"NRT Error NRT_LOAD_NOT_ENOUGH_NC(9): Failed to load model {sample('nki_add')}: ")


def test_call_argument_errors(sample):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    with pytest.raises(TypeError, match="dict of name -> NrtpyTensor"):
        model(inputs=[1, 2])
    x = add_inputs()
    with pytest.raises(TypeError, match="'b_input' must be an NrtpyTensor, got ndarray"):
        model(inputs={"a_input": x["a_input"], "b_input": np.zeros((4, 3), F16)})
    with pytest.raises(TypeError, match="neff_path"):
        NrtpyModel.load_from_neff(42)


# ---- errors with their exact messages -----------------------------------------------------------------
def test_name_mismatch(sample, capfd):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    x = add_inputs()
    for inputs in ({"a_input": x["a_input"], "x": x["b_input"]}, {"a_input": x["a_input"]},
                   {**x, "extra": x["a_input"]}):
        with pytest.raises(NrtError) as exc:
            model(inputs=inputs)
        assert exc.value.status == NrtStatus.INVALID
        assert str(exc.value) == (f"NRT Error NRT_INVALID(2): Failed to execute model nki_add: input names "
                                  f"{sorted(inputs)} do not match the model's inputs ['a_input', 'b_input']")
    with pytest.raises(NrtError, match=r"output names \['y'\] do not match the model's outputs \['output_0'\]"):
        model(inputs=x, outputs={"y": x["a_input"]})
    assert "ERROR   NRT:nrt_execute" in capfd.readouterr().err


@pytest.mark.parametrize("stem, status, log", [
    ("missing", "NRT_FAILURE(1)", "cannot read the NEFF file (No such file or directory)"),
    ("truncated", "NRT_INVALID(2)", "Invalid NEFF data size"),
    ("mlp_inf1", "NRT_UNSUPPORTED_NEFF_VERSION(10)", "Loading a NEFF compiled for a different arch"),
    ("unsupported_version", "NRT_UNSUPPORTED_NEFF_VERSION(10)", "NEFF version: 3.0"),
])
def test_load_failures(stem, status, log, capfd):
    path = REPO / "neffs" / f"{stem}.neff"
    with pytest.raises(NrtError) as exc:
        NrtpyModel.load_from_neff(path)
    message = f"NRT Error {status}: Failed to load model {path}"
    assert str(exc.value).startswith(message + ": ")                 # context, then the runtime's cause
    assert log in str(exc.value)
    assert int(exc.value.status) == int(status.split("(")[1].rstrip(")"))
    assert log in capfd.readouterr().err                      # the runtime's log lines come first


def test_device_out_of_memory_at_load(monkeypatch, sample, capfd):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    models = []
    with pytest.raises(NrtError) as exc:
        for _ in range(64):
            models.append(NrtpyModel.load_from_neff(sample("large_weights")))
    assert str(exc.value).startswith(f"NRT Error NRT_RESOURCE(4): Failed to load model {sample('large_weights')}: "
                                     "Failed to allocate 768.003MB (alignment: none, usage: constants) on ND 0:NC 0")
    assert 30 < len(models) < 64
    err = capfd.readouterr().err
    assert "Failed to load NN: large_weights, err: 4" in err and "usage: constants" in err
    del models
    gc.collect()
    NrtpyModel.load_from_neff(sample("large_weights"))        # the GC-unloaded models gave the memory back


def test_execution_out_of_bounds(sample, capfd):
    model = NrtpyModel.load_from_neff(sample("gather_oob"))
    x = NrtpyTensor.from_numpy(np.ones((128, 512), np.float32), name="src_tensor")
    with pytest.raises(NrtError) as exc:
        model(inputs={"src_tensor": x})
    assert str(exc.value) == ("NRT Error NRT_EXEC_OOB(1006): Failed to execute model gather_oob: model gather_oob on "
                              "NC 0: out-of-bound access in an indirect memory copy: gather index 128 is outside "
                              "[0, 128) on axis 0 of a [128, 512] tensor")
    assert exc.value.status == NrtStatus.EXEC_OOB
    err = capfd.readouterr().err
    assert ("TDRV:generate_custom_notification_msg        nd0:nc0:h_model.id1001: Received notification "
            "generated at runtime: failed to run scatter/gather (indirect memory copy), due to out-of-bound "
            "access.") in err
    assert "NMGR:dlr_infer                               Inference completed with err: 1006. " \
           "mode->h_nn=1001, start_nc=0, nc_count=1" in err
    good = NrtpyModel.load_from_neff(sample("nki_exp"))       # the runtime carries on
    assert good(inputs={"src_tensor": x})["output_0"].numpy()[0, 0] == np.exp(np.float32(1))


def test_execution_timeout_comes_from_the_runtime(monkeypatch, sample):
    model = NrtpyModel.load_from_neff(sample("slow_40s"))
    x = NrtpyTensor.from_numpy(np.ones((1, 16), np.float32))
    with pytest.raises(NrtError, match=r"^NRT Error NRT_TIMEOUT\(5\): Failed to execute model slow_40s: \S"):
        model(inputs={"x": x})


def test_collectives_load(sample, capfd):
    assert NrtpyModel.load_from_neff(sample("nki_add"), cc_enabled=True, rank_id=0, world_size=1)
    with pytest.raises(NrtError) as exc:
        NrtpyModel.load_from_neff(sample("nki_add"), cc_enabled=True, rank_id=1, world_size=4)
    assert str(exc.value) == (f"NRT Error NRT_FAILURE(1): Failed to load model {sample('nki_add')}: Collectives "
                              "across 4 ranks are not emulated by neuron_sim; only ctx_device_id=0, ctx_device_count=1 "
                              "is accepted")
    assert "Collectives across 4 ranks are not emulated" in capfd.readouterr().err


# ---- benchmark ----------------------------------------------------------------------------------------
def test_benchmark_device_mode_reports_simulated_device_time(sample):
    model = NrtpyModel.load_from_neff(sample("nki_exp"))
    x = {"src_tensor": NrtpyTensor.from_numpy(np.ones((128, 512), np.float32))}
    r = model.benchmark(inputs=x)
    assert (r.iterations, r.warmup_iterations, len(r.durations_ms)) == (5, 5, 5)
    expected_ms = model._handle.duration_s * 1e3
    assert r.durations_ms == pytest.approx([expected_ms] * 5)
    assert r.mean_ms == pytest.approx(expected_ms) and r.min_ms == pytest.approx(r.max_ms)
    assert r.std_dev_ms == pytest.approx(0, abs=1e-12)
    done = lifecycle.peek().cores[0].stats["completed"]
    r = model.benchmark(inputs=x, outputs=model(inputs=x), warmup_iter=0, benchmark_iter=3)
    assert r.iterations == 3 and r.warmup_iterations == 0
    assert lifecycle.peek().cores[0].stats["completed"] == done + 1 + 3


def test_benchmark_host_mode_is_wall_time(sample):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    r = model.benchmark(inputs=add_inputs(), warmup_iter=2, benchmark_iter=7, mode="host")
    assert r.iterations == 7 and r.warmup_iterations == 2 and len(r.durations_ms) == 7
    assert all(d > 0 for d in r.durations_ms)
    assert r.min_ms <= r.mean_ms <= r.max_ms and r.min_ms == min(r.durations_ms)
    assert r.std_dev_ms == pytest.approx(float(np.std(r.durations_ms)))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mode": "cpu"}, ValueError, "benchmark mode must be 'device' or 'host', got 'cpu'"),
    ({"mode": "DEVICE"}, ValueError, "got 'DEVICE'"),
    ({"benchmark_iter": 0}, ValueError, "benchmark_iter must be >= 1, got 0"),
    ({"benchmark_iter": -5, "mode": "host"}, ValueError, "benchmark_iter must be >= 1"),
    ({"warmup_iter": -1}, ValueError, "warmup_iter must be >= 0, got -1"),
    ({"benchmark_iter": 2.0}, TypeError, "benchmark_iter must be an int"),
])
def test_benchmark_argument_errors(sample, kwargs, error, match):
    model = NrtpyModel.load_from_neff(sample("nki_add"))
    x = add_inputs()
    done = lifecycle.peek().cores[0].stats["completed"]
    with pytest.raises(error, match=match):
        model.benchmark(inputs=x, **kwargs)
    assert lifecycle.peek().cores[0].stats["completed"] == done     # nothing ran


def test_benchmark_of_a_faulting_model_raises_the_fault(sample):
    model = NrtpyModel.load_from_neff(sample("gather_oob"))
    x = NrtpyTensor.from_numpy(np.ones((128, 512), np.float32))
    with pytest.raises(NrtError, match=r"NRT_EXEC_OOB\(1006\)"):
        model.benchmark(inputs={"src_tensor": x})


# ---- save_trace ---------------------------------------------------------------------------------------
def test_save_trace_writes_only_on_success(sample, tmp_path):
    for stem in ("nki_add", "gather_oob"):
        shutil.copy(sample(stem), tmp_path / f"{stem}.neff")
    model = NrtpyModel.load_from_neff(tmp_path / "nki_add.neff")
    assert model(inputs=add_inputs(), save_trace=True) is not None
    doc = json.loads((tmp_path / "nki_add.ntff").read_text())        # next to the NEFF by default
    assert doc["format"] == "neuron_sim.nrtpy.trace" and doc["version"] == 1
    assert doc["device_time_ms"] == pytest.approx(model._handle.duration_s * 1e3)
    assert doc["inputs"]["a_input"] == {"shape": [4, 3], "dtype": "float16", "size": 24}
    assert doc["outputs"] == {"output_0": {"shape": [4, 3], "dtype": "float16", "size": 24}}
    named = tmp_path / "named.ntff"
    model(inputs=add_inputs(), save_trace=True, ntff_name=named)
    assert json.loads(named.read_text())["model"] == "nki_add"
    model(inputs=add_inputs(), ntff_name=tmp_path / "unused.ntff")   # save_trace=False: no file
    assert not (tmp_path / "unused.ntff").exists()

    buggy = NrtpyModel.load_from_neff(tmp_path / "gather_oob.neff")
    x = NrtpyTensor.from_numpy(np.ones((128, 512), np.float32))
    for ntff in (None, tmp_path / "failed.ntff"):
        with pytest.raises(NrtError):
            buggy(inputs={"src_tensor": x}, save_trace=True, ntff_name=ntff)
    assert not (tmp_path / "gather_oob.ntff").exists() and not (tmp_path / "failed.ntff").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ntff") == ["named.ntff", "nki_add.ntff"]


# ---- the example --------------------------------------------------------------------------------------
def test_quickstart_example_runs(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    env["NEURON_SIM_STATE_DIR"] = str(tmp_path / "state")
    r = subprocess.run([sys.executable, "examples/nrtpy_quickstart.py"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "a_input: shape=[4, 3], size=24" in r.stdout
    assert "output_0 = [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]" in r.stdout
    assert "caught: NRT Error NRT_EXEC_OOB(1006): Failed to execute model gather_oob: model gather_oob on NC 0: " \
           "out-of-bound access" in r.stdout
    assert "reloaded nki_add on core 1 of visible cores 2-3" in r.stdout
    assert "out-of-bound access" in r.stderr and "Traceback" not in r.stderr


def test_numerical_error_status_raises(sample, capfd, monkeypatch):
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")
    model = NrtpyModel.load_from_neff(sample("nan_output"))
    x = NrtpyTensor.from_numpy(np.ones((1, 16), np.float32))
    with pytest.raises(NrtError) as exc:
        model(inputs={"x": x})
    assert str(exc.value) == "NRT Error NRT_EXEC_COMPLETED_WITH_NUM_ERR(1003): Failed to execute model nan_output"
    assert "INFER_ERROR_SUBTYPE_NUMERICAL" in capfd.readouterr().err


def test_cores_held_by_another_nrtpy_process(tmp_path, capfd):
    """Two real processes: the other one's nrtpy holds cores 0-1, so ours cannot start on 1-2 but can on 2-3."""
    import subprocess
    import sys
    holder = ("import sys, numpy as np\n"
              "from neuron_sim import nrtpy\n"
              "nrtpy.configure([0, 1])\n"
              "t = nrtpy.NrtpyTensor.from_numpy(np.zeros(4, np.float32))\n"
              "print('ready', flush=True)\n"
              "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, env=dict(os.environ), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        configure([1, 2])
        with pytest.raises(NrtError) as exc:
            NrtpyTensor.from_numpy(np.zeros(4, np.float32))
        assert str(exc.value).startswith("NRT Error NRT_RESOURCE(4): Failed to initialize the Neuron runtime: "
                                         "Logical Neuron Core(s) not available")
        assert "not available" in capfd.readouterr().err
        reset()
        configure([2, 3])
        assert NrtpyTensor.from_numpy(np.arange(4, dtype=np.float32)).numpy().tolist() == [0, 1, 2, 3]
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    reset()
    configure([1, 2])                                    # free again once the other process has exited
    assert NrtpyTensor.from_numpy(np.zeros(1, np.float32)).core_id == 0
