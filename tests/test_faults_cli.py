"""``neuron-sim faults add|list|clear``, and a running process of the machine picking the change up."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from neuron_sim.cli.main import main
from neuron_sim.runtime.faults import machine_state_dir

CHILD = textwrap.dedent('''
    import sys, time
    from neuron_sim import nrt
    from neuron_sim.neff.builder import NeffBuilder
    b = NeffBuilder("scale", target="v2"); x = b.input("x", "float32", (4,)); b.output("y", x * 2.0)
    assert nrt.nrt_init() == 0
    status, model = nrt.nrt_load(b.build(), 0, -1)
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    for s, n in ((ins, "x"), (outs, "y")):
        nrt.nrt_add_tensor_to_tensor_set(s, n, nrt.nrt_tensor_allocate(0, 0, 16, n)[1])
    print("READY", nrt.nrt_execute(model, ins, outs), flush=True)
    for wanted in sys.argv[1:]:                 # wait for each status in turn: "fail" then "ok"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = nrt.nrt_execute(model, ins, outs)
            if (status != 0) == (wanted == "fail"):
                print(wanted, nrt.nrt_get_status_as_str(status), flush=True)
                break
            time.sleep(0.002)
        else:
            print("TIMEOUT waiting for", wanted, flush=True)
    nrt.nrt_close()
''')


def cli(*args: str) -> None:
    exe = shutil.which("neuron-sim") or sys.executable
    argv = [exe, "faults", *args] if exe.endswith("neuron-sim") else [exe, "-m", "neuron_sim.cli.main", "faults", *args]
    done = subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")


def test_add_list_clear(trn1, capsys):
    assert main(["faults", "list"]) == 0
    assert capsys.readouterr().out == "no faults planned\n"
    assert main(["faults", "add", "execute", "--status", "NRT_TIMEOUT", "--nth", "3", "--core", "1"]) == 0
    assert main(["faults", "add", "device_lost", "--device", "0", "--sticky"]) == 0
    assert main(["faults", "add", "--plan", '[{"call": "load", "status": "NRT_FAILURE", "model": "m"}]']) == 0
    assert capsys.readouterr().out.splitlines() == [
        "added fault #1: execute -> NRT_TIMEOUT on call 3 core=1 one-shot",
        "added fault #2: device_lost -> NRT_HW_ERROR on call 1 device=0 sticky",
        "added fault #3: load -> NRT_FAILURE on call 1 model=m one-shot"]
    assert main(["faults", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["id"], f["call"], f["status"]) for f in listed] == [
        (1, "execute", "NRT_TIMEOUT"), (2, "device_lost", "NRT_HW_ERROR"), (3, "load", "NRT_FAILURE")]
    assert main(["faults", "clear", "2", "7"]) == 1
    out = capsys.readouterr()
    assert out.out == "removed 1 fault(s)\n" and "no such fault: #7" in out.err
    assert main(["faults", "clear"]) == 0
    assert "removed 2 fault(s); fallen-off devices reset" in capsys.readouterr().out
    assert main(["faults", "add", "execute", "--status", "NRT_TIMEOUT"]) == 0
    assert "added fault #4" in capsys.readouterr().out            # ids are never reused


def test_instance_type_option_selects_the_machine(trn1, capsys):
    assert main(["faults", "add", "init", "--instance-type", "inf2.xlarge"]) == 0
    assert (machine_state_dir(dict(os.environ, NEURON_SIM_INSTANCE_TYPE="inf2.xlarge")) / "faults.json").exists()
    assert main(["faults", "list"]) == 0
    assert "no faults planned" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["faults", "add", "execute"], "'status' is missing for call execute; expected one of NRT_TIMEOUT"),
    (["faults", "add", "load", "--status", "NRT_TIMEOUT"], "cannot be injected into load"),
    (["faults", "add", "execute", "--status", "NRT_TIMEOUT", "--probability", "2"], "must be a number in (0, 1]"),
    (["faults", "add"], "give a call"),
    (["faults", "add", "--plan", "[{"], "not valid JSON"),
])
def test_bad_input_is_one_line_and_exit_2(trn1, capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["faults", "list"]) == 0
    assert "no faults planned" in capsys.readouterr().out         # nothing was written


@pytest.mark.timeout(120)
def test_running_process_sees_faults_add_and_clear(trn1, tmp_path):
    """A real process executing in a loop fails once another process adds a fault, recovers after clear."""
    log = open(tmp_path / "child.log", "w+")          # a file: a sticky fault logs faster than a pipe drains
    child = subprocess.Popen([sys.executable, "-c", CHILD, "fail", "ok", "fail", "ok"], env=dict(os.environ),
                             stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert child.stdout.readline().split() == ["READY", "0"]
        cli("add", "execute", "--status", "NRT_EXEC_HW_ERR_NC_UE", "--sticky")
        assert child.stdout.readline().split() == ["fail", "NRT_EXEC_HW_ERR_NC_UE"]
        cli("clear")
        assert child.stdout.readline().split() == ["ok", "NRT_SUCCESS"]
        cli("add", "device_lost", "--device", "0")        # the operator pulls the cable
        assert child.stdout.readline().split() == ["fail", "NRT_HW_ERROR"]
        cli("clear")                                       # ... and resets the device
        assert child.stdout.readline().split() == ["ok", "NRT_SUCCESS"]
        assert child.wait(60) == 0
    finally:
        child.kill()
        child.wait()
    err = (tmp_path / "child.log").read_text()
    log.close()
    assert "[neuron_sim injected fault #1: execute -> NRT_EXEC_HW_ERR_NC_UE" in err
    assert "[neuron_sim injected fault #2: device_lost" in err
