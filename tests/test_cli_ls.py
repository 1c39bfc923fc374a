"""``neuron-sim ls``: table and JSON output against the seed tables, process columns, CLI errors."""
from __future__ import annotations

import importlib
import json
import sys
import types
from dataclasses import dataclass

import pytest

from neuron_sim.cli import ls
from neuron_sim.cli.main import main
from neuron_sim.hardware.catalog import build_machine
from neuron_sim.hardware.model import GiB
from neuron_sim.hardware.topology_file import machine_to_topology

try:  # tests/ on sys.path (rootdir-relative imports) or tests as a package
    from test_hardware_catalog import SEED, SEED_TYPES, parse_seed_tables
except ImportError:
    from tests.test_hardware_catalog import SEED, SEED_TYPES, parse_seed_tables

RUNTIME_PACKAGE = importlib.import_module("neuron_sim.runtime")   # the package (neuron_sim.runtime may be shadowed)
ENV_VARS = ("NEURON_SIM_INSTANCE_TYPE", "NEURON_SIM_TOPOLOGY", "NEURON_LOGICAL_NC_CONFIG")

SPEC_SAMPLE_HEADER = """\
+--------+--------+----------+--------+---------------+--------------+---------------+------+
| NEURON | NEURON |  NEURON  | NEURON |   CONNECTED   |     PCI      |      CPU      | NUMA |
| DEVICE | CORES  | CORE IDS | MEMORY |    DEVICES    |     BDF      |   AFFINITY    | NODE |
+--------+--------+----------+--------+---------------+--------------+---------------+------+
| 0      | 4      | 0-3      | 96 GB  | 12, 3, 4, 1   | 0000:cc:00.0 | 48-95,144-191 | 1    |"""


@dataclass
class FakeHolder:
    pid: int
    command: str
    runtime_version: str
    physical_cores: tuple[int, ...]


@pytest.fixture
def env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_env


@pytest.fixture
def no_reservation(monkeypatch):
    """Make ``from neuron_sim.runtime import reservation`` fail, as before that module exists."""
    monkeypatch.delattr(RUNTIME_PACKAGE, "reservation", raising=False)
    monkeypatch.setitem(sys.modules, "neuron_sim.runtime.reservation", None)


@pytest.fixture
def fake_reservation(monkeypatch):
    """A stand-in reservation module that reports the given holders."""
    module = types.ModuleType("neuron_sim.runtime.reservation")
    module.holders = []
    module.calls = []

    def list_holders(state_dir, machine):
        module.calls.append((state_dir, machine.instance_type))
        return list(module.holders)

    module.list_holders = list_holders
    module.default_state_dir = lambda machine: f"/state/{machine.instance_type}"
    monkeypatch.setattr(RUNTIME_PACKAGE, "reservation", module, raising=False)
    monkeypatch.setitem(sys.modules, "neuron_sim.runtime.reservation", module)
    return module


