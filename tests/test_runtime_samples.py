"""The committed sample NEFFs through the runtime: numpy references, load checks, memory, real NEFFs."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.compute.ops import gelu_erf_reference
from neuron_sim.neff.reader import read_neff_file
from tests.conftest import NEFFS, REAL_NEFFS

GiB = 1 << 30


def weights(stem):
    return read_neff_file(NEFFS / f"{stem}.neff").weights


def mlp_reference(stem, x, act="relu"):
    w = weights(stem)
    h = x @ w["w1"] + w["b1"]
    h = np.maximum(h, 0) if act == "relu" else gelu_erf_reference(h)
    return h @ w["w2"] + w["b2"]


CASES = {
    "mlp_trn1": ("trn1.2xlarge", {}, lambda x: mlp_reference("mlp_trn1", x)),
    "mlp_inf2": ("inf2.xlarge", {}, lambda x: mlp_reference("mlp_inf2", x, "gelu")),
    "mlp_trn2": ("trn2.3xlarge", {}, lambda x: mlp_reference("mlp_trn2", x)),
    "mlp_inf1": ("inf1.xlarge", {}, lambda x: mlp_reference("mlp_inf1", x)),
    "large_weights": ("trn1.2xlarge", {}, lambda x: mlp_reference("large_weights", x)),
    "large_outputs": ("trn1.2xlarge", {}, lambda x: mlp_reference("large_outputs", x)),
    "slow_40s": ("trn1.2xlarge", {"NEURON_RT_EXEC_TIMEOUT": "60"}, lambda x: mlp_reference("slow_40s", x)),
}


@pytest.mark.parametrize("stem", sorted(CASES))
def test_sample_outputs_equal_numpy(monkeypatch, sample, stem):
    instance, env, ref = CASES[stem]
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", instance)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with neuron_sim.Runtime() as rt:
        model = rt.load(sample(stem))
        (name, info), = model.inputs.items()
        x = np.random.default_rng(3).standard_normal(info.shape).astype(info.dtype)
        (out_name, got), = model(**{name: x}).items()
        np.testing.assert_allclose(got, ref(x), rtol=1e-5, atol=1e-5)


def test_matmul_bf16_sample(monkeypatch, sample):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    w = weights("matmul_bf16")["w"]
    x = np.random.default_rng(4).standard_normal((64, 128)).astype(ml_dtypes.bfloat16)
    expected = (x.astype(np.float32) @ w.astype(np.float32)).astype(ml_dtypes.bfloat16)
    with neuron_sim.Runtime() as rt:
        got = rt.load(sample("matmul_bf16"))(x=x)["y"]
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))


def test_pipeline_sample_takes_four_contiguous_cores(monkeypatch, sample):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.32xlarge")
    w = weights("pipeline_4core")
    x = np.random.default_rng(5).standard_normal((4, 32)).astype(np.float32)
    h = x
    for i in range(4):
        h = np.maximum(h @ w[f"w{i}"], 0)
    with neuron_sim.Runtime() as rt:
        rt.load(sample("mlp_trn1"))                      # nc0 is now the most used
        model = rt.load(sample("pipeline_4core"))
        assert model.cores == (1, 2, 3, 4)
        np.testing.assert_array_equal(model(x=x)["y"], h)


def test_nan_sample(monkeypatch, sample):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt, pytest.raises(neuron_sim.NumericalError) as err:
        rt.load(sample("nan_output"))(x=np.ones((1, 16), np.float32))
    assert np.isnan(err.value.outputs["y"]).all()


def test_slow_sample_times_out_in_under_a_second_of_wall_time(monkeypatch, sample):
    import time
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt:
        model = rt.load(sample("slow_40s"))
        t0 = time.perf_counter()
        with pytest.raises(neuron_sim.NrtError) as err:
            model(x=np.zeros((1, 16), np.float32))
        assert time.perf_counter() - t0 < 1.0
        assert err.value.status == neuron_sim.NrtStatus.TIMEOUT


# ---- load checks ---------------------------------------------------------------------------------------
def load_status(monkeypatch, path, instance="trn1.2xlarge", **env):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", instance)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert nrt.nrt_init() == 0
    try:
        return nrt.nrt_load(path.read_bytes(), -1, -1)[0]
    finally:
        nrt.nrt_close()


def test_unsupported_version_and_features(monkeypatch, sample, capsys):
    assert load_status(monkeypatch, sample("unsupported_version")) == nrt.NRT_UNSUPPORTED_NEFF_VERSION
    err = capsys.readouterr().err
    assert "NEFF version: 3.0 is not supported, accepted version range: 0.x-2.x" in err
    assert "Failed to load NN" in err and "err: 10" in err
    assert load_status(monkeypatch, sample("unknown_features")) == nrt.NRT_UNSUPPORTED_NEFF_VERSION
    assert "compiled by a newer version of Neuron compiler" in capsys.readouterr().err


def test_truncated_is_invalid(monkeypatch, sample):
    assert load_status(monkeypatch, sample("truncated")) == nrt.NRT_INVALID


def test_hash_is_checked_only_when_asked(monkeypatch, sample, capsys):
    assert load_status(monkeypatch, sample("bad_hash")) == 0
    assert load_status(monkeypatch, sample("bad_hash"), NEURON_RT_VALIDATE_HASH="TRUE") == nrt.NRT_INVALID
    assert "MD5 mismatch" in capsys.readouterr().err
    assert load_status(monkeypatch, sample("mlp_trn1"), NEURON_RT_VALIDATE_HASH="true") == 0


def test_neff_for_another_generation(monkeypatch, sample, capsys):
    assert load_status(monkeypatch, sample("mlp_trn1"), "trn2.3xlarge") == nrt.NRT_UNSUPPORTED_NEFF_VERSION
    err = capsys.readouterr().err
    assert "Loading a NEFF compiled for a different arch is not allowed, NEFF arch: v2, instance arch: v3" in err
    assert "NEURON_RT_ALLOW_LEGACY_NEFF=1" in err
    assert load_status(monkeypatch, sample("mlp_trn1"), "trn2.3xlarge", NEURON_RT_ALLOW_LEGACY_NEFF="1") == 0
    # a NEFF for a newer generation is refused even with the override
    assert load_status(monkeypatch, sample("mlp_trn2"), "trn1.2xlarge",
                       NEURON_RT_ALLOW_LEGACY_NEFF="1") == nrt.NRT_UNSUPPORTED_NEFF_VERSION


def test_logical_core_size_mismatch(monkeypatch, sample, capsys):
    assert load_status(monkeypatch, sample("mlp_trn2"), "trn2.3xlarge", NEURON_LOGICAL_NC_CONFIG="1") == nrt.NRT_INVALID
    assert "LNC mismatch" in capsys.readouterr().err
    assert load_status(monkeypatch, sample("mlp_trn2"), "trn2.3xlarge", NEURON_LOGICAL_NC_CONFIG="2") == 0


# ---- device memory -------------------------------------------------------------------------------------
def load_everywhere(path, copies):
    """Load ``copies`` of the NEFF on every visible core; returns the first failing status or 0."""
    data = path.read_bytes()
    _, count = nrt.nrt_get_visible_nc_count()
    for _ in range(copies):
        for vnc in range(count):
            status, _ = nrt.nrt_load(data, vnc, -1)
            if status:
                return status
    return 0


def test_large_weights_on_every_core_fit_only_with_shared_weights(monkeypatch, sample, capsys):
    """trn1.32xlarge: 2 cores share a 32 GiB HBM. 22 copies of 768 MiB per core need 33 GiB per device
    without sharing (out of memory) and one 768 MiB copy with NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS."""
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.32xlarge")
    assert nrt.nrt_init() == 0
    assert load_everywhere(sample("large_weights"), 22) == nrt.NRT_RESOURCE
    err = capsys.readouterr().err
    assert "usage: constants" in err and "Displaying Current Memory Utilization:" in err
    assert "Failed to load NN: large_weights, err: 4" in err
    nrt.nrt_close()

    monkeypatch.setenv("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "TRUE")
    assert nrt.nrt_init() == 0
    assert load_everywhere(sample("large_weights"), 22) == 0
    used0 = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    used1 = nrt.nrt_get_vnc_memory_stats(1)[1].bytes_used
    # one copy of the constants per HBM bank (held by NC 0), not 44
    assert 768 << 20 < used0 + used1 < 2 * (768 << 20)


def test_shared_weights_charge_bandwidth_contention(monkeypatch, sample):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "TRUE")
    with neuron_sim.Runtime() as rt:
        first = rt.load(sample("large_weights"), core=0)
        alone = first.duration_s
        second = rt.load(sample("large_weights"), core=1)
        assert first.duration_s > alone and second.duration_s == first.duration_s
        second.unload()
        assert first.duration_s == alone


def test_memory_stats_report_used_and_limit(monkeypatch, sample):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn2.3xlarge")
    assert nrt.nrt_init() == 0
    status, stats = nrt.nrt_get_vnc_memory_stats(0)
    assert status == 0 and stats.bytes_limit == 24 * GiB      # one 24 GiB HBM bank per logical core at LNC 2
    assert stats.bytes_used == 2 * 96 * (1 << 20)             # runtime microcode of two physical cores
    assert nrt.nrt_get_vnc_memory_stats(4)[0] == nrt.NRT_INVALID


# ---- compiler-made NEFFs -------------------------------------------------------------------------------
real = pytest.mark.skipif(not (REAL_NEFFS / "matmul_small.neff").exists(), reason="shared/realneffs absent")


@real
def test_real_neff_loads_with_full_metadata_and_runs_a_reference(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn2.48xlarge")
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")
    data = (REAL_NEFFS / "matmul_small.neff").read_bytes()
    x = np.random.default_rng(0).standard_normal((128, 256)).astype(np.float16)
    y = np.random.default_rng(1).standard_normal((256, 128)).astype(np.float16)
    with neuron_sim.Runtime() as rt:
        model = rt.load(data)
        assert {k: (v.dtype, v.shape, v.size) for k, v in model.inputs.items()} == {
            "x": (np.float16, (128, 256), 65536), "y": (np.float16, (256, 128), 65536)}
        assert {k: (v.shape, v.size) for k, v in model.outputs.items()} == {"output0": ((128, 128), 32768)}
        out = model(x=x, y=y)["output0"]
        assert (out.view(np.uint8) == 0xAB).all()              # sentinel without a reference
        model(x=x, y=y)
        assert capsys.readouterr().err.count("cannot be run by neuron_sim") == 1   # warned once
        neuron_sim.register_reference("file.neff", lambda i: {"output0": i["x"] @ i["y"]})
        try:
            np.testing.assert_array_equal(model(x=x, y=y)["output0"], x @ y)
        finally:
            neuron_sim.unregister_reference("file.neff")


@real
def test_real_neff_hash_is_validated(monkeypatch, capsys, tmp_path):
    """The compiler stores the payload MD5 with each 32-bit word byte-swapped; neuron_sim checks it."""
    assert load_status(monkeypatch, REAL_NEFFS / "matmul_small.neff", "trn2.48xlarge",
                       NEURON_RT_VALIDATE_HASH="TRUE") == 0
    data = bytearray((REAL_NEFFS / "matmul_small.neff").read_bytes())
    data[-100] ^= 0xFF                                  # inside the gzip payload's padding/trailer region
    corrupt = tmp_path / "corrupt.neff"
    corrupt.write_bytes(bytes(data))
    assert load_status(monkeypatch, corrupt, "trn2.48xlarge", NEURON_RT_VALIDATE_HASH="TRUE") == nrt.NRT_INVALID
    assert "MD5 mismatch" in capsys.readouterr().err


@real
def test_real_large_neff_loads_but_its_4gb_input_cannot_be_allocated(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn2.48xlarge")
    assert nrt.nrt_init() == 0
    status, model = nrt.nrt_load((REAL_NEFFS / "matmul_large.neff").read_bytes(), -1, -1)
    assert status == 0
    _, info = nrt.nrt_get_model_tensor_info(model)
    sizes = {t.name: t.size for t in info.tensor_array}
    assert sizes == {"x": 128 * 32768 * 2, "y": 32768 * 65536 * 2, "output0": 128 * 65536 * 2}
    # y is exactly 4 GiB: nrt_tensor_allocate does not support tensors of 4 GB or more (known issue)
    assert nrt.nrt_tensor_allocate(0, 0, sizes["y"], "y")[0] == nrt.NRT_RESOURCE
    nrt.nrt_close()


@real
def test_a_failing_reference_is_a_failure_status_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn2.48xlarge")
    x = np.zeros((128, 256), np.float16)
    y = np.zeros((256, 128), np.float16)
    with neuron_sim.Runtime() as rt:
        model = rt.load(REAL_NEFFS / "matmul_small.neff")
        neuron_sim.register_reference(model.handle.neff.uuid, lambda i: {"output0": np.zeros(7)})
        try:
            with pytest.raises(neuron_sim.NrtError) as err:
                model(x=x, y=y)
        finally:
            neuron_sim.unregister_reference(model.handle.neff.uuid)
    assert err.value.status == neuron_sim.NrtStatus.FAILURE
    assert "numpy reference registered for NEFF file.neff failed" in capsys.readouterr().err
