"""The README's main command and every example run from a clean environment and say what they should."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    base.update(NEURON_SIM_STATE_DIR=str(tmp_path / "state"), **env)
    if env.pop("own_state", False):
        del base["NEURON_SIM_STATE_DIR"]
        base.pop("own_state")
        base["TMPDIR"] = str(tmp_path)
    return subprocess.run([sys.executable, *args], env=base, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_demo_is_the_main_command(tmp_path):
    r = run(["-m", "neuron_sim.cli.main"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "simulated trn1.32xlarge" in out
    assert "placed on least-used cores [0, 1, 2, 3]" in out
    assert "output matches numpy (max abs diff 0.00e+00)" in out
    assert "input tensor of 100 bytes instead of 8192: NRT_INVALID" in out
    assert "NRT_TIMEOUT after" in out
    assert "another process asking for NeuronCore 0: NRT_RESOURCE (Logical Neuron Core(s) not available" in out
    assert "execution timeout (30000 ms)" in r.stderr            # the runtime's own log line
    where = out.split("7. the run as a timeline: ", 1)[1]
    trace_path, drawing = where.split(" (open it in")[0], where.split("the placement: ")[1].strip()
    events = json.loads(open(trace_path).read())["traceEvents"]
    assert sum(1 for e in events if e["ph"] == "X" and e["cat"] == "timeout") == 1
    assert 'id="model-demo_mlp-nc0"' in open(drawing).read()


@pytest.mark.parametrize("instance", ["trn1.2xlarge", "inf2.xlarge", "inf2.8xlarge"])
def test_demo_adapts_to_small_machines(tmp_path, instance):
    r = run(["-m", "neuron_sim.cli.main", "demo", "--instance-type", instance], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"simulated {instance}" in r.stdout and "NEURON_RT_NUM_CORES=2" in r.stdout
    assert "output matches numpy" in r.stdout and "NRT_TIMEOUT after" in r.stdout


def test_demo_reports_a_failed_init_without_a_traceback(tmp_path):
    r = run(["-m", "neuron_sim.cli.main", "demo"], tmp_path, NEURON_RT_VISIBLE_CORES="3,5")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "nrt_init failed with NRT_INVALID" in r.stdout and "NEURON_RT_VISIBLE_CORES" in r.stderr
    assert "log line above" not in r.stdout


def test_first_app(tmp_path):
    r = run(["examples/first_app.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "loaded mlp_trn1.neff on NC 0: 2 IO tensors" in r.stdout and "y = [" in r.stdout


def test_first_app_with_a_corrupt_neff_fails_cleanly(tmp_path):
    r = run(["examples/first_app.py", "neffs/truncated.neff"], tmp_path)
    assert r.returncode == 1 and "nrt_load failed: NRT_INVALID(2)" in r.stderr and "Traceback" not in r.stderr


def test_pythonic(tmp_path):
    r = run(["examples/pythonic.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrong input shape -> INVALID" in r.stdout and "-> TIMEOUT (simulated clock 30.1 s)" in r.stdout


def test_core_reservation(tmp_path):
    r = run(["examples/core_reservation.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[-1] for ln in lines[:6]] == ["0,1,2", "3,4,5", "6,7,8", "9,10,11", "12,13,14", "-"]
    assert "NRT_RESOURCE" in lines[5] and "Requested:3 Available:1" in r.stdout


def test_reproduce_oom(tmp_path):
    r = run(["examples/reproduce_oom.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SHARED_WEIGHTS=FALSE: 22 copies on each core -> NRT_RESOURCE after 42 loads" in r.stdout
    assert "SHARED_WEIGHTS=TRUE: 22 copies on each core -> NRT_SUCCESS, 44 loads" in r.stdout
    assert "Failed to allocate 768.003MB (alignment: none, usage: constants)" in r.stdout


@pytest.mark.timeout(120)
def test_async_pipelining(tmp_path):
    r = run(["examples/async_pipelining.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "inflight 3: NRT_SUCCESS NRT_SUCCESS NRT_SUCCESS" in r.stdout
    assert "inflight 8: " + " ".join(["NRT_SUCCESS"] * 5 + ["NRT_RESOURCE"] * 3) in r.stdout
    assert "3 requests in flight:" in r.stdout


def test_ci_with_pytest_project(tmp_path):
    """The example project's own tests (plugin fixtures, a plan file and neuron_faults) pass."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"],
                       env=base,
                       cwd=REPO / "examples" / "ci_with_pytest", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 passed" in r.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize("example", ["pythonic.py", "reproduce_oom.py", "core_reservation.py"])
def test_examples_leave_no_state_directory_behind(tmp_path, example):
    r = run([f"examples/{example}"], tmp_path, own_state=True)
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("neuron_sim_example_*"))


def test_nrta_double_buffering_beats_the_synchronous_loop(tmp_path):
    r = run(["examples/nrta_double_buffering.py", "5"], tmp_path, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "synchronous loop: 5 batches in" in lines[0] and "outputs equal numpy" in lines[0]
    assert "double-buffered loop: 5 batches in" in lines[1] and "outputs equal numpy" in lines[1]
    speed_up = float(lines[2].split(": ")[1].rstrip("x"))
    assert speed_up > 1.5, r.stdout
    assert "Hazard" not in r.stderr


def test_placement_guide(tmp_path):
    """examples/placement_guide.py: every example of the guide, the cores its comments give."""
    r = run(["examples/placement_guide.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for expected in ("Overlapping Models (NEURON_RT_VISIBLE_CORES=0-1); process cores nc0-nc1\n    m0: nc0\n"
                     "    m1: nc0-nc1\n    m2: nc1\n",
                     "NEURONCORE_GROUP_SIZES=2,2); process cores nc0-nc3\n    m0: nc0-nc1\n    m1: nc2-nc3\n"
                     "    m2: nc0\n    m3: nc2\n    m4: nc0\n",
                     "Manual Core Selection (NEURON_RT_NUM_CORES=4); process cores nc0-nc3\n    m0: nc0-nc1\n"
                     "    m1: nc2-nc3\n    m2: nc0-nc2\n    m3: nc3\n",
                     "    m0: nc0, nc1, nc2, nc3, nc4, nc5, nc6, nc7\n",
                     "Explicit Replication (NEURON_RT_NUM_CORES=8); process cores nc0-nc7\n    m0: nc2-nc3, nc4-nc5\n"):
        assert expected in out, out
    assert out.count("\n    ") == 31                 # one line per model of the 12 examples
