"""The Pythonic call ``model(x=...)`` keeps one tensor pair per concurrent call and binds it once: the device
memory it holds, the executions it counts and traces, and what an unload does are the same on every call."""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neuron_sim
from neuron_sim import NrtError, NrtStatus, nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import interface

W = np.random.default_rng(5).standard_normal((16, 8)).astype(np.float32)


def neff() -> bytes:
    b = NeffBuilder("pythonic_calls", target="v2")
    b.output("y", b.input("x", "float32", (4, 16)) @ b.weight("w", W))
    return b.build()


@pytest.fixture
def rt(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as runtime:
        yield runtime


def test_one_thread_reuses_one_pair_and_unload_frees_it(rt):
    before = rt.memory_stats(0)[0]
    model = rt.load(neff(), core=0)
    loaded = rt.memory_stats(0)[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    np.testing.assert_allclose(model(x=x)["y"], x @ W, rtol=1e-5, atol=1e-5)
    one_pair = rt.memory_stats(0)[0]
    assert one_pair == loaded + x.nbytes + 4 * 8 * 4              # the call's input and output tensors
    for _ in range(50):
        x = rng.standard_normal((4, 16)).astype(np.float32)
        np.testing.assert_allclose(model(x=x)["y"], x @ W, rtol=1e-5, atol=1e-5)
    assert rt.memory_stats(0)[0] == one_pair                      # no pair more, none lost
    model.unload()
    assert rt.memory_stats(0)[0] == before
    with pytest.raises(NrtError) as exc:
        model(x=x)
    assert exc.value.status == NrtStatus.INVALID_HANDLE


def test_outputs_are_fresh_arrays_and_inputs_are_not_kept(rt):
    model = rt.load(neff(), core=0)
    x = np.ones((4, 16), np.float32)
    first = model(x=x)["y"]
    x[:] = 2.0                                                    # the caller's array changes after the call
    second = model(x=x)["y"]
    np.testing.assert_allclose(first, np.ones((4, 16), np.float32) @ W, rtol=1e-5)
    np.testing.assert_allclose(second, x @ W, rtol=1e-5)
    assert not np.shares_memory(first, second)


def test_every_call_is_counted_and_traced_and_a_refused_one_is_not(rt):
    model = rt.load(neff(), core=0)
    stats = interface.live_runtime().cores[0].stats
    completed = stats["completed"]
    assert nrt.nrt_sys_trace_start(None) == nrt.NRT_SUCCESS
    x = np.ones((4, 16), np.float32)
    for _ in range(5):
        model(x=x)
    model.unload()
    with pytest.raises(NrtError):
        model(x=x)
    status, text = nrt.nrt_sys_trace_fetch_events(None)
    assert status == nrt.NRT_SUCCESS
    events = json.loads(text)["events"]
    runs = [e for e in events if e["event_type"] == "nc_exec_running"]
    assert [e["phase"] for e in runs] == ["start", "stop"] * 5
    assert stats["completed"] - completed == 5
    nrt.nrt_sys_trace_stop()


def two_input_neff() -> bytes:
    b = NeffBuilder("two_inputs", target="v2")
    b.output("y", b.input("a", "float32", (2, 3)) + b.cast(b.input("b", "int32", (2, 3)), "float32"))
    return b.build()


_VALUES = {
    "exact": lambda: np.ones((2, 3), np.float32),
    "exact_int": lambda: np.full((2, 3), 2, np.int32),
    "float64": lambda: np.ones((2, 3), np.float64),
    "int64": lambda: np.full((2, 3), 2, np.int64),
    "bool": lambda: np.ones((2, 3), bool),
    "wrong_shape": lambda: np.ones((3, 2), np.float32),
    "list": lambda: [[1.0, 1.0, 1.0]] * 2,
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(sorted(_VALUES)), max_size=3),
       as_mapping=st.booleans())
def test_any_inputs_mapping_runs_or_is_refused_by_the_documented_rule(rt, kinds, as_mapping):
    """Whatever names and values a call passes, the fast path (arrays of the model's dtype and shape) and the
    checked path agree with the rule: unknown names, missing inputs, bool/float-to-int and wrong shapes are
    NRT_INVALID naming the cause; everything else runs and gives the numpy result. A refused call leaves the
    model working."""
    arrays = {k: _VALUES[v]() for k, v in kinds.items()}
    model = rt.load(two_input_neff(), core=0)      # one runtime for every example (the fixture's)
    call = _Mapping(arrays) if as_mapping else arrays
    expected_error = None
    if set(arrays) - {"a", "b"}:
        expected_error = "has no input"
    else:
        for name in ("a", "b"):                   # checked in the model's order of inputs
            kind = kinds.get(name)
            if kind is None:
                expected_error = "missing input"
            elif kind == "wrong_shape":
                expected_error = "has shape"
            elif kind == "bool" or (name == "b" and kind in ("exact", "float64", "list")):
                expected_error = "does not convert safely"
            if expected_error:
                break
    if expected_error:
        with pytest.raises(NrtError) as exc:
            model(**call) if not as_mapping else interface.run_arrays(model.handle, call)
        assert exc.value.status == NrtStatus.INVALID and expected_error in str(exc.value)
    else:
        got = model(**call)["y"] if not as_mapping else interface.run_arrays(model.handle, call)[1]["y"]
        want = np.asarray(arrays["a"], np.float64) + np.asarray(arrays["b"], np.float64)
        np.testing.assert_array_equal(got, want.astype(np.float32))
    good = model(a=np.full((2, 3), 0.5, np.float32), b=np.full((2, 3), 1, np.int32))["y"]
    np.testing.assert_array_equal(good, np.full((2, 3), 1.5, np.float32))
    model.unload()


class _Mapping(Mapping):
    """A read-only mapping that is not a dict (the Pythonic face accepts any mapping)."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

