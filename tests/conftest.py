"""Shared fixtures: every test gets its own state directory and a fresh, closed runtime."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and machine, no wall-clock deadlines.
settings.register_profile("neuron_sim", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("neuron_sim")

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
NEFFS = REPO / "neffs"
REAL_NEFFS = next((p for p in (REPO.parent / "shared" / "realneffs", Path("/work/shared/realneffs"))
                   if (p / "matmul_small.neff").is_file()), REPO.parent / "shared" / "realneffs")



@pytest.fixture(autouse=True)
def isolated_runtime(tmp_path):
    """A private NEURON_SIM_STATE_DIR, no inherited NEURON_* settings, and no runtime left open."""
    from neuron_sim.testing import emulate
    with emulate(state_dir=tmp_path / "state") as machine:
        yield machine


@pytest.fixture
def sample():
    """Path of a committed sample NEFF by stem: sample("mlp_trn1")."""
    def get(stem: str) -> Path:
        path = NEFFS / f"{stem}.neff"
        assert path.exists(), f"missing sample {path}; run python neffs/build_samples.py"
        return path
    return get
