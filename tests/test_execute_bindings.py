"""nrt_execute keeps a checked binding per (model, input set, output set): every change that matters is seen.

The binding is reused only while the sets are unchanged and no tensor was freed or given new storage; an output
that shares memory with an input is still computed from the inputs as they were (no early write-through)."""
from __future__ import annotations

import numpy as np
import pytest

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder

N = 8


@pytest.fixture
def rt(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    yield
    nrt.nrt_close()


def _load(builder: NeffBuilder):  # type: ignore[no-untyped-def]
    status, model = nrt.nrt_load(builder.build(), 0, 1)
    assert status == nrt.NRT_SUCCESS
    return model


def _tensor(name: str, values: np.ndarray | None = None, nbytes: int = 4 * N):  # type: ignore[no-untyped-def]
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, nbytes, name)
    assert status == nrt.NRT_SUCCESS
    if values is not None:
        values = np.ascontiguousarray(values, np.float32)
        assert nrt.nrt_tensor_write(t, values, 0, values.nbytes) == nrt.NRT_SUCCESS
    return t


def _read(t) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.empty(N, np.float32)
    assert nrt.nrt_tensor_read(t, out, 0, out.nbytes) == nrt.NRT_SUCCESS
    return out


def _sets(inputs: dict, outputs: dict):  # type: ignore[no-untyped-def]
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    for name, t in inputs.items():
        nrt.nrt_add_tensor_to_tensor_set(ins, name, t)
    for name, t in outputs.items():
        nrt.nrt_add_tensor_to_tensor_set(outs, name, t)
    return ins, outs


def _doubler():  # type: ignore[no-untyped-def]
    b = NeffBuilder("double", target="v2")
    b.output("y", b.input("x", "float32", (N,)) * 2.0)
    return _load(b)


def test_replacing_a_tensor_in_a_set_is_seen(rt):
    model = _doubler()
    a, other, y = _tensor("x", np.arange(N)), _tensor("x", np.full(N, 10.0)), _tensor("y")
    ins, outs = _sets({"x": a}, {"y": y})
    for _ in range(3):                                   # bound, then reused
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert _read(y).tolist() == (2 * np.arange(N)).tolist()
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", other)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert _read(y).tolist() == [20.0] * N


