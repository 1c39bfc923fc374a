"""nrt_load placement and checks, nrt_execute argument checks, timeouts, NaN status, threads, repeat."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder

RNG = np.random.default_rng(7)
W = RNG.standard_normal((16, 8)).astype(np.float32)


def mlp_neff(target="v2", lnc=1, duration=None, cores=1, name="mlp", **kw) -> bytes:
    b = NeffBuilder(name, target=target)
    x = b.input("x", "float32", (4, 16))
    h = b.relu(x @ b.weight("w", W))
    for _ in range(cores - 1):
        b.next_core()
        h = h * 2.0
    b.output("y", h)
    if duration is not None:
        b.declare(duration_s=duration)
    return b.build(lnc_size=lnc, **kw)


def reference(x, cores=1):
    return np.maximum(x @ W, 0) * (2.0 ** (cores - 1))


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.32xlarge")
    assert nrt.nrt_init() == 0
    yield
    nrt.nrt_close()


def io_sets(model, vnc=0, in_size=256, out_size=128):
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    _, x = nrt.nrt_tensor_allocate(0, vnc, in_size, "x")
    _, y = nrt.nrt_tensor_allocate(0, vnc, out_size, "y")
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return ins, outs, x, y


def load(data, vnc=-1):
    status, model = nrt.nrt_load(data, vnc, -1)
    assert status == 0, status
    return model


def test_execute_writes_outputs_in_place(trn1):
    model = load(mlp_neff())
    ins, outs, x, y = io_sets(model)
    xv = RNG.standard_normal((4, 16)).astype(np.float32)
    assert nrt.nrt_tensor_write(x, xv, 0, xv.nbytes) == 0
    assert nrt.nrt_execute(model, ins, outs) == 0
    buf = np.empty((4, 8), np.float32)
    assert nrt.nrt_tensor_read(y, buf, 0, buf.nbytes) == 0
    np.testing.assert_array_equal(buf, reference(xv))


def test_missing_input_wrong_size_wrong_core_are_invalid(trn1, capsys):
    model = load(mlp_neff(), vnc=0)
    ins, outs, x, y = io_sets(model)
    _, empty = nrt.nrt_allocate_tensor_set()
    assert nrt.nrt_execute(model, empty, outs) == nrt.NRT_INVALID
    assert "input tensor 'x' is missing" in capsys.readouterr().err
    _, small = nrt.nrt_tensor_allocate(0, 0, 255, "x")
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", small)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID
    assert "input tensor 'x' has 255 bytes, the model expects 256 bytes" in capsys.readouterr().err
    _, far = nrt.nrt_tensor_allocate(0, 1, 256, "x")
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", far)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID
    assert "is on NC 1 but model" in capsys.readouterr().err
    _, none_out = nrt.nrt_allocate_tensor_set()
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    assert nrt.nrt_execute(model, ins, none_out) == nrt.NRT_INVALID
    assert "output tensor 'y' is missing" in capsys.readouterr().err
    extra = nrt.nrt_tensor_allocate(0, 0, 4, "extra")[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "unused", extra)    # extra names are ignored
    assert nrt.nrt_execute(model, ins, outs) == 0


def test_host_tensors_are_accepted_as_inputs(trn1):
    model = load(mlp_neff(), vnc=3)
    ins, outs, _, _ = io_sets(model, vnc=3)
    _, hx = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_VIRTUAL, -1, 256, "x")
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", hx)
    assert nrt.nrt_execute(model, ins, outs) == 0


def test_least_used_placement_follows_the_seed_example(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf1.xlarge")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0-1")
    assert nrt.nrt_init() == 0
    one, two = mlp_neff(target="v1"), mlp_neff(target="v1", cores=2, name="pipe2")
    placed = []
    for data in (one, two, one):
        model = load(data)
        placed.append((nrt.nrt_get_model_info(model)[1].vnc, nrt.nrt_get_model_nc_count(model)[1]))
    assert placed == [(0, 1), (0, 2), (1, 1)]            # m0→nc0, m1→nc0-nc1, m2→nc1


def test_default_placement_spreads_over_cores(trn1):
    cores = [nrt.nrt_get_model_info(load(mlp_neff()))[1].vnc for _ in range(5)]
    assert cores == [0, 1, 2, 3, 4]


def test_not_enough_cores(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.32xlarge")
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    assert nrt.nrt_init() == 0
    four = mlp_neff(cores=4, name="pipe4")
    assert nrt.nrt_load(four, -1, -1) == (nrt.NRT_LOAD_NOT_ENOUGH_NC, None)
    err = capsys.readouterr().err
    assert "TDRV:db_vtpb_get_mla_and_tpb" in err and "Could not find VNC id" in err
    assert "Failed to load NN: pipe4, err: 9" in err
    assert nrt.nrt_load(mlp_neff(cores=2), 2, -1)[0] == nrt.NRT_LOAD_NOT_ENOUGH_NC
    assert nrt.nrt_load(mlp_neff(), 3, -1)[0] == nrt.NRT_LOAD_NOT_ENOUGH_NC
    assert nrt.nrt_load(mlp_neff(), -2, -1)[0] == nrt.NRT_INVALID
    m = load(mlp_neff(cores=2), 1)
    assert nrt.nrt_get_model_info(m)[1].vnc == 1


def test_pipelined_model_passes_data_between_cores(trn1):
    model = load(mlp_neff(cores=4, name="pipe4"))
    assert nrt.nrt_get_model_nc_count(model) == (0, 4)
    ins, outs, x, y = io_sets(model)
    xv = RNG.standard_normal((4, 16)).astype(np.float32)
    nrt.nrt_tensor_write(x, xv, 0, xv.nbytes)
    assert nrt.nrt_execute(model, ins, outs) == 0
    buf = np.empty((4, 8), np.float32)
    nrt.nrt_tensor_read(y, buf, 0, buf.nbytes)
    np.testing.assert_array_equal(buf, reference(xv, cores=4))


def test_unload_frees_every_byte_and_twice_is_invalid_handle(trn1):
    before = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    model = load(mlp_neff(), 0)
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used > before
    assert nrt.nrt_unload(model) == 0
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == before
    assert nrt.nrt_unload(model) == nrt.NRT_INVALID_HANDLE
    ins, outs, _, _ = io_sets(model)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID_HANDLE


def test_timeout_under_virtual_clock_costs_no_wall_time(trn1, capsys):
    model = load(mlp_neff(duration=40.0, name="slow"))
    ins, outs, _, _ = io_sets(model)
    t0 = time.perf_counter()
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_TIMEOUT
    wall = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert "(FATAL-RT-UNDEFINED-STATE) execution timeout (30000 ms) on Neuron Device 0 NC 0, model slow" in err
    assert "NMGR:dlr_infer" in err and "Inference completed with err: 5" in err
    assert wall < 1.0
    from neuron_sim.runtime import interface
    assert interface.clock().now() >= 30.0           # simulated time moved by the timeout


def test_raising_the_timeout_lets_a_slow_model_finish(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "60")
    assert nrt.nrt_init() == 0
    model = load(mlp_neff(duration=40.0, name="slow"))
    ins, outs, _, _ = io_sets(model)
    assert nrt.nrt_execute(model, ins, outs) == 0
    from neuron_sim.runtime import interface
    from neuron_sim.runtime.reset import RESET_TIME_S
    # nrt_init's core reset, the load, then the execution
    assert interface.clock().now() == pytest.approx(RESET_TIME_S + model.load_time_s + 40.0)


def test_real_clock_waits_for_the_simulated_duration(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_SIM_CLOCK", "real")
    assert nrt.nrt_init() == 0
    model = load(mlp_neff(duration=0.05, name="fifty_ms"))
    ins, outs, _, _ = io_sets(model)
    t0 = time.perf_counter()
    assert nrt.nrt_execute(model, ins, outs) == 0
    assert time.perf_counter() - t0 >= 0.05
    t0 = time.perf_counter()
    for _ in range(4):                 # the bound and then hot path waits too: back to back, 4 x 50 ms
        assert nrt.nrt_execute(model, ins, outs) == 0
    assert time.perf_counter() - t0 >= 0.2


def test_nan_output_is_num_err_and_outputs_are_written(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")   # numerical errors are WARN lines since RT 2.x
    assert nrt.nrt_init() == 0
    b = NeffBuilder("nan", target="v2")
    x = b.input("x", "float32", (2,))
    b.output("y", x / x)
    model = load(b.build())
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    tx, ty = nrt.nrt_tensor_allocate(0, 0, 8, "x")[1], nrt.nrt_tensor_allocate(0, 0, 8, "y")[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", tx)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", ty)
    nrt.nrt_tensor_write(tx, np.array([0.0, 2.0], np.float32), 0, 8)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR
    out = np.empty(2, np.float32)
    nrt.nrt_tensor_read(ty, out, 0, 8)
    assert np.isnan(out[0]) and out[1] == 1.0
    assert "INFER_ERROR_SUBTYPE_NUMERICAL" in capsys.readouterr().err


def test_execute_repeat_feeds_outputs_back(trn1):
    b = NeffBuilder("double", target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", x * 2.0)
    model = load(b.build())
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    tx, ty = nrt.nrt_tensor_allocate(0, 0, 16, "x")[1], nrt.nrt_tensor_allocate(0, 0, 16, "y")[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", tx)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", ty)
    nrt.nrt_tensor_write(tx, np.ones(4, np.float32), 0, 16)
    assert nrt.nrt_execute_repeat(model, ins, outs, 5) == 0
    out = np.empty(4, np.float32)
    nrt.nrt_tensor_read(ty, out, 0, 16)
    assert out.tolist() == [32.0] * 4
    assert nrt.nrt_execute_repeat(model, ins, outs, 0) == nrt.NRT_INVALID


def test_many_threads_serialise_per_core(trn1):
    model = load(mlp_neff(duration=0.001), 0)
    sets = [io_sets(model) for _ in range(8)]
    xs = [RNG.standard_normal((4, 16)).astype(np.float32) for _ in sets]
    for (ins, outs, x, y), xv in zip(sets, xs):
        nrt.nrt_tensor_write(x, xv, 0, xv.nbytes)
    statuses = []

    def worker(i):
        ins, outs, _, _ = sets[i]
        statuses.extend(nrt.nrt_execute(model, ins, outs) for _ in range(50))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [0] * 400
    for (ins, outs, x, y), xv in zip(sets, xs):
        buf = np.empty((4, 8), np.float32)
        nrt.nrt_tensor_read(y, buf, 0, buf.nbytes)
        np.testing.assert_array_equal(buf, reference(xv))
    from neuron_sim.runtime import interface
    # 400 executions of 1 ms on one core after the load: simulated time is their sum, one at a time
    from neuron_sim.runtime.reset import RESET_TIME_S
    assert interface.clock().now() == pytest.approx(RESET_TIME_S + model.load_time_s + 0.4)


def test_model_tensor_info_and_free(trn1):
    model = load(mlp_neff())
    status, info = nrt.nrt_get_model_tensor_info(model)
    assert status == 0 and info.tensor_count == 2
    x, y = info.tensor_array
    assert (x.name, x.usage, x.size, x.dtype, x.shape, x.ndim) == ("x", 0, 256, 0xA, (4, 16), 2)
    assert (y.name, y.usage, y.size, y.shape) == ("y", 1, 128, (4, 8))
    assert nrt.nrt_free_model_tensor_info(info) == 0
    assert nrt.nrt_free_model_tensor_info(info) == nrt.NRT_INVALID
    assert nrt.nrt_get_model_instance_count(model) == (0, 1)


def test_nrt_load_rejects_a_path(trn1, capsys):
    assert nrt.nrt_load("model.neff", -1, -1)[0] == nrt.NRT_INVALID
    assert "takes the NEFF's bytes" in capsys.readouterr().err


def test_corrupt_neff_bytes_are_invalid(trn1, capsys):
    data = bytearray(mlp_neff())
    assert nrt.nrt_load(bytes(data[:1500]), -1, -1)[0] == nrt.NRT_INVALID
    assert nrt.nrt_load(b"not a neff", -1, -1)[0] == nrt.NRT_INVALID
    assert "Failed to load NN" in capsys.readouterr().err


def test_pythonic_api(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    xv = RNG.standard_normal((4, 16)).astype(np.float32)
    with neuron_sim.Runtime() as rt:
        model = rt.load(mlp_neff())
        assert list(model.inputs) == ["x"] and model.outputs["y"].shape == (4, 8)
        np.testing.assert_array_equal(model(x=xv)["y"], reference(xv))
        np.testing.assert_array_equal(model(x=xv.astype(np.float64))["y"], reference(xv))
        with pytest.raises(neuron_sim.NrtError) as err:
            model(x=np.zeros((3, 16), np.float32))
        assert err.value.status == neuron_sim.NrtStatus.INVALID and "shape [3, 16]" in str(err.value)
        with pytest.raises(neuron_sim.NrtError, match="has no input"):
            model(x=xv, z=xv)
        tx, ty = rt.tensor(xv), rt.tensor(shape=(4, 8), dtype="float32")
        assert model.run({"x": tx}, {"y": ty}) == 0
        np.testing.assert_array_equal(ty.numpy(), reference(xv))
        with pytest.raises(neuron_sim.NrtError) as err:
            rt.load("/nonexistent/model.neff")
        assert err.value.status == neuron_sim.NrtStatus.INVALID
        model.unload()
    with pytest.raises(neuron_sim.NrtError) as err:
        rt.load(mlp_neff())
    assert err.value.status == neuron_sim.NrtStatus.CLOSED


def test_pythonic_numerical_error_keeps_outputs(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    b = NeffBuilder("nan", target="v2")
    x = b.input("x", "float32", (2,))
    b.output("y", x / x)
    with neuron_sim.Runtime() as rt:
        with pytest.raises(neuron_sim.NumericalError) as err:
            rt.load(b.build())(x=np.array([0.0, 3.0], np.float32))
        assert err.value.status == 1003 and err.value.outputs["y"][1] == 1.0


def test_concurrent_loads_spread_like_sequential_ones(trn1):
    data = mlp_neff()
    placed = []
    lock = threading.Lock()

    def loader():
        model = load(data)
        with lock:
            placed.append(nrt.nrt_get_model_info(model)[1].vnc)

    threads = [threading.Thread(target=loader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(placed) == list(range(8))
