"""nrt_init/nrt_close across real processes: the seed's allocation examples, SIGKILL, neuron-sim ls -a."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO

HOLDER = """
import json, sys
from neuron_sim import nrt
from neuron_sim.runtime import interface
status = nrt.nrt_init()
cores = list(interface.global_core_ids()) if status == 0 else []
print(json.dumps({"status": status, "cores": cores}), flush=True)
if status == 0:
    sys.stdin.read()
    nrt.nrt_close()
"""


def start(env: dict[str, str]) -> tuple[subprocess.Popen, dict]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = p.stdout.readline()
    assert line, p.stderr.read()
    return p, json.loads(line)


@pytest.fixture
def inf1(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    env.update(NEURON_SIM_INSTANCE_TYPE="inf1.6xlarge", NEURON_SIM_STATE_DIR=str(tmp_path / "state"))
    procs: list[subprocess.Popen] = []
    yield env, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
        for stream in (p.stdin, p.stdout, p.stderr):
            stream.close()


def test_five_num_cores_processes_then_a_sixth_fails_naming_the_holders(inf1):
    env, procs = inf1
    env = dict(env, NEURON_RT_NUM_CORES="3")
    got = []
    for _ in range(5):
        p, result = start(env)
        procs.append(p)
        got.append(result["cores"])
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]]
    sixth = subprocess.run([sys.executable, "-c", HOLDER], env=env, input="", capture_output=True, text=True)
    assert json.loads(sixth.stdout)["status"] == 4                      # NRT_RESOURCE
    err = sixth.stderr
    assert "NRT:nrt_allocate_neuron_cores" in err
    assert "Logical Neuron Core(s) not available - Requested:3 Available:1" in err
    for p in procs:
        assert f"held by PID {p.pid}" in err


def test_visible_core_ranges_side_by_side_and_an_overlap_fails(inf1):
    env, procs = inf1
    for rng, cores in (("0-2", [0, 1, 2]), ("3-5", [3, 4, 5]), ("6-8", [6, 7, 8])):
        p, result = start(dict(env, NEURON_RT_VISIBLE_CORES=rng))
        procs.append(p)
        assert result == {"status": 0, "cores": cores}
    overlap = subprocess.run([sys.executable, "-c", HOLDER], env=dict(env, NEURON_RT_VISIBLE_CORES="5-6"),
                             input="", capture_output=True, text=True)
    assert json.loads(overlap.stdout)["status"] == 4
    assert "Requested:lnc5-lnc6" in overlap.stderr and f"held by PID {procs[1].pid}" in overlap.stderr


def test_sigkill_frees_the_cores_at_once(inf1):
    env, procs = inf1
    first, result = start(dict(env, NEURON_RT_VISIBLE_CORES="0-15"))
    procs.append(first)
    assert result["status"] == 0
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    second, result = start(dict(env, NEURON_RT_VISIBLE_CORES="0-15"))
    procs.append(second)
    assert result == {"status": 0, "cores": list(range(16))}


def test_ls_shows_the_processes_holding_cores(inf1):
    env, procs = inf1
    holder, _ = start(dict(env, NEURON_RT_VISIBLE_CORES="4-6"))
    procs.append(holder)
    ls = subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "ls", "-j"], env=env,
                        capture_output=True, text=True, check=True)
    devices = json.loads(ls.stdout)
    pids = {d["neuron_device"]: [p["pid"] for p in d["neuron_processes"]] for d in devices}
    assert pids[1] == [holder.pid] and pids[0] == [] and pids[2] == []   # cores 4-6 live on device 1
    version = devices[1]["neuron_processes"][0]["neuron_runtime_version"]
    assert version.startswith("2.")
    table = subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "ls", "-a"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(holder.pid) in table and "RUNTIME" in table
