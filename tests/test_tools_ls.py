"""neuron-ls against the real samples (trn1.2xlarge JSON, inf1 table) and real runtime processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuron_sim.hardware.catalog import build_machine
from neuron_sim.hardware.topology_file import machine_to_topology

TESTS = Path(__file__).resolve().parent
SPEC_TOOLS = Path("/work/shared/spec/tools")
if not SPEC_TOOLS.exists():
    SPEC_TOOLS = TESTS.parent.parent / "shared" / "spec" / "tools"
LS_JSON = SPEC_TOOLS / "neuron-ls-j.trn1.2xlarge.json"
LS_INF1 = SPEC_TOOLS / "neuron-ls.inf1.txt"


def neuron_ls(env, *args):
    return subprocess.run([sys.executable, "-c", "import sys; from neuron_sim.cli.ls import main; sys.exit(main())",
                           *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_SIM_INSTANCE", "NEURON_SIM_TOPO"))}


def as_topology(tmp_path, instance_type, **device0):
    doc = machine_to_topology(build_machine(instance_type))
    doc["devices"][0].update(device0)
    path = tmp_path / f"{instance_type}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_trn1_2xlarge_json_key_by_key(env):
    if not LS_JSON.exists():
        pytest.skip(f"real sample absent: {LS_JSON}")
    real = json.loads(LS_JSON.read_text())
    proc = neuron_ls(dict(env, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge"), "-j")
    assert proc.returncode == 0 and not proc.stdout.endswith("\n")       # the real tool ends without a newline
    ours = json.loads(proc.stdout)
    assert len(ours) == len(real) == 1
    assert list(ours[0]) == list(real[0])                                # same keys in the same order
    # Instance-specific: the catalog's trn1.2xlarge is device 0 of the trn1.32xlarge table (PCI 10:1c.0 on
    # NUMA node 0); the real single-device VM shows its device at 00:1e.0 and exposes no NUMA node ("-1").
    instance_specific = {"bdf": ("0000:10:1c.0", "0000:00:1e.0"), "numa_node": ("0", "-1")}
    for key, value in real[0].items():
        if key in instance_specific:
            assert (ours[0][key], value) == instance_specific[key]
        else:
            assert (key, ours[0][key]) == (key, value)
            assert type(ours[0][key]) is type(value)


def test_trn1_2xlarge_json_byte_for_byte_with_the_real_pci_and_numa(env, tmp_path):
    if not LS_JSON.exists():
        pytest.skip(f"real sample absent: {LS_JSON}")
    topology = as_topology(tmp_path, "trn1.2xlarge", bdf="0000:00:1e.0", numa_node=-1)
    proc = neuron_ls(dict(env, NEURON_SIM_TOPOLOGY=topology), "--json-output")
    assert proc.returncode == 0
    assert proc.stdout == LS_JSON.read_text().rstrip("\n")


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_inf1_table_against_the_real_one(env, tmp_path):
    if not LS_INF1.exists():
        pytest.skip(f"real sample absent: {LS_INF1}")
    real = [line for line in LS_INF1.read_text().splitlines() if line.startswith(("+", "|"))]
    topology = as_topology(tmp_path, "inf1.xlarge", bdf="0000:00:1f.0")   # the real host's PCI address
    proc = neuron_ls(dict(env, NEURON_SIM_TOPOLOGY=topology))
    assert proc.returncode == 0
    ours = [line for line in proc.stdout.splitlines() if line.startswith(("+", "|"))]
    assert len(ours) == len(real) == 6                                   # border, 2 headers, border, 1 row, border
    # The real table is the Neuron 1.16 layout (4 columns); today's adds CORE IDS, CONNECTED DEVICES, CPU
    # AFFINITY and NUMA NODE. Every real column is there with the same header cells and the same value.
    real_cols = [" ".join(p).strip() for p in zip(_cells(real[1]), _cells(real[2]))]
    our_cols = [" ".join(p).strip() for p in zip(_cells(ours[1]), _cells(ours[2]))]
    real_row, our_row = dict(zip(real_cols, _cells(real[4]))), dict(zip(our_cols, _cells(ours[4])))
    assert real_row == {k: our_row[k] for k in real_cols}
    for line_real, line_ours in ((real[1], ours[1]), (real[2], ours[2]), (real[4], ours[4])):
        real_raw = line_real.split("|")[1:-1]
        ours_raw = dict(zip(our_cols, line_ours.split("|")[1:-1]))
        for col, raw in zip(real_cols, real_raw):
            assert ours_raw[col] == raw                                   # same padding and centring
    assert set(ours[0]) == set(real[0]) == {"+", "-"}


def test_no_device_exits_1_with_empty_stdout(env, tmp_path):
    doc = machine_to_topology(build_machine("inf2.xlarge"))
    doc["devices"] = []
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(doc))
    for args in ((), ("-j",)):
        proc = neuron_ls(dict(env, NEURON_SIM_TOPOLOGY=str(path)), *args)
        assert (proc.returncode, proc.stdout) == (1, "")
        assert "no Neuron device" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_flag_message_on_stdout(env):
    proc = neuron_ls(env, "--frobnicate")
    assert proc.returncode == 1 and proc.stderr == ""
    assert "unrecognized arguments: --frobnicate" in proc.stdout


def test_process_rows_show_tags_and_survive_newlines(env, tmp_path):
    env = dict(env, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_NUM_CORES="1")
    env["PYTHONPATH"] = str(TESTS.parent)
    script = "import sys\nsys.argv = ['tools_worker.py', '2']\nsys.path.insert(0, %r)\nimport tools_worker\ntools_worker.main()" % str(TESTS)
    workers = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=dict(env, NEURON_PROCESS_TAG=tag)) for tag in ("ingest", "")]
    try:
        for w in workers:
            assert w.stdout.readline()
        proc = neuron_ls(env, "-a")
        doc = json.loads(neuron_ls(env, "-j").stdout)
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
    lines = proc.stdout.splitlines()
    rows = [_cells(line) for line in lines if line.startswith("|")][2:]
    table = [line for line in lines if line.startswith(("|", "+"))]
    assert len(rows) == 2 and all(len(line) == len(table[0]) for line in table)
    assert [r[8] for r in rows] == [str(w.pid) for w in sorted(workers, key=lambda w: w.pid)]
    tags = {r[8]: r[11] for r in rows}
    assert tags == {str(workers[0].pid): "ingest", str(workers[1].pid): str(workers[1].pid)}   # default: pid
    assert all(len(r[9]) == 20 and r[9].endswith("...") for r in rows)  # newlines folded, cut at 20
    assert sorted(p["pid"] for p in doc[0]["neuron_processes"]) == sorted(w.pid for w in workers)
    assert all("\n" in p["command"] for p in doc[0]["neuron_processes"])   # JSON keeps the command as is


def test_topology_torus_and_link_list(env):
    proc = neuron_ls(dict(env, NEURON_SIM_INSTANCE_TYPE="trn1.32xlarge"), "-t")
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("*––►")]
    assert rows[0] == "*––►[  0 ]◄––►[  1 ]◄––►[  2 ]◄––►[  3 ]◄––*"
    assert rows[3] == "*––►[ 12 ]◄––►[ 13 ]◄––►[ 14 ]◄––►[ 15 ]◄––*"
    column = rows[0].index("0 ]")
    assert all(line[column] in "▲▼*" for line in lines if line.strip() and set(line.strip()) <= set("▲▼* "))
    assert lines[-1] == "        *––► = Wrap-around link"
    proc = neuron_ls(dict(env, NEURON_SIM_INSTANCE_TYPE="inf2.24xlarge"), "--topology")
    assert proc.stdout.splitlines()[-6:] == ["[ 0 ] ◄––► 1", "[ 1 ] ◄––► 0, 2", "[ 2 ] ◄––► 1, 3",
                                             "[ 3 ] ◄––► 2, 4", "[ 4 ] ◄––► 3, 5", "[ 5 ] ◄––► 4"]
