"""resilient_infer on a simulated inf2.xlarge: no conftest, the neuron_sim pytest plugin gives the fixtures."""
from pathlib import Path

import numpy as np
import pytest
from neuron_sim import NrtStatus
from neuron_sim.neff.builder import NeffBuilder

from resilient_infer import GaveUp, run_with_retries

TWO_TIMEOUTS = Path(__file__).parent.parent / "faults" / "two_timeouts.json"
pytestmark = pytest.mark.neuron(instance_type="inf2.xlarge")


@pytest.fixture
def model(neuron_runtime):
    b = NeffBuilder("double", target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", x * 2.0)
    return neuron_runtime.load(b.build())


X = {"x": np.arange(4, dtype=np.float32)}


def test_runs_without_faults(model):
    assert run_with_retries(model, X)["y"].tolist() == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.neuron(instance_type="inf2.xlarge", env={"NEURON_SIM_FAULTS": str(TWO_TIMEOUTS)})
def test_retries_a_transient_failure(model):
    retries = []
    out = run_with_retries(model, X, attempts=3, on_retry=lambda n, status: retries.append(status))
    assert out["y"].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert retries == [NrtStatus.TIMEOUT, NrtStatus.TIMEOUT]


def test_gives_up_when_transient_failures_persist(model, neuron_faults):
    neuron_faults.add("execute", "NRT_TIMEOUT", sticky=True)
    with pytest.raises(GaveUp) as info:
        run_with_retries(model, X, attempts=3)
    assert (info.value.status, info.value.attempts) == (NrtStatus.TIMEOUT, 3)


@pytest.mark.parametrize("status", ["NRT_EXEC_UNIT_UNRECOVERABLE", "NRT_EXEC_HW_ERR_HBM_UE"])
def test_gives_up_at_once_on_a_fatal_failure(model, neuron_faults, status):
    neuron_faults.add("execute", status)
    with pytest.raises(GaveUp) as info:
        run_with_retries(model, X, attempts=5)
    assert info.value.attempts == 1 and info.value.status.name == status[4:]


def test_gives_up_when_the_device_falls_off(model, neuron_faults):
    neuron_faults.add("device_lost", device=0)
    with pytest.raises(GaveUp) as info:
        run_with_retries(model, X)
    assert (info.value.status, info.value.attempts) == (NrtStatus.HW_ERROR, 1)
