"""Files that are not files (issue 9 §7): devices, FIFOs and failing log files as topology or log locations
give a clean status and log line, never a hang or an escaped OSError, and leave nothing for the next init."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from neuron_sim import nrt

pytestmark = pytest.mark.timeout(60)

PROBE = """
from neuron_sim import nrt
print("init", nrt.nrt_init())
print("info", nrt.nrt_get_instance_info()[0])
nrt.nrt_close()
print("again", nrt.nrt_init())
"""


def run_probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    """A real process (a blocking open would hang it, caught by the timeout) running init twice."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_topology_that_is_not_a_regular_file_is_nrt_invalid_without_blocking(tmp_path, target: str) -> None:
    if target == "fifo":
        target = str(tmp_path / "topo.json")
        os.mkfifo(target)
    proc = run_probe({"NEURON_SIM_TOPOLOGY": target, "NEURON_SIM_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["init", "2", "info", "2", "again", "2"]
    assert f"must be a regular file, {target} is not" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("target", ["/dev/full", "fifo"])
def test_a_log_location_that_is_not_a_regular_file_falls_back_to_the_console(tmp_path, target: str) -> None:
    if target == "fifo":
        target = str(tmp_path / "log")
        os.mkfifo(target)
    proc = run_probe({"NEURON_RT_LOG_LOCATION_NRT": target, "NEURON_RT_LOG_LEVEL": "INFO",
                      "NEURON_SIM_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["init", "0", "info", "0", "again", "0"]
    assert f"cannot open log file {target}" in proc.stderr and "logging to console" in proc.stderr
    assert "Traceback" not in proc.stderr and "nrt_init" in proc.stderr


def test_a_log_file_whose_writes_fail_falls_back_to_the_console(monkeypatch, capsys, tmp_path) -> None:
    from neuron_sim import nrtlog
    log = tmp_path / "nrt.log"
    monkeypatch.setenv("NEURON_RT_LOG_LOCATION_NEFF", str(log))
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    sink = nrtlog._current().sinks["file:" + str(log)]
    sink.handle.close()
    sink.handle = open("/dev/full", "w")               # every write now fails with ENOSPC
    assert nrt.nrt_load(b"not a neff")[0] == nrt.NRT_INVALID
    err = capsys.readouterr().err
    assert "writing log file" in err and "logging to console" in err and "Invalid NEFF data size" in err
    nrt.nrt_close()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS


def test_instance_info_before_init_with_an_unknown_instance_type_is_a_status(monkeypatch, capsys) -> None:
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn9.huge")
    assert nrt.nrt_get_instance_info() == (nrt.NRT_INVALID, None)
    assert "unknown instance type" in capsys.readouterr().err
