"""The library across processes: a ctypes client, core contention with Python processes, neuron-sim run/env."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuron_sim.hardware.select import select_machine
from neuron_sim.runtime.reservation import default_state_dir, list_holders
from tests.clib.conftest import HERE, run_program
from tests.clib.test_programs import mlp_reference
from tests.conftest import NEFFS

CLI = [sys.executable, "-m", "neuron_sim.cli.main"]


@pytest.fixture
def cli_env(libnrt):
    """The environment of a user whose cache already holds the library (no rebuild in the test)."""
    return {**os.environ, "NEURON_SIM_CACHE_DIR": str(libnrt.parent.parent)}


def test_ctypes_client_runs_a_sample_neff_through_neuron_sim_run(cli_env, tmp_path):
    x = np.random.default_rng(11).standard_normal((1, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_program([*CLI, "run", "--instance-type", "trn1.2xlarge", "--", sys.executable,
                        HERE / "ctypes_client.py", NEFFS / "mlp_trn1.neff", tmp_path / "x.npy", tmp_path / "y.npy"],
                       cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), mlp_reference("mlp_trn1", x), rtol=1e-5, atol=1e-5)


PY_HOLDER = """
import sys
from neuron_sim import nrt
status = nrt.nrt_init(1, "", "")
visible = nrt.nrt_get_visible_nc_count()[1] if status == 0 else 0
print(f"init={status} visible={visible}", flush=True)
if status == 0:
    sys.stdin.read()
    nrt.nrt_close()
    print("closed")