def table_rows(text: str) -> list[list[str]]:
    """Data rows of a box table (cells stripped), skipping borders and the two header lines."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def seed_tables():
    if not SEED.exists():
        pytest.skip(f"seed file {SEED} absent")
    return parse_seed_tables()


@pytest.mark.parametrize("instance_type", SEED_TYPES)
def test_ls_table_has_every_seed_row(seed_tables, env, no_reservation, capsys, instance_type):
    env(NEURON_SIM_INSTANCE_TYPE=instance_type)
    code, out, err = run_cli(capsys, "ls")
    assert (code, err) == (0, "")
    assert table_rows(out) == seed_tables[instance_type]


@pytest.mark.parametrize("instance_type", SEED_TYPES)
def test_ls_json_has_every_seed_row(seed_tables, env, no_reservation, capsys, instance_type):
    env(NEURON_SIM_INSTANCE_TYPE=instance_type)
    code, out, _ = run_cli(capsys, "ls", "-j")
    assert code == 0
    doc = json.loads(out)
    assert len(doc) == len(seed_tables[instance_type])
    for entry, row in zip(doc, seed_tables[instance_type]):
        device, cores, ids, memory, connected, bdf, affinity, numa = row
        low, high = map(int, ids.split("-"))
        assert entry == {
            "neuron_device": int(device),
            "bdf": bdf,
            "cpu_affinity": affinity,
            "numa_node": numa,
            "connected_to": [int(c) for c in connected.split(", ")],
            "nc_count": int(cores),
            **({"logical_neuroncore_config": 2} if instance_type.startswith("trn2") else {}),
            "memory_size": int(memory.split()[0]) * GiB,
            "neuroncore_ids": list(range(low, high + 1)),
            "neuron_processes": [],
        }


def test_trn2_output_matches_the_spec_sample_layout(env, no_reservation, capsys):
    env(NEURON_SIM_INSTANCE_TYPE="trn2.48xlarge")
    _, out, _ = run_cli(capsys, "ls")
    lines = out.splitlines()
    machine = build_machine("trn2.48xlarge")
    assert lines[:3] == ["instance-type: trn2.48xlarge", f"instance-id: {machine.instance_id}",
                         "logical-neuroncore-config: 2"]
    assert "\n".join(lines[3:8]) == SPEC_SAMPLE_HEADER
    assert lines[-1] == lines[3]                       # closing border
    assert len(lines) == 3 + 4 + 16 + 1
    _, out, _ = run_cli(capsys, "ls", "-j")
    assert json.loads(out)[0]["memory_size"] == 103079215104


def test_lnc1_on_trn2_shows_eight_cores_per_device(env, no_reservation, capsys):
    env(NEURON_SIM_INSTANCE_TYPE="trn2.48xlarge", NEURON_LOGICAL_NC_CONFIG="1")
    _, out, _ = run_cli(capsys, "ls")
    assert "logical-neuroncore-config: 1" in out
    rows = table_rows(out)
    assert [r[1:3] for r in rows[:2]] == [["8", "0-7"], ["8", "8-15"]]


def test_non_trn2_has_no_lnc_header_line(env, no_reservation, capsys):
    env(NEURON_SIM_INSTANCE_TYPE="inf1.xlarge")
    _, out, _ = run_cli(capsys, "ls")
    assert out.splitlines()[:2] == ["instance-type: inf1.xlarge",
                                    f"instance-id: {build_machine('inf1.xlarge').instance_id}"]
    assert "logical-neuroncore-config" not in out
    assert table_rows(out) == [["0", "4", "0-3", "8 GB", "", "0000:10:1b.0", "0-3", "0"]]


def test_default_machine_is_trn1_32xlarge(env, no_reservation, capsys):
    _, out, _ = run_cli(capsys, "ls")
    assert out.startswith("instance-type: trn1.32xlarge\n")


def test_topology_file_from_environment(env, no_reservation, capsys, tmp_path):
    doc = machine_to_topology(build_machine("inf2.24xlarge"))
    doc["instance_type"] = "inf2.lab"
    doc["devices"][0]["memory_gib"] = 0.5
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(doc))
    env(NEURON_SIM_TOPOLOGY=str(path), NEURON_SIM_INSTANCE_TYPE="trn2.48xlarge")
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    assert out.startswith("instance-type: inf2.lab\n")
    assert table_rows(out)[0][3] == "512 MB"
    assert len(table_rows(out)) == 6


@pytest.mark.parametrize("variables,fragments", [
    ({"NEURON_SIM_INSTANCE_TYPE": "trn9.huge"},
     ["NEURON_SIM_INSTANCE_TYPE=trn9.huge", "unknown instance type", "trn1.32xlarge", "trn2.48xlarge"]),
    ({"NEURON_LOGICAL_NC_CONFIG": "two"}, ["NEURON_LOGICAL_NC_CONFIG=two", "must be 1 or 2"]),
    ({"NEURON_LOGICAL_NC_CONFIG": "2"}, ["NEURON_LOGICAL_NC_CONFIG=2", "LNC 2 needs NeuronCore-v3"]),
    ({"NEURON_SIM_TOPOLOGY": "/nonexistent/t.json"}, ["NEURON_SIM_TOPOLOGY=/nonexistent/t.json", "cannot read"]),
])
def test_bad_settings_exit_2_with_a_message(env, no_reservation, capsys, variables, fragments):
    env(**variables)
    code, out, err = run_cli(capsys, "ls")
    assert code == 2
    assert out == ""
    assert err.startswith("neuron-sim ls: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_bad_arguments_and_help(capsys):
    assert main(["ls", "--bogus"]) == 1                 # neuron-ls: the message on stdout, exit 1
    out, err = capsys.readouterr()
    assert "unrecognized arguments: --bogus" in out and err == ""
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["ls", "--help"]) == 0
    assert "--json-output" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Process columns (pure renderers with fake holders)

def test_render_table_process_rows_and_separators():
    machine = build_machine("trn1.32xlarge")
    holders = [
        FakeHolder(4242, "python3 /opt/app/very_long_training_script.py --epochs 3", "2.22.14.0", (0, 1, 2)),
        FakeHolder(77, "bench", "2.22.14.0", (1,)),
        FakeHolder(900, "serve", "2.21.0.0", (31,)),
    ]
    text = ls.render_table(machine, holders, show_processes=True)
    lines = text.splitlines()
    assert "| PID  | COMMAND              | RUNTIME   |" not in text   # headers are centered
    assert [c.strip() for c in lines[3].strip("|").split("|")][-4:] == ["PID", "COMMAND", "RUNTIME", "PROCESS"]
    assert [c.strip() for c in lines[4].strip("|").split("|")][-4:] == ["", "", "VERSION", "TAG"]
    rows = table_rows(text)
    # device 0: two processes (ordered by pid), the second row has blank device cells
    assert rows[0][:2] == ["0", "2"] and rows[0][8:] == ["77", "bench", "2.22.14.0", "77"]
    assert rows[1][:8] == [""] * 8 and rows[1][8:11] == ["4242", "python3 /opt/app/...", "2.22.14.0"]
    # device 1: the holder of physical core 2; device 2: nobody; device 15: pid 900
    assert rows[2][0] == "1" and rows[2][8:11] == ["4242", "python3 /opt/app/...", "2.22.14.0"]
    assert rows[3][0] == "2" and rows[3][8:] == ["", "", "", ""]
    assert rows[-1][0] == "15" and rows[-1][8:11] == ["900", "serve", "2.21.0.0"]
    border = lines[2]
    assert lines.count(border) == 2 + 15 + 1   # top, under the header, one between each device pair, bottom
    assert lines[8] == border                  # after device 0's two rows


def test_render_table_without_processes_ignores_holders():
    machine = build_machine("inf2.xlarge")
    text = ls.render_table(machine, [FakeHolder(1, "x", "2.0", (0,))])
    assert "PID" not in text
    assert table_rows(text) == [["0", "2", "0-1", "32 GB", "", "0000:80:1e.0", "0-3", "0"]]


def test_render_json_processes_per_device_on_trn2():
    machine = build_machine("trn2.48xlarge")
    holder = FakeHolder(5, "python3 run.py", "2.23.1.0", (6, 7, 8))    # physical cores of devices 0 and 1
    doc = ls.render_json(machine, [holder])
    expected = [{"pid": 5, "command": "python3 run.py", "neuron_runtime_version": "2.23.1.0"}]
    assert doc[0]["neuron_processes"] == expected
    assert doc[1]["neuron_processes"] == expected
    assert all(d["neuron_processes"] == [] for d in doc[2:])


def test_cli_shows_processes_from_the_reservation_module(env, fake_reservation, capsys):
    env(NEURON_SIM_INSTANCE_TYPE="inf2.24xlarge")
    fake_reservation.holders = [FakeHolder(31337, "python3 infer.py", "2.22.14.0", (4, 5))]
    for flag in ("-a", "-w", "--show-all-procs"):
        code, out, _ = run_cli(capsys, "ls", flag)
        assert code == 0
        rows = table_rows(out)
        assert rows[2][0] == "2" and rows[2][8:] == ["31337", "python3 infer.py", "2.22.14.0", "31337"]
    _, out, _ = run_cli(capsys, "ls", "--json-output")
    assert json.loads(out)[2]["neuron_processes"][0]["pid"] == 31337
    assert fake_reservation.calls[0] == ("/state/inf2.24xlarge", "inf2.24xlarge")


def test_cli_without_reservation_module_shows_no_processes(env, no_reservation, capsys):
    env(NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge")
    code, out, _ = run_cli(capsys, "ls", "-a")
    assert code == 0
    assert table_rows(out) == [["0", "2", "0-1", "32 GB", "", "0000:10:1c.0", "0-7", "0", "", "", "", ""]]


@pytest.mark.parametrize("nbytes,text", [(32 * GiB, "32 GB"), (96 * GiB, "96 GB"), (8 * GiB, "8 GB"),
                                         (GiB // 2, "512 MB"), (1000, "1000 B")])
def test_format_memory(nbytes, text):
    assert ls.format_memory(nbytes) == text


def test_truncate_command():
    assert ls.truncate_command("short") == "short"
    assert ls.truncate_command("x" * 20) == "x" * 20
    assert ls.truncate_command("y" * 21) == "y" * 17 + "..."
