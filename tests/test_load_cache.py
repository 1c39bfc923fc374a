"""nrt_load remembers NEFFs it read and compiled, by content: shared between loads, checked like a first load,
bounded, never remembering a failure (runtime/neff_cache.py)."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle, models, neff_cache
from tests.conftest import NEFFS


@pytest.fixture(autouse=True)
def empty_cache():
    neff_cache.clear()
    yield
    neff_cache.clear()


def scale_neff(name: str, factor: float) -> bytes:
    b = NeffBuilder(name, target="v2")
    b.output("y", b.input("x", "float32", (4,)) * b.weight("k", np.full(4, factor, np.float32)))
    return b.build()


def run(model, value: float = 1.0) -> np.ndarray:
    """Execute a scale_neff model on core 0 with x = value; y."""
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    x = nrt.nrt_tensor_allocate(0, 0, 16, "x")[1]
    y = nrt.nrt_tensor_allocate(0, 0, 16, "y")[1]
    nrt.nrt_tensor_write(x, np.full(4, value, np.float32), 0, 16)
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
    got = np.empty(4, np.float32)
    nrt.nrt_tensor_read(y, got, 0, 16)
    return got


def load(data) -> object:
    status, model = nrt.nrt_load(data, 0, 1)
    assert status == nrt.NRT_SUCCESS, status
    return model


def test_loads_of_the_same_bytes_share_the_neff_and_its_compiled_graph_across_runtimes() -> None:
    data = (NEFFS / "mlp_trn1.neff").read_bytes()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    first, second = load(data), load(bytearray(data))          # any buffer: identity is the content
    assert second.neff is first.neff and second.compiled is first.compiled
    assert neff_cache.usage() == (1, first.neff.unpacked_bytes)
    nrt.nrt_close()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS                    # a new runtime (the next test) reuses it too
    third = load(memoryview(data))
    assert third.neff is first.neff and third.compiled is first.compiled
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    w = first.neff.weights
    ref = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
    nrt.nrt_close()
    with neuron_sim.Runtime() as rt:                             # the shared graph still computes the model
        assert np.allclose(rt.load(NEFFS / "mlp_trn1.neff")(x=x)["y"], ref, rtol=1e-5, atol=1e-5)
    assert neff_cache.usage()[0] == 1


def test_a_different_content_is_read_again_even_from_the_same_buffer() -> None:
    data = bytearray(scale_neff("scale_a", 2.0))
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    a = load(data)
    name_at = 220                                                # the header's name field
    data[name_at:name_at + 7] = b"scale_b"                       # same buffer, new content
    b = load(data)
    assert (a.neff.name, b.neff.name) == ("scale_a", "scale_b") and b.neff is not a.neff
    assert neff_cache.usage()[0] == 2
    assert list(run(a, 3.0)) == [6.0] * 4 and list(run(b, 3.0)) == [6.0] * 4


def test_hash_validation_and_the_size_cap_still_apply_to_bytes_loaded_before(monkeypatch, capsys) -> None:
    bad_hash = (NEFFS / "bad_hash.neff").read_bytes()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    model = load(bad_hash)                                       # no validation: it loads (and is remembered)
    assert model.neff.hash_status == "unchecked"
    nrt.nrt_close()
    monkeypatch.setenv("NEURON_RT_VALIDATE_HASH", "1")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert nrt.nrt_load(bad_hash, 0, 1) == (nrt.NRT_INVALID, None)
    assert "MD5 mismatch!" in capsys.readouterr().err
    good = load((NEFFS / "mlp_trn1.neff").read_bytes())
    assert good.neff.hash_status == "ok"
    nrt.nrt_close()
    monkeypatch.delenv("NEURON_RT_VALIDATE_HASH")
    monkeypatch.setenv("NEURON_SIM_MAX_NEFF_BYTES", "4096")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert nrt.nrt_load(bad_hash, 0, 1) == (nrt.NRT_INVALID, None)
    assert "NEURON_SIM_MAX_NEFF_BYTES" in capsys.readouterr().err


def test_failed_loads_are_not_remembered_and_fail_the_same_way_every_time(capsys) -> None:
    data = (NEFFS / "truncated.neff").read_bytes()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    for _ in range(2):
        assert nrt.nrt_load(data, 0, 1) == (nrt.NRT_INVALID, None)
        assert "Failed to load NN" in capsys.readouterr().err
    assert neff_cache.usage() == (0, 0)


def test_checks_that_depend_on_the_runtime_run_on_every_load(monkeypatch, capsys) -> None:
    data = (NEFFS / "mlp_trn2.neff").read_bytes()
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn2.3xlarge")
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    load(data)
    nrt.nrt_close()
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")   # the same bytes on another generation
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert nrt.nrt_load(data, 0, 1) == (nrt.NRT_UNSUPPORTED_NEFF_VERSION, None)
    assert "compiled for a different arch" in capsys.readouterr().err


def test_the_cache_is_bounded_by_entries_and_bytes_and_evicted_models_keep_working(monkeypatch) -> None:
    monkeypatch.setattr(neff_cache, "MAX_ENTRIES", 3)
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    blobs = [scale_neff(f"scale_{i}", float(i + 1)) for i in range(5)]
    held = [load(b) for b in blobs]
    entries, size = neff_cache.usage()
    assert entries == 3 and size == sum(m.neff.unpacked_bytes for m in held[2:])
    assert list(run(held[0], 1.0)) == [1.0] * 4                  # evicted: the model holds its own NEFF
    again = load(blobs[0])                                       # least recently loaded went first: read again
    assert again.neff is not held[0].neff and load(blobs[4]).neff is held[4].neff
    one = held[0].neff.unpacked_bytes
    monkeypatch.setattr(neff_cache, "BUDGET_BYTES", 2 * one)
    load(blobs[1])
    assert neff_cache.usage() == (2, 2 * one)
    monkeypatch.setattr(neff_cache, "ENTRY_MAX_BYTES", one - 1)  # too big to remember: read on every load
    neff_cache.clear()
    assert load(blobs[2]).neff is not load(blobs[2]).neff and neff_cache.usage() == (0, 0)


def test_load_unload_cycles_leave_no_state_behind() -> None:
    data = (NEFFS / "mlp_trn1.neff").read_bytes()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    rt = lifecycle.peek()

    def cycles(n: int) -> None:
        for _ in range(n):
            status, model = nrt.nrt_load(data)
            assert status == nrt.NRT_SUCCESS
            assert nrt.nrt_unload(model) == nrt.NRT_SUCCESS

    cycles(200)
    gc.collect()
    tracemalloc.start()
    try:
        cycles(500)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        cycles(2000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 << 10, f"{grown} bytes more after 2000 more load/unload cycles"
    assert neff_cache.usage()[0] == 1 and not models.loaded(rt) and not rt.memory.neff_names


def test_a_remembered_graph_keeps_no_scratch_memory_after_its_models_unload() -> None:
    b = NeffBuilder("wide_scratch", target="v2")
    x = b.input("x", "float32", (512, 1024))
    b.output("y", b.reduce_sum(b.exp(x * 2.0) + 1.0, axes=[1]))   # 2 MiB intermediates, tiny archive
    data = b.build()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    xt = nrt.nrt_tensor_allocate(0, 0, 512 * 1024 * 4, "x")[1]
    yt = nrt.nrt_tensor_allocate(0, 0, 512 * 4, "y")[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", xt)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", yt)
    nrt.nrt_tensor_write(xt, np.ones((512, 1024), np.float32), 0, 512 * 1024 * 4)
    nrt.nrt_tensor_write(yt, np.zeros(512, np.float32), 0, 512 * 4)
    nrt.nrt_unload(load(data))                                   # read and compiled: remembered
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model = load(data)
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
        ran = tracemalloc.get_traced_memory()[0] - base
        assert nrt.nrt_unload(model) == nrt.NRT_SUCCESS
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert ran > 2 << 20 and left < 256 << 10, (ran, left)
    assert neff_cache.usage()[0] == 1
