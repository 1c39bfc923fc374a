"""``neuron-sim draw placement|memory``: drawings of live machines and scenario scripts, content asserted."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("matplotlib")

from neuron_sim.cli.main import main as cli  # noqa: E402
from neuron_sim.draw import render, scene  # noqa: E402
from tests.conftest import NEFFS  # noqa: E402


def ids(svg: str) -> set[str]:
    """Ids neuron_sim gives the shapes of a drawing (cores, processes, groups, models, banks)."""
    return set(re.findall(r'id="((?:core|process|group|model|bank)-[^"]*)"', svg))


SCENARIO = textwrap.dedent("""
    import os, neuron_sim
    from neuron_sim.neff.builder import NeffBuilder
    os.environ["NEURON_LOGICAL_NC_CONFIG"] = "1"
    os.environ["NEURON_RT_VISIBLE_CORES"] = "0-1"
    def neff(name, cores):
        b = NeffBuilder(name, target="v3")
        h = b.input("x", "float32", (4,))
        for c in range(cores):
            if c:
                b.next_core()
            h = b.relu(h)
        b.output("y", h)
        return b.build()
    rt = neuron_sim.Runtime().start()
    models = [rt.load(neff(name, n)) for name, n in (("m0", 1), ("m1", 2), ("m2", 1))]
""")


def test_scenario_script_placement_svg(tmp_path, capsys):
    """The guide's overlapping-models example: m0 on nc0, m1 on nc0-1, m2 on nc1."""
    script = tmp_path / "overlap.py"
    script.write_text(SCENARIO)
    out = tmp_path / "overlap.svg"
    assert cli(["draw", "placement", "--scenario", str(script), "--instance-type", "trn2.3xlarge",
                "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    svg = out.read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    shown = ids(svg)
    assert {i for i in shown if i.startswith("model-")} == {"model-m0-nc0", "model-m1-nc0-1", "model-m2-nc1"}
    assert {i for i in shown if i.startswith("core-")} == {f"core-nc{n}" for n in range(8)}
    assert {re.sub(r"process-\d+-", "process-", i) for i in shown if re.match(r"process-\d+-nc", i)} == {
        "process-nc0", "process-nc1"}
    assert ">m1<" in svg and ">nc7<" in svg                          # labels stay text


def test_live_machine_placement_and_memory(tmp_path):
    """Two real processes on one machine: each one's cores and models, and the HBM both hold."""
    state = tmp_path / "machine"
    env = {**os.environ, "NEURON_SIM_STATE_DIR": str(state), "NEURON_SIM_INSTANCE_TYPE": "inf2.24xlarge",
           "NEURON_RT_NUM_CORES": "2"}
    holder = ("import sys, neuron_sim\nfrom neuron_sim.runtime import interface\n"
              "rt = neuron_sim.Runtime().start()\nrt.load(sys.argv[1]); rt.load(sys.argv[1])\n"
              "interface.publish_state()\nprint('ready', flush=True)\nsys.stdin.read()\n")
    procs = []
    try:
        for _ in range(2):
            p = subprocess.Popen([sys.executable, "-c", holder, str(NEFFS / "mlp_inf2.neff")], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        base = ["--instance-type", "inf2.24xlarge", "--state-dir", str(state)]
        assert cli(["draw", "placement", *base, "-o", str(tmp_path / "p.svg")]) == 0
        assert cli(["draw", "memory", *base, "-o", str(tmp_path / "m.png")]) == 0
        assert cli(["draw", "memory", *base, "--format", "svg", "-o", str(tmp_path / "m.svg")]) == 0
    finally:
        for p in procs:
            p.communicate("")
    shown = ids((tmp_path / "p.svg").read_text())
    first, second = (p.pid for p in procs)
    assert {i for i in shown if i.startswith("process-") and "-nc" in i} == {
        f"process-{first}-nc0", f"process-{first}-nc1", f"process-{second}-nc2", f"process-{second}-nc3"}
    assert {i for i in shown if i.startswith("model-")} == {
        "model-mlp_inf2-nc0", "model-mlp_inf2-nc1", "model-mlp_inf2-nc2", "model-mlp_inf2-nc3"}
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    banks = ids((tmp_path / "m.svg").read_text())
    assert {"bank-nd0-hbm0-runtime", "bank-nd0-hbm0-model_code", "bank-nd1-hbm0-runtime"} <= banks


def test_memory_scene_adds_categories_of_every_process(tmp_path):
    from neuron_sim.testing import emulate
    import neuron_sim
    from neuron_sim.runtime import interface
    with emulate(instance_type="trn1.2xlarge") as machine:
        with neuron_sim.Runtime() as rt:
            rt.load(str(NEFFS / "mlp_trn1.neff"))
            interface.publish_state()
            drawn = scene.memory_scene(machine.machine_dir, machine.machine)
            used = rt.memory_stats(0)[0] + rt.memory_stats(1)[0]      # both cores share the bank
    (bank,) = drawn.banks
    assert bank.used == used                                      # one process: its bytes on the one bank
    assert set(bank.categories) >= {"runtime", "model_code", "dma_rings"}
    assert list(bank.processes.values())[0] >= bank.used          # the ledger reserves in chunks
    fig = render.memory_figure(drawn)
    assert render.render(fig, "svg") == render.render(render.memory_figure(drawn), "svg")   # reproducible


def test_groups_are_outlined():
    drawn = scene.PlacementScene("trn2.3xlarge", tuple(scene.CoreBox(n, 0, n) for n in range(4)), (
        scene.ProcessBox(42, "a", (0, 1, 2, 3), ((0, 1), (2, 3)),
                         (scene.ModelBox(1, "m0", (0, 1)), scene.ModelBox(2, "m1", (2, 3)))),))
    svg = render.render(render.placement_figure(drawn), "svg").decode()
    assert {"group-42-ncg0", "group-42-ncg1", "model-m0-nc0-1", "model-m1-nc2-3"} <= ids(svg)
    assert drawn.placement() == {"m0": (0, 1), "m1": (2, 3)}


@pytest.mark.parametrize("argv, message", [
    (["draw", "placement", "--scenario", "/no/such/script.py"], "does not exist"),
    (["draw", "placement", "-o", "x.gif"], "must be svg or png"),
])
def test_bad_arguments_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
