"""Every failure of a face is a status: the flat face answers any argument with an int status, the Pythonic
face raises NrtError; counts after a failed init agree with nrt_init; input conversion never casts silently."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neuron_sim
from neuron_sim import NrtError, NrtStatus, nrt
from neuron_sim.neff.builder import NeffBuilder

W = np.random.default_rng(5).standard_normal((16, 8)).astype(np.float32)


def mlp_neff() -> bytes:
    b = NeffBuilder("mlp_status", target="v2")
    x = b.input("x", "float32", (4, 16))
    b.output("y", b.relu(x @ b.weight("w", W)))
    return b.build()


@pytest.fixture
def flat(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == 0
    status, model = nrt.nrt_load(mlp_neff(), 0, -1)
    assert status == 0
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 64, "t")
    assert status == 0
    yield model, t
    nrt.nrt_close()


# ---- the cases of the issue ---------------------------------------------------------------------------
def test_listed_flat_cases_are_statuses(flat, capsys):
    _, t = flat
    assert nrt.nrt_tensor_memset(t, 0, None, 4) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_check_output_completion(t, "x", 1) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_check_output_completion(t, 0, None) == nrt.NRT_INVALID
    readonly = np.zeros(16, np.uint8)
    readonly.flags.writeable = False
    assert nrt.nrt_tensor_read(t, readonly, 0, 16) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_read(t, None, 0, 16) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_read_batch(None) == nrt.NRT_INVALID
    assert nrt.nrt_tensor_write_batch(None) == nrt.NRT_INVALID
    err = capsys.readouterr().err
    assert "read-only" in err and "NULL buffer" in err and "Invalid memset value None" in err
    assert "Invalid timeout_us 'x'" in err


@pytest.mark.parametrize("batches", [
    [(None, [(0, 4, b"abcd")])], [5], [(1, 2, 3)], [{"tensor": None}], [{"ops": []}], "abc", [[]],
])
def test_malformed_write_batch_entries_are_invalid_and_write_nothing(flat, batches):
    _, t = flat
    assert nrt.nrt_tensor_write(t, b"\x11" * 64, 0, 64) == 0
    assert nrt.nrt_tensor_write_batch(batches) == nrt.NRT_INVALID
    out = bytearray(64)
    assert nrt.nrt_tensor_read(t, out, 0, 64) == 0 and out == b"\x11" * 64


def test_malformed_op_in_a_batch_is_invalid_before_any_write(flat):
    _, t = flat
    good = (0, 4, b"\x22" * 4)
    assert nrt.nrt_tensor_write_batch([(t, [good, (0, 4)])]) == nrt.NRT_INVALID
    out = bytearray(4)
    assert nrt.nrt_tensor_read(t, out, 0, 4) == 0 and out == b"\x00" * 4
    assert nrt.nrt_tensor_read_batch([(t, [{"offset": 0, "size": 4}])]) == nrt.NRT_INVALID


def test_pythonic_listed_cases_raise_nrt_error(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt:
        for call in (lambda: rt.load(123), lambda: rt.load(None), lambda: rt.tensor(shape=(2,), dtype="nope"),
                     lambda: rt.tensor(shape="ab", dtype="float32"), lambda: rt.tensor(shape=(2,), dtype=object()),
                     lambda: rt.tensor(np.zeros(2), placement=3), lambda: rt.tensor([object()]),
                     lambda: rt.tensor(shape=(-1,), dtype="float32")):
            with pytest.raises(NrtError) as exc:
                call()
            assert exc.value.status == NrtStatus.INVALID
        assert rt.memory_stats(0)[0] == rt.memory_stats(1)[0]     # nothing allocated by the refused calls


def test_model_run_with_wrong_handles_is_invalid(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt:
        model = rt.load(mlp_neff())
        for inputs, outputs in (({"x": 3}, {"y": None}), (None, {}), ({"x": "t"}, [])):
            with pytest.raises(NrtError) as exc:
                model.run(inputs, outputs)
            assert exc.value.status == NrtStatus.INVALID


# ---- counts after a failed init -----------------------------------------------------------------------
@pytest.mark.parametrize("env, status", [
    ({"NEURON_RT_VISIBLE_CORES": "30-40"}, nrt.NRT_INVALID),
    ({"NEURON_RT_VISIBLE_CORES": "5-3"}, nrt.NRT_INVALID),
    ({"NEURON_RT_NUM_CORES": "40"}, nrt.NRT_RESOURCE),
])
def test_visible_count_agrees_with_a_failed_init(monkeypatch, capsys, env, status):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.32xlarge")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert nrt.nrt_get_visible_nc_count() == (status, None)
    assert nrt.nrt_init() == status
    assert nrt.nrt_get_visible_nc_count() == (status, None)
    assert nrt.nrt_get_visible_vnc_count() == (status, None)
    assert nrt.nrt_get_total_nc_count() == ((0, 32) if "NUM" in next(iter(env)) or "30" in env.get(
        "NEURON_RT_VISIBLE_CORES", "") else (status, None))
    assert "ERROR" in capsys.readouterr().err


def test_instance_info_of_an_unknown_instance_is_a_status(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "nosuch.large")
    assert nrt.nrt_get_instance_info() == (nrt.NRT_INVALID, None)
    assert nrt.nrt_get_total_nc_count() == (nrt.NRT_INVALID, None)


# ---- input conversion of the Pythonic face ------------------------------------------------------------
@pytest.fixture
def model(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt:
        yield rt.load(mlp_neff())


@pytest.mark.parametrize("x, cause", [
    (np.ones((4, 16), np.complex64), "complex64"),
    (np.ones((4, 16), bool), "bool"),
    (np.full((4, 16), 1e40), "out of range"),
    (np.full((4, 16), "a"), "<U1"),
    (np.empty((4, 16), object), "object"),
])
def test_unsafe_input_conversions_are_invalid_naming_the_input(model, capsys, x, cause):
    with pytest.raises(NrtError) as exc:
        model(x=x)
    assert exc.value.status == NrtStatus.INVALID
    assert "input 'x'" in exc.value.message and cause in exc.value.message
    assert cause in capsys.readouterr().err


@pytest.mark.parametrize("x", [
    np.linspace(-2, 2, 64).reshape(4, 16),                       # float64 within range
    np.arange(64, dtype=np.int64).reshape(4, 16) - 32,             # integers
    [[1.0] * 16] * 4,                                              # nested lists
])
def test_safe_input_conversions_compute_the_right_answer(model, x):
    y = model(x=x)["y"]
    expected = np.maximum(np.asarray(x, np.float32) @ W, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_non_finite_float64_is_passed_through_not_refused(model):
    with pytest.raises(neuron_sim.NumericalError):            # executed: inf @ W holds NaN, not NRT_INVALID
        model(x=np.full((4, 16), np.inf))


# ---- every flat function, any argument ----------------------------------------------------------------
FLAT = sorted(name for name, fn in vars(nrt).items() if name.startswith(("nrt_", "nrta_")) and not name.endswith("_t")
              and callable(fn)
              and name not in ("nrt_init", "nrt_close"))
OTHER_RESULTS = {"nrt_tensor_get_size": int, "nrt_get_status_as_str": str, "nrt_tensor_get_va": (int, type(None)),
                 "nrt_tensor_free": type(None), "nrt_destroy_tensor_set": type(None)}


def _values(handles: list) -> st.SearchStrategy:
    return st.one_of(
        st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from([2 ** 64, -(2 ** 63), 1 << 33]),
        st.floats(allow_nan=True), st.text(max_size=5), st.binary(max_size=40),
        st.lists(st.integers(-1, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.tuples(st.integers(), st.text(max_size=1)), st.sampled_from(handles),
        st.builds(lambda n: np.zeros(n, np.float32), st.integers(0, 20)),
        st.just(object()), st.just(lambda *a: None), st.just(complex(1, 2)),
    )


@pytest.mark.parametrize("name", FLAT)
def test_every_flat_function_answers_every_argument_with_a_status(flat, capsys, name):
    model, t = flat
    fn = getattr(nrt, name)
    params = inspect.signature(fn).parameters.values()
    required = sum(p.default is inspect.Parameter.empty for p in params)
    tset = nrt.nrt_allocate_tensor_set()[1]
    handles = [model, t, tset, nrt.nrt_tensor_allocate_empty("e")[1], nrt.nrt_get_model_tensor_info(model)[1],
               nrt.nrta_status_t()]

    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(required, len(params)).flatmap(lambda n: st.tuples(*[_values(handles)] * n)))
    def drive(args):
        if name == "nrt_tensor_check_output_completion" and len(args) > 1 and isinstance(args[1], int) \
                and args[1] < 0:
            return  # a negative timeout waits forever by contract
        result = fn(*args)
        expected = OTHER_RESULTS.get(name)
        if expected is not None:
            assert isinstance(result, expected), result
        elif isinstance(result, tuple):
            assert len(result) == 2 and type(result[0]) is int and (result[0] == 0) == (result[1] is not None)
        else:
            assert type(result) is int, result

    drive()
    assert "internal error" not in capsys.readouterr().err


@given(st.one_of(st.none(), st.text(max_size=3), st.floats(), st.integers(-5, 10), st.just(object()),
                st.just(np.ones(3)), st.booleans()))
@settings(max_examples=30)
def test_nrt_init_answers_any_framework_with_a_status(framework):
    status = nrt.nrt_init(framework)
    assert type(status) is int
    if status == 0:
        nrt.nrt_close()