"""


def _start(kind: str, programs, env: dict) -> subprocess.Popen:
    cmd = [programs("hold_cores.c", "-lnrt")] if kind == "C" else [sys.executable, "-c", PY_HOLDER]
    return subprocess.Popen([str(c) for c in cmd], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("holder, contender", [("C", "C"), ("C", "Python"), ("Python", "C")])
def test_c_and_python_processes_contend_for_the_same_cores(programs, c_env, holder, contender):
    """The library reserves cores through the same lock files: a C holder blocks Python and the reverse."""
    env = c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_VISIBLE_CORES="1")
    first = _start(holder, programs, env)
    try:
        assert first.stdout.readline().strip() == "init=0 visible=1"
        machine = select_machine("trn1.2xlarge")
        holders = list_holders(default_state_dir(machine, env), machine)
        assert [(h.pid, h.physical_cores) for h in holders] == [(first.pid, (1,))]
        second = _start(contender, programs, env)
        out, err = second.communicate(timeout=60)
        assert out.strip() == "init=4 visible=0"                      # NRT_RESOURCE, as between Python processes
        assert re.search(r"ERROR +NRT:nrt_allocate_neuron_cores +Logical Neuron Core\(s\) not available", err)
        assert f"pid {first.pid}" in err or str(first.pid) in err    # the holder is named
        free = _start(contender, programs, c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge",
                                                 NEURON_RT_VISIBLE_CORES="0"))
        out, _ = free.communicate("", timeout=60)
        assert out.splitlines()[0] == "init=0 visible=1"             # the other core is still free
    finally:
        out, _ = first.communicate("", timeout=60)
    assert out.strip() == "closed"
    assert list_holders(default_state_dir(machine, env), machine) == []


def test_a_killed_c_program_frees_its_cores(programs, c_env):
    env = c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge")
    first = _start("C", programs, env)
    assert first.stdout.readline().strip() == "init=0 visible=2"
    first.kill()
    first.communicate()
    second = _start("Python", programs, env)
    out, _ = second.communicate("", timeout=60)
    assert out.splitlines()[0] == "init=0 visible=2"


def test_run_passes_exit_status_and_signals_through(cli_env):
    assert subprocess.run([*CLI, "run", "--", "sh", "-c", "exit 7"], env=cli_env).returncode == 7
    killed = subprocess.run([*CLI, "run", "--", "sh", "-c", "kill -TERM $$"], env=cli_env)
    assert killed.returncode == -signal.SIGTERM
    missing = subprocess.run([*CLI, "run", "--", "no-such-program-xyz"], env=cli_env, capture_output=True, text=True)
    assert missing.returncode == 127 and "no-such-program-xyz: command not found" in missing.stderr
    empty = subprocess.run([*CLI, "run"], env=cli_env, capture_output=True, text=True)
    assert empty.returncode == 2 and "no program given" in empty.stderr


def test_run_sets_the_emulator_variables_and_the_library_first(cli_env, libnrt, tmp_path):
    env = {**cli_env, "LD_LIBRARY_PATH": "/opt/other"}
    proc = subprocess.run([*CLI, "run", "--instance-type", "inf2.xlarge", "--state-dir", str(tmp_path / "s"), "--",
                           "sh", "-c", 'echo "$NEURON_SIM_INSTANCE_TYPE|$NEURON_SIM_STATE_DIR|$LD_LIBRARY_PATH"'],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"inf2.xlarge|{tmp_path / 's'}|{libnrt}:/opt/other"
    bad = subprocess.run([*CLI, "run", "--instance-type", "trn9.huge", "--", "true"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown instance type; accepted: inf1.xlarge" in bad.stderr


def test_an_unmodified_program_builds_and_runs_inside_neuron_sim_run(cli_env, tmp_path):
    """``cc app.c -lnrt`` with no -I/-L flags, then the program, both under ``neuron-sim run``."""
    exe = tmp_path / "first_app"
    build = subprocess.run([*CLI, "run", "--", "cc", "-std=c11", "-D_DEFAULT_SOURCE", "-o", str(exe),
                            str(HERE / "first_app.c"), "-lnrt"], env=cli_env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    proc = run_program([*CLI, "run", "--instance-type", "trn1.2xlarge", "--", exe, NEFFS / "mlp_trn1.neff",
                        tmp_path], cli_env)
    assert proc.returncode == 0 and proc.stdout.endswith("done\n"), proc.stderr


def test_env_prints_the_same_settings_for_eval(cli_env, libnrt, tmp_path):
    plain = subprocess.run([*CLI, "env", "--instance-type", "trn1.2xlarge"], env=cli_env, capture_output=True,
                           text=True)
    assert plain.returncode == 0
    lines = dict(line.split("=", 1) for line in plain.stdout.splitlines())
    assert lines["NEURON_SIM_INSTANCE_TYPE"] == "trn1.2xlarge"
    assert lines["LD_LIBRARY_PATH"].split(":")[0] == str(libnrt)
    assert lines["CPATH"].split(":")[0] == str(libnrt / "include")
    state = tmp_path / "dir with 'quotes'"
    script = 'eval "$("$@")" && echo "$NEURON_SIM_INSTANCE_TYPE|$NEURON_SIM_STATE_DIR|${LD_LIBRARY_PATH%%:*}"'
    proc = subprocess.run(["sh", "-c", script, "sh", *CLI, "env", "--shell", "--instance-type", "inf2.xlarge",
                           "--state-dir", str(state)], env=cli_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"inf2.xlarge|{state}|{libnrt}"


def test_run_puts_the_look_alike_tools_first_on_path(cli_env, libnrt, tmp_path):
    """``neuron-sim run -- neuron-ls -j`` finds the tool with only the system PATH and shows the chosen machine."""
    env = {**cli_env, "PATH": "/usr/bin:/bin"}                       # no virtual environment's bin on PATH
    proc = subprocess.run([*CLI, "run", "--instance-type", "inf2.xlarge", "--state-dir", str(tmp_path / "s"), "--",
                           "neuron-ls", "-j"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(proc.stdout)
    assert [(d["neuron_device"], d["nc_count"], d["memory_size"]) for d in devices] == [(0, 2, 32 * 2**30)]
    listed = subprocess.run([*CLI, "run", "--", "sh", "-c",
                             "for t in neuron-ls neuron-monitor neuron-top; do command -v $t; done"],
                            env=env, capture_output=True, text=True)
    assert listed.stdout.split() == [str(libnrt / "bin" / t) for t in ("neuron-ls", "neuron-monitor", "neuron-top")]
    shell = subprocess.run([*CLI, "env", "--shell"], env=env, capture_output=True, text=True)
    assert f"export PATH={libnrt / 'bin'}:/usr/bin:/bin\n" in shell.stdout
