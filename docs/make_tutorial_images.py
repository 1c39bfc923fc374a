"""Regenerate the drawings of docs/tutorial.md: every picture there is produced by this script from the runtime.

    python docs/make_tutorial_images.py [OUT_DIR]      # default: docs/images

Each scenario of the placement guide is one function that sets up a private 8-NeuronCore machine (a
trn2.3xlarge with NEURON_LOGICAL_NC_CONFIG=1), loads its models and returns the scene the drawing shows.
``scenes.json`` records what every drawing shows (which model sits on which cores, which process holds
which cores); tests/test_tutorial.py runs this script and compares its output with the checked-in files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import neuron_sim
from neuron_sim.draw import render, scene
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import interface
from neuron_sim.testing import emulate

HERE = Path(__file__).resolve().parent
MACHINE = {"NEURON_LOGICAL_NC_CONFIG": "1", "NEURON_PROCESS_TAG": "app"}
INSTANCE = "trn2.3xlarge"


def pipeline_neff(name: str, cores: int) -> bytes:
    """A small model compiled for ``cores`` NeuronCores (a NeuronCore pipeline when cores > 1)."""
    b = NeffBuilder(name, target="v3")
    h = b.input("x", "float32", (1, 64))
    for core in range(cores):
        if core:
            b.next_core()
        h = b.relu(h * 2.0)
    b.output("y", h)
    return b.build()


def _draw(env: dict[str, str], loads: Callable[[neuron_sim.Runtime], None], title: str) -> scene.PlacementScene:
    with emulate(instance_type=INSTANCE, env={**MACHINE, **env}) as machine:
        with neuron_sim.Runtime() as rt:
            loads(rt)
            interface.publish_state()
            return scene.placement_scene(machine.machine_dir, machine.machine, title)


def default() -> scene.PlacementScene:
    """No configuration: the process takes every NeuronCore; two 1-core models land on nc0 and nc1."""
    return _draw({}, lambda rt: [rt.load(pipeline_neff(m, 1)) for m in ("m0", "m1")], "Default")


def num_cores() -> scene.PlacementScene:
    """NEURON_RT_NUM_CORES=2: the process takes nc0-nc1 only."""
    return _draw({"NEURON_RT_NUM_CORES": "2"}, lambda rt: [rt.load(pipeline_neff(m, 1)) for m in ("m0", "m1")],
                 "NEURON_RT_NUM_CORES=2")


def visible_cores() -> scene.PlacementScene:
    """NEURON_RT_VISIBLE_CORES=4-5: the process takes exactly nc4-nc5."""
    return _draw({"NEURON_RT_VISIBLE_CORES": "4-5"},
                 lambda rt: [rt.load(pipeline_neff(m, 1)) for m in ("m0", "m1")], "NEURON_RT_VISIBLE_CORES=4-5")


def overlapping_models() -> scene.PlacementScene:
    """VISIBLE_CORES=0-1 and a 2-core model between two 1-core ones: models share cores, evenly."""
    return _draw({"NEURON_RT_VISIBLE_CORES": "0-1"},
                 lambda rt: [rt.load(pipeline_neff(m, n)) for m, n in (("m0", 1), ("m1", 2), ("m2", 1))],
                 "Overlapping models (NEURON_RT_VISIBLE_CORES=0-1)")


def groups_3_4_1() -> scene.PlacementScene:
    """NEURONCORE_GROUP_SIZES=3,4,1: one group per model, each model on its group."""
    return _draw({"NEURONCORE_GROUP_SIZES": "3,4,1"},
                 lambda rt: [rt.load(pipeline_neff(m, n)) for m, n in (("m0", 3), ("m1", 4), ("m2", 1))],
                 "NeuronCore groups (NEURONCORE_GROUP_SIZES=3,4,1)")


def groups_overlapping() -> scene.PlacementScene:
    """NEURONCORE_GROUP_SIZES=2,2 and five models: placement strictly follows the groups (m4 lands on nc0)."""
    return _draw({"NEURONCORE_GROUP_SIZES": "2,2"},
                 lambda rt: [rt.load(pipeline_neff(m, n))
                             for m, n in (("m0", 2), ("m1", 2), ("m2", 1), ("m3", 1), ("m4", 1))],
                 "Models loaded into NeuronCore groups (NEURONCORE_GROUP_SIZES=2,2)")


def explicit_placement() -> scene.PlacementScene:
    """NEURON_RT_NUM_CORES=4 and neuron_cores_context: each model where the code says, in any load order."""
    def loads(rt: neuron_sim.Runtime) -> None:
        for start, name, cores in ((2, "m1", 2), (0, "m2", 3), (0, "m0", 2), (3, "m3", 1)):
            with neuron_sim.neuron_cores_context(start):
                rt.load(pipeline_neff(name, cores))
    return _draw({"NEURON_RT_NUM_CORES": "4"}, loads, "Explicit placement (neuron_cores_context, NUM_CORES=4)")


CHILD = """
import sys, neuron_sim
from neuron_sim.runtime import interface
rt = neuron_sim.Runtime().start()
for path in sys.argv[1:]:
    rt.load(path)
