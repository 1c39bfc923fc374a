"""docs/tutorial.md's drawings: the script regenerates them and what they show matches the checked-in files
and the placement guide (which model sits on which NeuronCore)."""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from tests.conftest import REPO

pytest.importorskip("matplotlib")
IMAGES = REPO / "docs" / "images"


def shapes(svg: str) -> set[str]:
    """The ids of what a drawing shows, pids replaced (they differ from run to run)."""
    found = re.findall(r'id="((?:core|process|group|model|bank|exec|host-work|enqueue)-[^"]*)"', svg)
    return {re.sub(r"^(process|group)-\d+", r"\1-P", i) for i in found}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_tutorial_images", REPO / "docs" / "make_tutorial_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("images")
    from neuron_sim.testing import emulate
    with emulate():
        shown = module.main(out)
    return out, shown


def test_the_script_reproduces_the_checked_in_drawings(regenerated):
    out, _ = regenerated
    assert (out / "scenes.json").read_text() == (IMAGES / "scenes.json").read_text()
    drawings = sorted(p.name for p in IMAGES.glob("*.svg"))
    assert drawings == sorted(p.name for p in out.glob("*.svg"))
    for name in drawings:
        assert shapes((out / name).read_text()) == shapes((IMAGES / name).read_text()), name


def test_the_drawings_show_the_placement_guide(regenerated):
    _, shown = regenerated
    models = {name: [p["models"] for p in scene["processes"]] for name, scene in shown.items() if "processes" in scene}
    cores = {name: [p["cores"] for p in scene["processes"]] for name, scene in shown.items() if "processes" in scene}
    assert models["default"] == [{"m0": [0], "m1": [1]}] and cores["default"] == [list(range(8))]
    assert models["num_cores"] == [{"m0": [0], "m1": [1]}] and cores["num_cores"] == [[0, 1]]
    assert models["visible_cores"] == [{"m0": [4], "m1": [5]}] and cores["visible_cores"] == [[4, 5]]
    assert models["overlapping_models"] == [{"m0": [0], "m1": [0, 1], "m2": [1]}]
    assert models["multiple_processes"] == [{"m0": [0], "m1": [1]}, {"m0": [2], "m1": [3]}]
    assert cores["multiple_processes"] == [[0, 1], [2, 3]]
    assert models["groups_3_4_1"] == [{"m0": [0, 1, 2], "m1": [3, 4, 5, 6], "m2": [7]}]
    assert shown["groups_3_4_1"]["processes"][0]["groups"] == [[0, 1, 2], [3, 4, 5, 6], [7]]
    assert models["groups_overlapping"] == [{"m0": [0, 1], "m1": [2, 3], "m2": [0], "m3": [2], "m4": [0]}]
    assert models["explicit_placement"] == [{"m0": [0, 1], "m1": [2, 3], "m2": [0, 1, 2], "m3": [3]}]


def test_the_svg_shows_each_model_on_its_cores(regenerated):
    out, _ = regenerated
    overlap = shapes((out / "placement_overlapping_models.svg").read_text())
    assert {i for i in overlap if i.startswith("model-")} == {"model-m0-nc0", "model-m1-nc0-1", "model-m2-nc1"}
    procs = shapes((out / "placement_multiple_processes.svg").read_text())
    assert {i for i in procs if i.startswith("model-")} == {"model-m0-nc0", "model-m1-nc1", "model-m0-nc2",
                                                            "model-m1-nc3"}
    groups = shapes((out / "placement_groups_3_4_1.svg").read_text())
    assert {i for i in groups if i.startswith("group-")} == {"group-P-ncg0", "group-P-ncg1", "group-P-ncg2"}
    timeline = shapes((out / "async_pipelining.svg").read_text())
    assert sum(i.startswith("exec-") for i in timeline) == 6 and sum(i.startswith("host-work-") for i in timeline) == 6
    memory = shapes((out / "memory_multiple_processes.svg").read_text())
    assert {"bank-nd0-hbm0-runtime", "bank-nd0-hbm1-runtime"} <= memory


def test_tutorial_links_every_drawing():
    text = (REPO / "docs" / "tutorial.md").read_text()
    for svg in IMAGES.glob("*.svg"):
        assert f"images/{svg.name}" in text, svg.name
    assert json.loads((IMAGES / "scenes.json").read_text())
