"""The Pythonic call ``model(x=...)`` keeps one tensor pair per concurrent call and binds it once: the device
memory it holds, the executions it counts and traces, and what an unload does are the same on every call."""
from __future__ import annotations

import json

import numpy as np
import pytest

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
