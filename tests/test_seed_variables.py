"""Variables the seeds give an effect, one test per documented example (issue 16 §2)."""
from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.dtypes import numpy_dtype
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import interface
from neuron_sim.runtime.models import HASH_LOAD_FACTOR, LOAD_BYTES_PER_S, LOAD_FIXED_S, LEGACY_STALL_S
from neuron_sim.runtime.reset import RESET_TIME_S
from tests.conftest import NEFFS

N = 4096


def cast_neff(dtype: str = "bfloat16", target: str = "v2") -> bytes:
    """y = cast(x * 1, dtype): fp32 in, one fp32 -> reduced-precision rounding inside the execution."""
    b = NeffBuilder(f"cast_{dtype}", target=target)
    x = b.input("x", "float32", (N,))
    b.output("y", b.cast(x * 1.0, dtype))
    return b.build()


def cast_runs(env: dict[str, str], x: np.ndarray, runs: int = 1, dtype: str = "bfloat16") -> list[np.ndarray]:
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", **env}) as rt:
        model = rt.load(cast_neff(dtype))
        return [model(x=x)["y"] for _ in range(runs)]


# ---- NEURON_RT_STOCHASTIC_ROUNDING_EN / _SEED (seeds 000, 003) ----------------------------------------------------
X = np.full(N, 1.0 + 2 ** -9, np.float32)       # a quarter of the way from bf16 1.0 to the next bf16, 1.0078125


def bits(a: np.ndarray) -> bytes:
    return a.view(np.uint8).tobytes()


def test_stochastic_rounding_off_rounds_to_nearest_even():
    (y,) = cast_runs({}, X)
    assert bits(y) == bits(X.astype(ml_dtypes.bfloat16))
    assert set(y.astype(np.float32).tolist()) == {1.0}


def test_stochastic_rounding_same_seed_same_bits():
    env = {"NEURON_RT_STOCHASTIC_ROUNDING_EN": "1", "NEURON_RT_STOCHASTIC_ROUNDING_SEED": "7"}
    first, second = cast_runs(env, X, 3), cast_runs(env, X, 3)
    assert [bits(a) for a in first] == [bits(a) for a in second]
    assert bits(first[0]) != bits(first[1])                   # the generator moves on between executions


def test_stochastic_rounding_different_seed_different_bits():
    on = {"NEURON_RT_STOCHASTIC_ROUNDING_EN": "1"}
    (a,), (b,) = cast_runs({**on, "NEURON_RT_STOCHASTIC_ROUNDING_SEED": "1"}, X), cast_runs(
        {**on, "NEURON_RT_STOCHASTIC_ROUNDING_SEED": "2"}, X)
    assert bits(a) != bits(b)
    (default,), (zero,) = cast_runs(on, X), cast_runs({**on, "NEURON_RT_STOCHASTIC_ROUNDING_SEED": "0"}, X)
    assert bits(default) == bits(zero)                        # "the seed is set to 0 by default"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"])
def test_stochastic_rounding_mean_tends_to_the_fp32_value(dtype):
    x = np.random.default_rng(3).uniform(-4, 4, N).astype(np.float32)
    runs = cast_runs({"NEURON_RT_STOCHASTIC_ROUNDING_EN": "1"}, x, 64, dtype)
    values = np.stack([r.astype(np.float64) for r in runs])
    rne = x.astype(numpy_dtype(dtype)).astype(np.float64)
    assert np.abs(values.mean(axis=0) - x).mean() < np.abs(rne - x).mean() / 2   # unbiased: the mean recovers x
    assert all(len(np.unique(values[:, i])) <= 2 for i in range(N))               # always one of x's two neighbours


def test_stochastic_rounding_seed_log_line_at_init(capsys):
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_LOG_LEVEL": "INFO",
                                 "NEURON_RT_STOCHASTIC_ROUNDING_SEED": "5"}):
        pass
    err = capsys.readouterr().err
    assert "TDRV:tdrv_init_one_mla_phase2" in err
    assert "Configuring stochastic rounding seed for device: 0, nc 0. seed: 5" in err
    assert "Configuring stochastic rounding seed for device: 0, nc 1. seed: 5" in err


