"""NEURON_SIM_TOPOLOGY files: round trip of every catalog machine, field-named errors, fuzzing."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuron_sim.hardware.catalog import INSTANCE_TYPES, LncError, build_machine
from neuron_sim.hardware.model import GiB
from neuron_sim.hardware.topology_file import (
    TopologyError, load_topology, machine_to_topology, parse_topology,
)


def write(tmp_path, doc, name="topo.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def small_doc() -> dict:
    return {
        "instance_type": "trn2.custom",
        "generation": "v3",
        "devices": [
            {"cores": 8, "memory_gib": 96, "hbm_banks": 4, "connected": [1], "bdf": "0000:cc:00.0",
             "cpu_affinity": "0-7", "numa_node": 0},
            {"cores": 8, "memory_gib": 96, "hbm_banks": 4, "connected": [0], "bdf": "0000:b5:00.0",
             "cpu_affinity": "8-15", "numa_node": 1},
        ],
    }


@pytest.mark.parametrize("instance_type", INSTANCE_TYPES)
def test_every_catalog_machine_round_trips_through_a_file(tmp_path, instance_type):
    lncs = (1, 2) if instance_type.startswith("trn2") else (1,)
    for lnc in lncs:
        machine = build_machine(instance_type, lnc)
        path = write(tmp_path, machine_to_topology(machine), f"{lnc}.json")
        loaded = load_topology(path)
        assert loaded.source == str(path)
        assert dataclasses.replace(loaded, source="catalog") == machine


def test_lnc_argument_wins_over_the_file(tmp_path):
    path = write(tmp_path, machine_to_topology(build_machine("trn2.48xlarge", 2)))
    assert load_topology(path).total_cores == 64
    assert load_topology(path, lnc=1).total_cores == 128


def test_defaults_of_a_minimal_document():
    doc = {"instance_type": "trn1.32xlarge", "generation": "v2",
           "devices": [{"cores": 2, "memory_gib": 0.5, "bdf": "0000:10:1C.0", "cpu_affinity": "0-3"}]}
    machine = parse_topology(doc)
    dev = machine.devices[0]
    assert (machine.family, machine.size, machine.lnc) == ("TRN1", "32XL", 1)
    assert machine.instance_id == build_machine("trn1.32xlarge").instance_id
    assert (dev.numa_node, dev.connected, len(dev.hbm_banks), dev.memory_bytes) == (-1, (), 1, GiB // 2)
    assert dev.bdf == "0000:10:1c.0"


def test_unknown_instance_names_give_unknown_family_and_size():
    doc = small_doc()
    doc["instance_type"] = "lab-box"
    machine = parse_topology(doc)
    assert (machine.family, machine.size, machine.lnc, machine.total_cores) == ("UNKNOWN", "UNKNOWN", 2, 8)
    assert machine.core(5).physical_ids == (10, 11)
    assert machine.core(5).hbm_bank == 1


def test_v3_file_at_lnc1_maps_pairs_to_banks():
    machine = parse_topology(small_doc(), lnc=1)
    assert [c.hbm_bank for c in machine.cores[:8]] == [0, 0, 1, 1, 2, 2, 3, 3]


def _set(path, value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


BAD = [
    (_set(["instance_type"], 5), "instance_type", "non-empty string"),
    (_set(["instance_type"], ""), "instance_type", "non-empty string"),
    (_delete(["instance_type"]), "instance_type", "missing"),
    (_set(["generation"], "v9"), "generation", '"v1", "v2", "v3"'),
    (_delete(["generation"]), "generation", "missing"),
    (_set(["family"], "GPU"), "family", "TRN2"),
    (_set(["size"], "HUGE"), "size", "48XL"),
    (_set(["instance_id"], 7), "instance_id", "non-empty string"),
    (_set(["lnc"], 3), "lnc", "from 1 to 2"),
    (_set(["color"], "red"), "color", "unknown field; accepted: instance_type"),
    (_set(["devices"], {"0": {}}), "devices", "list of 0 to 64"),
    (_delete(["devices"]), "devices", "got nothing"),
    (_set(["devices", 1], "x"), "devices[1]", "must be an object"),
    (_set(["devices", 1, "memory_gb"], 96), "devices[1].memory_gb", "unknown field"),
    (_set(["devices", 1, "cores"], 9), "devices[1].cores", "from 1 to 8"),
    (_set(["devices", 1, "cores"], "8"), "devices[1].cores", "from 1 to 8"),
    (_set(["devices", 1, "cores"], True), "devices[1].cores", "from 1 to 8"),
    (_delete(["devices", 1, "cores"]), "devices[1].cores", "missing"),
    (_set(["devices", 0, "cores"], 3), "devices[0].cores", "multiple of 2"),
    (_set(["devices", 1, "cores"], 4), "devices[1].cores", "same core count as devices[0]"),
    (_set(["devices", 1, "memory_gib"], 0), "devices[1].memory_gib", "number of GiB > 0"),
    (_set(["devices", 1, "memory_gib"], "96"), "devices[1].memory_gib", "number of GiB > 0"),
    (_set(["devices", 1, "memory_gib"], 1e-12), "devices[1].memory_gib", "whole number of bytes"),
    (_set(["devices", 1, "memory_gib"], 99999), "devices[1].memory_gib", "<= 4096"),
    (_delete(["devices", 1, "memory_gib"]), "devices[1].memory_gib", "missing"),
    (_set(["devices", 1, "hbm_banks"], 3), "devices[1].hbm_banks", "must divide"),
    (_set(["devices", 1, "hbm_banks"], 8), "devices[1].hbm_banks", "span two banks"),
    (_set(["devices", 1, "hbm_banks"], 0), "devices[1].hbm_banks", "from 1 to 8"),
    (_set(["devices", 1, "connected"], 0), "devices[1].connected", "list of distinct device indices"),
    (_set(["devices", 1, "connected"], [0, 0]), "devices[1].connected[1]", "distinct"),
    (_set(["devices", 1, "connected"], [1]), "devices[1].connected[0]", "other than 1"),
    (_set(["devices", 1, "connected"], [2]), "devices[1].connected[0]", "from 0 to 1"),
    (_set(["devices", 0, "connected"], []), "devices[1].connected[0]", "devices[0].connected must list 1"),
    (_set(["devices", 1, "bdf"], "10:1c.0"), "devices[1].bdf", '"DDDD:BB:DD.F"'),
    (_delete(["devices", 1, "bdf"]), "devices[1].bdf", "missing"),
    (_set(["devices", 1, "cpu_affinity"], "8-x"), "devices[1].cpu_affinity", "CPU list"),
    (_set(["devices", 1, "cpu_affinity"], "9-3"), "devices[1].cpu_affinity", "a <= b"),
    (_set(["devices", 1, "cpu_affinity"], "4,2"), "devices[1].cpu_affinity", "increasing"),
    (_set(["devices", 1, "cpu_affinity"], ""), "devices[1].cpu_affinity", "CPU list"),
    (_delete(["devices", 1, "cpu_affinity"]), "devices[1].cpu_affinity", "missing"),
    (_set(["devices", 1, "numa_node"], "x"), "devices[1].numa_node", 'must be an integer >= -1, got "x"'),
    (_set(["devices", 1, "numa_node"], -2), "devices[1].numa_node", "must be an integer >= -1, got -2"),
]


@pytest.mark.parametrize("mutate,field,fragment", BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_each_validation_error_names_its_field(mutate, field, fragment):
    doc = small_doc()
    mutate(doc)
    with pytest.raises(TopologyError) as info:
        parse_topology(doc)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert fragment in str(info.value)


def test_lnc2_in_a_v2_file_is_a_topology_error():
    doc = machine_to_topology(build_machine("trn1.2xlarge"))
    doc["lnc"] = 2
    with pytest.raises(TopologyError, match=r"^lnc: LNC 2 needs NeuronCore-v3"):
        parse_topology(doc)


def test_lnc2_argument_on_a_v2_file_blames_the_argument():
    doc = machine_to_topology(build_machine("trn1.2xlarge"))
    with pytest.raises(LncError) as info:
        parse_topology(doc, lnc=2)
    assert not isinstance(info.value, TopologyError)


def test_top_level_must_be_an_object():
    with pytest.raises(TopologyError, match=r"^\(top level\): must be a JSON object"):
        parse_topology([1, 2])


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "is not valid JSON"),
    (b"\xff\xfe\x00", "is not UTF-8"),
    ("[" * 100000, "nested too deeply"),
])
def test_unreadable_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(TopologyError, match=fragment) as info:
        load_topology(path)
    assert info.value.field == "(file)"


def test_missing_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "absent.json")


# ---------------------------------------------------------------------------------------------
# Fuzzing: only TopologyError may escape the loader.

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(["instance_type", "generation", "family", "size", "instance_id", "lnc", "devices",
                               "cores", "memory_gib", "hbm_banks", "connected", "bdf", "cpu_affinity",
                               "numa_node", "extra"])


def _ok_or_topology_error(doc, lnc=None) -> None:
    try:
        machine = parse_topology(doc, lnc)
    except TopologyError as exc:
        assert str(exc).startswith(exc.field + ": ")
    else:
        assert machine.total_cores >= 1 or machine.devices == ()      # "devices": [] is a machine without device


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_documents(doc):
    _ok_or_topology_error(doc)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["trn2.48xlarge", "inf2.24xlarge", "inf1.6xlarge", "trn1.2xlarge"]),
       st.lists(st.tuples(st.integers(0, 20), FIELD_NAMES, JSON_VALUES), min_size=1, max_size=3),
       st.sampled_from([None, 1]))
def test_fuzz_mutated_catalog_documents(instance_type, mutations, lnc):
    doc = copy.deepcopy(machine_to_topology(build_machine(instance_type)))
    for where, key, value in mutations:
        devices = doc.get("devices")
        if key in ("cores", "memory_gib", "hbm_banks", "connected", "bdf", "cpu_affinity", "numa_node") \
                and isinstance(devices, list) and devices and isinstance(devices[where % len(devices)], dict):
            devices[where % len(devices)][key] = value
        else:
            doc[key] = value
    _ok_or_topology_error(doc, lnc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_file_contents(tmp_path, content):
    path = tmp_path / "fuzz.json"
    path.write_bytes(content)
    try:
        load_topology(path)
    except TopologyError:
        pass
