"""nrt_sys_trace_* and nrt_profile_* from a real compiled C program on libnrt.so.1."""
from __future__ import annotations

import json

from neuron_sim.runtime.trace import EVENT_TYPES, HARDWARE_EVENTS
from neuron_sim.tracing.profile import read_profile
from tests.clib.conftest import run_program
from tests.conftest import NEFFS


def test_c_program_traces_and_profiles(programs, c_env, tmp_path):
    exe = programs("sys_trace.c", "-lnrt")
    profile = tmp_path / "mlp.ntff"
    proc = run_program([exe, NEFFS / "mlp_trn1.neff", profile], c_env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"types {len(EVENT_TYPES)} first nc_exec_running"
    assert lines[1] == f"enabled {len(HARDWARE_EVENTS)}"
    written = int(lines[2].split()[1])
    assert lines[2] == f"written {written} strlen {written}"
    events = json.loads(lines[3].removeprefix("events "))["events"]
    got = [(e["event_type"], e["phase"], e["tracking_id"], e["lnc_idx"]) for e in events]
    assert got == [("nc_exec_running", "start", 1, 0), ("nc_exec_running", "stop", 1, 0),
                   ("timestamp_sync_point", "info", 1, 0),
                   ("nc_exec_running", "start", 2, 0), ("nc_exec_running", "stop", 2, 0),
                   ("timestamp_sync_point", "info", 2, 0)]
    t = [e["data"]["nc_timestamp_ns"] for e in events if e["event_type"] == "nc_exec_running"]
    assert t[0] > 0 and t[1] - t[0] == t[3] - t[2] > 0 and t[2] == t[1]      # after init's reset and the load
    assert lines[-1] == "done"
    doc = read_profile(str(profile))
    assert doc["model"]["name"] == "mlp_trn1" and len(doc["executions"]) == 2
    assert [r["duration_ns"] for r in doc["executions"]] == [t[1] - t[0]] * 2
    assert "ERROR   NRT:nrt_sys_trace_config_set_capture_enabled_for_event_type" in proc.stderr
    assert "ERROR   NRT:nrt_profile_stop" in proc.stderr and "never-started.json" in proc.stderr


def test_run_with_trace_writes_the_programs_timeline(libnrt, tmp_path):
    """``neuron-sim run --trace FILE -- CMD``: the program's runtime writes its Perfetto trace there."""
    import os
    import subprocess
    import sys
    code = ("from neuron_sim import nrt; nrt.nrt_init(); "
            f"nrt.nrt_load(open({str(NEFFS / 'mlp_trn1.neff')!r}, 'rb').read(), -1, -1); nrt.nrt_close()")
    env = {**os.environ, "NEURON_SIM_CACHE_DIR": str(libnrt.parent.parent)}
    env.pop("NEURON_SIM_TRACE", None)
    proc = subprocess.run([sys.executable, "-m", "neuron_sim.cli.main", "run", "--instance-type", "trn1.2xlarge",
                           "--trace", str(tmp_path / "run.json"), "--", sys.executable, "-c", code],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "run.json").read_text())
    assert [e["name"] for e in doc["traceEvents"] if e["ph"] == "X"] == ["load mlp_trn1", "unload mlp_trn1"]