# ---- NEURON_RT_NUMERICAL_ERRORS_VERBOSITY / NEURON_FAIL_ON_NAN -----------------------------------------------------
def nan_lines(env: dict[str, str], capsys) -> tuple[int, list[str]]:
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_LOG_LEVEL": "WARN",
                                 **env}) as rt:
        model = rt.load(NEFFS / "nan_output.neff")
        capsys.readouterr()
        with pytest.raises(neuron_sim.NumericalError) as err:
            model(x=np.ones((1, 16), np.float32))
    return err.value.status, [ln for ln in capsys.readouterr().err.splitlines() if " NRT:nrt_init" not in ln]


@pytest.mark.parametrize("verbosity, detail", [
    ("none", None),
    ("critical", "output 'y' holds NaN"),
    ("debug", "output 'y' holds 16 NaN and 0 Inf of 16 elements"),
    ("verbose", "output 'y' holds 16 NaN and 0 Inf of 16 elements; first NaN at flat indices 0, 1, 2, 3, 4, 5, 6, 7"),
])
def test_numerical_errors_verbosity(capsys, verbosity, detail):
    status, lines = nan_lines({"NEURON_RT_NUMERICAL_ERRORS_VERBOSITY": verbosity}, capsys)
    assert status == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR                  # 1003 whatever the verbosity
    assert all(" WARN " in ln for ln in lines)
    assert "INFER_ERROR_SUBTYPE_NUMERICAL" in lines[0] and "Inference completed with err: 1003" in lines[-1]
    if detail is None:
        assert len(lines) == 2
    else:
        assert len(lines) == 3 and lines[1].endswith(f"Numerical error in model nan_output on NC 0: {detail}")


def test_fail_on_nan_logs_errors_at_critical(capsys):
    status, lines = nan_lines({"NEURON_FAIL_ON_NAN": "1"}, capsys)
    assert status == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR
    assert len(lines) == 3 and all(" ERROR " in ln for ln in lines)
    assert lines[1].endswith("output 'y' holds NaN")


# ---- NEURON_RT_RESET_CORES -----------------------------------------------------------------------------------------
def test_reset_cores_at_init_takes_time_and_logs(capsys):
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_LOG_LEVEL": "INFO"}) as rt:
        assert rt.clock.now() == pytest.approx(RESET_TIME_S)
        assert [interface.clock().now()] == [RESET_TIME_S]
    assert "TDRV:tdrv_reset_mla" in capsys.readouterr().err
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_LOG_LEVEL": "INFO",
                                 "NEURON_RT_RESET_CORES": "0"}) as rt:
        assert rt.clock.now() == 0.0
    assert "tdrv_reset_mla" not in capsys.readouterr().err


def test_reset_cores_default_follows_the_release_notes():
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_SIM_RUNTIME_VERSION": "2.10.14"}
                            ) as rt:
        assert rt.clock.now() == 0.0 and rt.config.reset_cores is False


# ---- load cost, and NEURON_RT_VALIDATE_HASH's ~50% (seed 000) ------------------------------------------------------
def test_load_advances_the_clock_and_hash_validation_adds_half():
    path = NEFFS / "mlp_trn1.neff"
    size = path.stat().st_size
    base = {"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_RESET_CORES": "0"}
    with neuron_sim.Runtime(env=base) as rt:
        neff = rt.load(path).handle.neff
        plain = rt.clock.now()
    size = max(size, neff.code_bytes + neff.constants_bytes)      # the file, or the code and weights it declares
    with neuron_sim.Runtime(env={**base, "NEURON_RT_VALIDATE_HASH": "true"}) as rt:
        rt.load(path)
        hashed = rt.clock.now()
    assert plain == pytest.approx(LOAD_FIXED_S + size / LOAD_BYTES_PER_S)
    assert hashed == pytest.approx(plain * HASH_LOAD_FACTOR) and HASH_LOAD_FACTOR == 1.5


def test_load_cost_grows_with_the_weights():
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.32xlarge", "NEURON_RT_RESET_CORES": "0"}) as rt:
        model = rt.load(NEFFS / "large_weights.neff")
        assert model.handle.load_time_s == pytest.approx(LOAD_FIXED_S + (768 << 20) / LOAD_BYTES_PER_S, rel=1e-3)
        assert rt.clock.now() == pytest.approx(model.handle.load_time_s)


