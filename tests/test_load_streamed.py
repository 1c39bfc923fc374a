"""Loading a NEFF from its path: a large file is streamed (no copy of it held), a small one read whole (so the
runtime's cache of NEFFs knows it); both behave exactly as loading the file's bytes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuron_sim
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle, neff_cache

REPO = Path(__file__).resolve().parent.parent
W = np.random.default_rng(7).standard_normal((2048, 1280)).astype(np.float32)     # 10 MiB: above the cache's bound


@pytest.fixture(scope="module")
def big_neff(tmp_path_factory) -> Path:
    b = NeffBuilder("streamed", target="v2")
    b.output("y", b.input("x", "float32", (1, 2048)) @ b.weight("w", W))
    path = tmp_path_factory.mktemp("neffs") / "streamed.neff"
    b.save(path)
    assert path.stat().st_size > neff_cache.ENTRY_MAX_BYTES
    return path


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")


def test_a_large_neff_from_its_path_runs_and_costs_what_its_bytes_cost(trn1, big_neff):
    x = np.random.default_rng(1).standard_normal((1, 2048)).astype(np.float32)
    with neuron_sim.Runtime() as rt:
        clock = lifecycle.current("test").clock
        t0 = clock.thread_now()
        streamed = rt.load(big_neff, core=0)
        t1 = clock.thread_now()
        whole = rt.load(big_neff.read_bytes(), core=1)
        t2 = clock.thread_now()
        assert t1 - t0 == pytest.approx(t2 - t1) and t1 > t0                # the same simulated load time
        np.testing.assert_allclose(streamed(x=x)["y"], x @ W, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(streamed(x=x)["y"], whole(x=x)["y"])
        assert rt.memory_stats(0)[0] == rt.memory_stats(1)[0]              # the same device memory


LOAD_CHILD = r"""
import os, sys
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) * 1024
import neuron_sim
rt = neuron_sim.Runtime().start()
before = hwm()
rt.load(sys.argv[1])
print(hwm() - before)
"""


def test_a_large_neff_from_its_path_is_never_held_whole(trn1, big_neff, tmp_path):
    """The process's peak grows by the unpacked weights only: less than 1.5x the file (reading the file into
    bytes first would make it 2x)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), NEURON_SIM_STATE_DIR=str(tmp_path / "state"))
    grown = int(subprocess.run([sys.executable, "-c", LOAD_CHILD, str(big_neff)], env=env, capture_output=True,
                               text=True, check=True).stdout)
    assert grown < 1.5 * big_neff.stat().st_size


def test_a_damaged_large_neff_from_its_path_is_refused_as_its_bytes_are(trn1, big_neff, tmp_path, capfd):
    damaged = tmp_path / "damaged.neff"
    data = bytearray(big_neff.read_bytes())
    damaged.write_bytes(bytes(data[: len(data) // 2]))               # truncated: the header says more
    with neuron_sim.Runtime() as rt:
        with pytest.raises(neuron_sim.NrtError) as from_path:
            rt.load(damaged)
        path_err = capfd.readouterr().err
        with pytest.raises(neuron_sim.NrtError) as from_bytes:
            rt.load(damaged.read_bytes())
        bytes_err = capfd.readouterr().err
    assert from_path.value.status == from_bytes.value.status == neuron_sim.NrtStatus.INVALID
    assert from_path.value.message == from_bytes.value.message
    assert f"Failed to load NN: {damaged}" in path_err and "Failed to load NN: <buffer>" in bytes_err


def test_a_small_neff_from_its_path_is_read_whole_and_cached(trn1):
    neff_cache.clear()
    small = REPO / "neffs" / "mlp_trn1.neff"
    with neuron_sim.Runtime() as rt:
        a = rt.load(small)
        b = rt.load(small.read_bytes())
        assert a.handle.neff is b.handle.neff                              # one content, read once


def test_nrtpy_loads_a_large_neff_from_its_path_streamed(trn1, big_neff):
    from neuron_sim.nrtpy import NrtpyModel, NrtpyTensor, reset
    reset()
    try:
        x = np.random.default_rng(2).standard_normal((1, 2048)).astype(np.float32)
        model = NrtpyModel.load_from_neff(big_neff)
        out = model({"x": NrtpyTensor.from_numpy(x, name="x")})
        np.testing.assert_allclose(out["y"].numpy(), x @ W, rtol=1e-4, atol=1e-4)
        with pytest.raises(Exception) as missing:
            NrtpyModel.load_from_neff(big_neff.with_name("absent.neff"))
        assert "cannot read the NEFF file" in str(missing.value)
    finally:
        reset()