def test_new_input_data_is_read_every_time(rt):
    model = _doubler()
    x, y = _tensor("x", np.zeros(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    for k in range(4):
        v = np.full(N, float(k), np.float32)
        nrt.nrt_tensor_write(x, v, 0, v.nbytes)
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
        assert _read(y).tolist() == [2.0 * k] * N


def test_a_freed_tensor_is_refused_after_the_binding_was_cached(rt):
    model = _doubler()
    x, y = _tensor("x", np.ones(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    nrt.nrt_tensor_free(y)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID


def test_attached_buffer_becomes_the_output(rt):
    model = _doubler()
    x, y = _tensor("x", np.arange(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    mine = np.zeros(N, np.float32)
    assert nrt.nrt_tensor_attach_buffer(y, mine, mine.nbytes) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert mine.tolist() == (2 * np.arange(N)).tolist()


def test_an_output_sharing_an_input_tensor_reads_the_input_first(rt):
    b = NeffBuilder("two_outputs", target="v2")
    x = b.input("x", "float32", (N,))
    b.output("y1", x + 1.0)                               # written first ...
    b.output("y2", x * 2.0)                               # ... while x is still needed here
    model = _load(b)
    x_t, y2 = _tensor("x", np.arange(N)), _tensor("y2")
    ins, outs = _sets({"x": x_t}, {"y1": x_t, "y2": y2})  # y1 is the input tensor itself
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert _read(y2).tolist() == (2 * np.arange(N)).tolist()
    assert _read(x_t).tolist() == (np.arange(N) + 1).tolist()
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS         # the cached binding: same rule
    assert _read(y2).tolist() == (2 * (np.arange(N) + 1)).tolist()
    assert _read(x_t).tolist() == (np.arange(N) + 2).tolist()


def test_nan_in_an_output_is_still_reported_on_a_cached_binding(rt):
    model = _doubler()
    x, y = _tensor("x", np.ones(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    bad = np.ones(N, np.float32)
    bad[3] = np.nan
    nrt.nrt_tensor_write(x, bad, 0, bad.nbytes)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR
    big = np.full(N, np.inf, np.float32)                  # inf is not NaN
    nrt.nrt_tensor_write(x, big, 0, big.nbytes)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS


def test_a_large_execute_allocates_no_full_size_temporary(rt):
    """Once bound, an execute writes the output in place and checks NaN without an output-sized temporary
    (numpy reports its allocations to tracemalloc)."""
    import tracemalloc
    n = 1 << 20
    b = NeffBuilder("big_double", target="v2")
    b.output("y", b.input("x", "float32", (n,)) * 2.0)
    model = _load(b)
    x, y = _tensor("x", np.ones(n), 4 * n), _tensor("y", None, 4 * n)
    ins, outs = _sets({"x": x}, {"y": y})
    for _ in range(2):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    tracemalloc.start()
    try:
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n // 8, peak                # a bool mask alone would be n bytes, a float copy 4n


WARM_UPS = [1, 2, 3, 4, 6]     # the binding is prepared, then bound to a direct run, then execute's hot slot


@pytest.mark.parametrize("warm", WARM_UPS)
def test_every_change_is_seen_after_any_number_of_executions(rt, warm):
    model = _doubler()
    x, other, y = _tensor("x", np.arange(N)), _tensor("x", np.full(N, 10.0)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    for _ in range(warm):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", other)            # the set changed
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert _read(y).tolist() == [20.0] * N
    for _ in range(warm):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    mine = np.zeros(N, np.float32)                                 # the output got new storage
    assert nrt.nrt_tensor_attach_buffer(y, mine, mine.nbytes) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert mine.tolist() == [20.0] * N
    for _ in range(warm):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    nrt.nrt_tensor_free(other)                                     # an input was freed
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID


@pytest.mark.parametrize("warm", WARM_UPS)
def test_freeing_an_unrelated_tensor_keeps_results_right(rt, warm):
    model = _doubler()
    x, y, unrelated = _tensor("x", np.arange(N)), _tensor("y"), _tensor("z")
    ins, outs = _sets({"x": x}, {"y": y})
    for _ in range(warm):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    nrt.nrt_tensor_free(unrelated)
    v = np.full(N, 3.0, np.float32)
    nrt.nrt_tensor_write(x, v, 0, v.nbytes)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert _read(y).tolist() == [6.0] * N


@pytest.mark.parametrize("warm", WARM_UPS)
def test_an_unloaded_model_is_refused_after_any_number_of_executions(rt, warm):
    model = _doubler()
    x, y = _tensor("x", np.arange(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    for _ in range(warm):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    assert nrt.nrt_unload(model) == nrt.NRT_SUCCESS
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_INVALID_HANDLE


def test_counters_and_simulated_time_are_the_same_on_every_path(rt):
    """The first calls (checked, then bound) and the later ones (execute's hot slot) count and take time alike."""
    from neuron_sim.runtime import interface
    model = _doubler()
    x, y = _tensor("x", np.ones(N)), _tensor("y")
    ins, outs = _sets({"x": x}, {"y": y})
    clock = interface.clock()
    duration = interface.model_execution_time_s(model)
    stats = interface.live_runtime().cores[0].stats
    before = dict(stats)
    ends = []
    for _ in range(8):
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
        ends.append(clock.thread_now())
    steps = np.diff(ends)
    assert np.allclose(steps, duration, rtol=0, atol=1e-12)         # back to back, one duration each
    assert stats["completed"] - before["completed"] == 8
    assert stats["device_time_s"] - before["device_time_s"] == pytest.approx(8 * duration)
    bad = np.full(N, np.nan, np.float32)
    nrt.nrt_tensor_write(x, bad, 0, bad.nbytes)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR
    assert stats["completed_with_num_err"] - before["completed_with_num_err"] == 1


def test_a_hot_binding_takes_the_new_duration_when_weight_sharing_changes(monkeypatch):
    """Executions on execute's hot slot charge the model's current duration: loading and unloading a model that
    shares its weights on the same HBM bank changes it, and the very next execution takes the new one."""
    from neuron_sim.runtime import interface
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "1")
    b = NeffBuilder("shared_gemv", target="v2")
    w = np.random.default_rng(4).standard_normal((N, 4096)).astype(np.float32)
    b.output("y", b.input("x", "float32", (1, N)) @ b.weight("w", w))
    data = b.build()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        status, model = nrt.nrt_load(data, 0, 1)
        assert status == nrt.NRT_SUCCESS
        x, y = _tensor("x", np.ones(N)), _tensor("y", nbytes=4 * 4096)
        ins, outs = _sets({"x": x}, {"y": y})
        clock = interface.clock()

        def step() -> float:
            t0 = clock.thread_now()
            assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
            return clock.thread_now() - t0

        alone = interface.model_execution_time_s(model)
        assert [step() for _ in range(5)] == pytest.approx([alone] * 5)
        status, other = nrt.nrt_load(data, 1, 1)                    # core 1 shares core 0's HBM bank
        assert status == nrt.NRT_SUCCESS
        shared = interface.model_execution_time_s(model)
        assert shared != alone
        assert step() == pytest.approx(shared)
        assert nrt.nrt_unload(other) == nrt.NRT_SUCCESS
        assert step() == pytest.approx(alone)
    finally:
        nrt.nrt_close()