# ---- execution timeout: default per version, seed 000's log line ---------------------------------------------------
SEED_LINE = re.compile(r"^\d{4}-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d\.\d{4} +\d+:\d+ +ERROR  TDRV:"
                       r"exec_consume_infer_status_notifications \(FATAL-RT-UNDEFINED-STATE\) inference timeout "
                       r"\(600000 ms\) on Neuron Device 0 NC 0, waiting for execution completion notification$")


def slow_neff(seconds: float) -> bytes:
    b = NeffBuilder("slow", target="v2")
    b.output("y", b.input("x", "float32", (4,)) * 2.0)
    b.declare(duration_s=seconds)
    return b.build()


def timeout_lines(env: dict[str, str], seconds: float, capsys) -> tuple[int, list[str], float]:
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_RESET_CORES": "0", **env}
                            ) as rt:
        model = rt.load(slow_neff(seconds))
        start = rt.clock.now()
        with pytest.raises(neuron_sim.NrtError) as err:
            model(x=np.ones(4, np.float32))
        waited = rt.clock.now() - start
    return err.value.status, capsys.readouterr().err.splitlines(), waited


def test_seed_000_inference_timeout_600000_ms_log_line(capsys):
    """2023-Jan-09: a runtime of that time (2.12) with NEURON_RT_EXEC_TIMEOUT=600, 4 fraction digits."""
    status, lines, waited = timeout_lines({"NEURON_SIM_RUNTIME_VERSION": "2.12.23.0", "NEURON_RT_EXEC_TIMEOUT": "600"},
                                          700.0, capsys)
    assert status == nrt.NRT_TIMEOUT and waited == pytest.approx(600.0)
    assert any(SEED_LINE.match(ln) for ln in lines), lines
    nmgr = [ln for ln in lines if "NMGR:dlr_infer" in ln]
    assert nmgr and re.match(r"^\S+ \S+\.\d{4} ", nmgr[0]) and nmgr[0].endswith("Inference completed with err: 5")


@pytest.mark.parametrize("version, default_s", [("2.8.0", 2.0), ("2.9.0", 30.0), ("2.25.57.0", 30.0)])
def test_execution_timeout_default_per_runtime_version(capsys, version, default_s):
    status, lines, waited = timeout_lines({"NEURON_SIM_RUNTIME_VERSION": version}, 31.0, capsys)
    if default_s == 2.0:
        assert status == nrt.NRT_TIMEOUT and waited == pytest.approx(2.0)
        assert any("inference timeout (2000 ms) on Neuron Device 0 NC 0, waiting for" in ln for ln in lines)
    else:
        assert status == nrt.NRT_TIMEOUT and waited == pytest.approx(30.0)
    if version == "2.25.57.0":
        assert any(re.search(r"\.\d{6} .*execution timeout \(30000 ms\) on Neuron Device 0 NC 0, model slow, "
                             r"waiting for execution completion notification$", ln) for ln in lines), lines


# ---- incompatible legacy NEFFs (seed 000's warning) ----------------------------------------------------------------
def legacy_run(neff: str, instance: str) -> tuple[int, str]:
    with neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": instance, "NEURON_RT_ALLOW_LEGACY_NEFF": "1"}) as rt:
        model = rt.load(NEFFS / neff)
        try:
            model(x=np.ones((1, 64), np.float32))
        except neuron_sim.NrtError as exc:
            return exc.status, exc.message
        return 0, ""


def test_legacy_neff_one_generation_back_runs():
    assert legacy_run("mlp_trn1.neff", "trn2.3xlarge") == (0, "")


def test_incompatible_legacy_neff_fails_with_a_data_mismatch():
    status, message = legacy_run("mlp_inf1.neff", "trn1.2xlarge")
    assert status == nrt.NRT_EXEC_COMPLETED_WITH_ERR and "data mismatch" in message


def test_incompatible_legacy_neff_stalls_out():
    status, message = legacy_run("mlp_inf1.neff", "trn2.3xlarge")
    assert status == nrt.NRT_TIMEOUT and LEGACY_STALL_S > 30


# ---- NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS: tests/test_async.py (no cap; memory is the limit) ----------------