interface.publish_state()
print("ready", flush=True)
sys.stdin.read()
rt.close()
"""


def multiple_processes() -> tuple[scene.PlacementScene, scene.MemoryScene]:
    """The same script run twice with NEURON_RT_NUM_CORES=2: each process owns two cores of its own."""
    with emulate(instance_type=INSTANCE, env={**MACHINE, "NEURON_RT_NUM_CORES": "2"}) as machine, \
            tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name in ("m0", "m1"):
            paths.append(os.path.join(tmp, f"{name}.neff"))
            Path(paths[-1]).write_bytes(pipeline_neff(name, 1))
        children = []
        try:
            for tag in ("first", "second"):        # one after the other: the first takes nc0-nc1
                child = subprocess.Popen([sys.executable, "-c", CHILD, *paths], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True,
                                         env={**machine.environ(), "NEURON_PROCESS_TAG": tag})
                children.append(child)
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"scenario process {tag} did not start")
            placed = scene.placement_scene(machine.machine_dir, machine.machine, "Multiple processes "
                                           "(NEURON_RT_NUM_CORES=2, run twice)")
            memory = scene.memory_scene(machine.machine_dir, machine.machine, "HBM of the two processes")
        finally:
            for child in children:
                child.communicate("")
    return placed, memory


PLACEMENT_SCENARIOS: dict[str, Callable[[], scene.PlacementScene]] = {
    "default": default, "num_cores": num_cores, "visible_cores": visible_cores,
    "overlapping_models": overlapping_models, "groups_3_4_1": groups_3_4_1, "groups_overlapping": groups_overlapping,
    "explicit_placement": explicit_placement,
}


def describe(drawn: scene.PlacementScene) -> dict:
    """What a placement drawing shows, independent of pids: processes in order, their cores and models."""
    return {"processes": [{"tag_index": n, "cores": list(p.cores), "groups": [list(g) for g in p.groups],
                           "models": {m.label: list(m.cores) for m in p.models}}
                          for n, p in enumerate(sorted(drawn.processes, key=lambda p: min(p.cores, default=-1)))]}


def async_timeline(out_dir: Path) -> dict:
    """The async pipelining example on the virtual clock, traced; returns the slices the picture shows."""
    from neuron_sim.tracing.timeline import pipelining_trace, timeline_figure
    events, info = pipelining_trace()
    render.save(timeline_figure(events, "Async pipelining: host work overlaps device time"),
                out_dir / "async_pipelining.svg")
    return info


def main(out_dir: Path = HERE / "images") -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = {}
    for name, scenario in PLACEMENT_SCENARIOS.items():
        drawn = scenario()
        render.save(render.placement_figure(drawn), out_dir / f"placement_{name}.svg")
        shown[name] = describe(drawn)
    placed, memory = multiple_processes()
    render.save(render.placement_figure(placed), out_dir / "placement_multiple_processes.svg")
    render.save(render.memory_figure(memory), out_dir / "memory_multiple_processes.svg")
    shown["multiple_processes"] = describe(placed)
    shown["async_pipelining"] = async_timeline(out_dir)
    lines = [f"  {json.dumps(name)}: {json.dumps(value, sort_keys=True)}" for name, value in sorted(shown.items())]
    (out_dir / "scenes.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return shown


if __name__ == "__main__":
    np.seterr(all="ignore")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "images")
