"""The instance catalog, the generations' figures and machine selection."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from neuron_sim.hardware.catalog import INSTANCE_TYPES, LncError, build_machine
from neuron_sim.hardware.generations import GENERATIONS
from neuron_sim.hardware.model import GiB
from neuron_sim.hardware.select import DEFAULT_INSTANCE_TYPE, SelectionError, select_machine
from neuron_sim.hardware.topology_file import machine_to_topology

SEED = Path(__file__).resolve().parents[2] / "shared" / "spec" / "seeds" / "004_4c440e1db7200fa2.txt"
SEED_TYPES = ("trn1.32xlarge", "inf2.48xlarge", "trn2.48xlarge")


def parse_seed_tables(path: Path = SEED) -> dict[str, list[list[str]]]:
    """The neuron-ls tables of the performance-tips seed: instance type -> data rows (8 cells each)."""
    tables: dict[str, list[list[str]]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    current: list[list[str]] | None = None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r'"{5,}', lines[i + 1]) and re.fullmatch(r"[a-z0-9]+\.\w+", line):
            current = tables.setdefault(line, [])
        elif current is not None and line.startswith("   * - "):
            current.append([line[len("   * - "):].strip()])
        elif current is not None and line.startswith("     - ") and current:
            current[-1].append(line[len("     - "):].strip())
    return {name: [row for row in rows if row[0] != "NEURON DEVICE"] for name, rows in tables.items()}


@pytest.fixture(scope="module")
def seed_tables() -> dict[str, list[list[str]]]:
    if not SEED.exists():
        pytest.skip(f"seed file {SEED} absent")
    return parse_seed_tables()


def device_cells(machine, device) -> list[str]:
    ids = [c.global_id for c in machine.cores if c.device == device.index]
    return [str(device.index), str(len(ids)), f"{ids[0]}-{ids[-1]}", f"{device.memory_bytes // GiB} GB",
            ", ".join(map(str, device.connected)), device.bdf, device.cpu_affinity, str(device.numa_node)]


def test_seed_parser_finds_the_three_tables(seed_tables):
    assert {t: len(rows) for t, rows in seed_tables.items()} == {
        "trn1.32xlarge": 16, "inf2.48xlarge": 12, "trn2.48xlarge": 16}
    assert all(len(row) == 8 for rows in seed_tables.values() for row in rows)


@pytest.mark.parametrize("instance_type", SEED_TYPES)
def test_large_instances_reproduce_every_seed_row(seed_tables, instance_type):
    machine = build_machine(instance_type)
    assert [device_cells(machine, d) for d in machine.devices] == seed_tables[instance_type]


EXPECTED_COUNTS = {  # devices, logical cores at the default LNC, physical cores, memory per device (GiB)
    "inf1.xlarge": (1, 4, 4, 8), "inf1.2xlarge": (1, 4, 4, 8), "inf1.6xlarge": (4, 16, 16, 8),
    "inf1.24xlarge": (16, 64, 64, 8), "trn1.2xlarge": (1, 2, 2, 32), "trn1.32xlarge": (16, 32, 32, 32),
    "trn1n.32xlarge": (16, 32, 32, 32), "inf2.xlarge": (1, 2, 2, 32), "inf2.8xlarge": (1, 2, 2, 32),
    "inf2.24xlarge": (6, 12, 12, 32), "inf2.48xlarge": (12, 24, 24, 32), "trn2.3xlarge": (1, 4, 8, 96),
    "trn2.48xlarge": (16, 64, 128, 96),
}


def test_catalog_lists_exactly_the_expected_types():
    assert set(INSTANCE_TYPES) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("instance_type", sorted(EXPECTED_COUNTS))
def test_core_counts_per_instance_type(instance_type):
    machine = build_machine(instance_type)
    devices, logical, physical, gib = EXPECTED_COUNTS[instance_type]
    assert (len(machine.devices), machine.total_cores, machine.total_physical_cores) == (devices, logical, physical)
    assert all(d.memory_bytes == gib * GiB for d in machine.devices)
    assert machine.cores_per_device * devices == logical
    assert [c.global_id for c in machine.cores] == list(range(logical))


def test_trn2_48xlarge_has_64_logical_cores_at_lnc2_and_128_at_lnc1():
    assert build_machine("trn2.48xlarge").lnc == 2
    assert build_machine("trn2.48xlarge", lnc=2).total_cores == 64
    assert build_machine("trn2.48xlarge", lnc=1).total_cores == 128
    assert build_machine("trn2.3xlarge", lnc=1).total_cores == 8


def test_trn2_lnc2_logical_core_joins_a_physical_pair_on_its_own_bank():
    machine = build_machine("trn2.48xlarge", lnc=2)
    for core in machine.cores:
        d, k = core.device, core.local_id
        assert core.global_id == 4 * d + k
        assert core.physical_ids == (8 * d + 2 * k, 8 * d + 2 * k + 1)
        assert core.hbm_bank == k
        bank = machine.bank_of(core)
        assert (bank.device, bank.index, bank.capacity) == (d, k, 24 * GiB)


def test_trn2_lnc1_neighbours_share_a_bank():
    machine = build_machine("trn2.48xlarge", lnc=1)
    core = machine.core(13)                      # device 1, local 5
    assert (core.device, core.local_id, core.physical_ids, core.hbm_bank) == (1, 5, (13,), 2)
    sharing = [c.global_id for c in machine.cores if c.device == 1 and c.hbm_bank == 2]
    assert sharing == [12, 13]
    assert all(c.hbm_bank == c.local_id // 2 for c in machine.cores)
    assert [len(d.hbm_banks) for d in machine.devices] == [4] * 16


@pytest.mark.parametrize("instance_type,cores", [("trn1.32xlarge", 2), ("inf2.xlarge", 2), ("inf1.6xlarge", 4)])
def test_v1_v2_devices_have_one_bank_shared_by_all_cores(instance_type, cores):
    machine = build_machine(instance_type)
    assert machine.lnc == 1
    for dev in machine.devices:
        assert len(dev.hbm_banks) == 1 and dev.hbm_banks[0].capacity == dev.memory_bytes
    for core in machine.cores:
        assert core.hbm_bank == 0
        assert core.physical_ids == (core.global_id,)
        assert core.device == core.global_id // cores


@pytest.mark.parametrize("instance_type", ["trn1.32xlarge", "inf2.48xlarge", "inf1.xlarge", "trn1n.32xlarge"])
def test_lnc2_on_non_trn2_names_neuroncore_v3(instance_type):
    with pytest.raises(LncError, match=r"LNC 2 needs NeuronCore-v3 \(trn2\)"):
        build_machine(instance_type, lnc=2)


@pytest.mark.parametrize("lnc", [0, 3, -1, True])
def test_lnc_must_be_1_or_2(lnc):
    with pytest.raises(ValueError, match="LNC must be 1 or 2"):
        build_machine("trn2.48xlarge", lnc=lnc)


def test_unknown_instance_type_lists_accepted_names():
    with pytest.raises(ValueError) as info:
        build_machine("trn9.huge")
    assert "'trn9.huge'" in str(info.value)
    assert all(name in str(info.value) for name in INSTANCE_TYPES)


@pytest.mark.parametrize("instance_type,family,size", [
    ("inf1.xlarge", "INF1", "1XL"), ("inf1.2xlarge", "INF1", "2XL"), ("inf1.6xlarge", "INF1", "6XL"),
    ("inf1.24xlarge", "INF1", "24XL"), ("trn1.2xlarge", "TRN1", "2XL"), ("trn1.32xlarge", "TRN1", "32XL"),
    ("trn1n.32xlarge", "TRN1N", "32XL"), ("inf2.xlarge", "INF2", "1XL"), ("inf2.8xlarge", "INF2", "8XL"),
    ("inf2.24xlarge", "INF2", "24XL"), ("inf2.48xlarge", "INF2", "48XL"), ("trn2.3xlarge", "TRN2", "3XL"),
    ("trn2.48xlarge", "TRN2", "48XL"),
])
def test_family_and_size_names(instance_type, family, size):
    machine = build_machine(instance_type)
    assert (machine.instance_type, machine.family, machine.size, machine.source) == (
        instance_type, family, size, "catalog")


def test_instance_ids_are_stable_distinct_and_ec2_shaped():
    ids = {t: build_machine(t).instance_id for t in INSTANCE_TYPES}
    assert ids == {t: build_machine(t).instance_id for t in INSTANCE_TYPES}
    assert len(set(ids.values())) == len(ids)
    assert all(re.fullmatch(r"i-[0-9a-f]{17}", v) for v in ids.values())


@pytest.mark.parametrize("instance_type", INSTANCE_TYPES)
def test_every_machine_is_internally_consistent(instance_type):
    machine = build_machine(instance_type)
    n = len(machine.devices)
    assert [d.index for d in machine.devices] == list(range(n))
    assert len({d.bdf for d in machine.devices}) == n
    for dev in machine.devices:
        assert all(0 <= c < n and c != dev.index and dev.index in machine.devices[c].connected for c in dev.connected)
        assert dev.numa_node >= 0
        assert sum(b.capacity for b in dev.hbm_banks) == dev.memory_bytes
    physical = [p for c in machine.cores for p in c.physical_ids]
    assert physical == list(range(machine.total_physical_cores))


@pytest.mark.parametrize("small,big", [
    ("trn1.2xlarge", "trn1.32xlarge"), ("trn1n.32xlarge", "trn1.32xlarge"), ("inf2.xlarge", "inf2.48xlarge"),
    ("inf2.8xlarge", "inf2.48xlarge"), ("inf2.24xlarge", "inf2.48xlarge"), ("trn2.3xlarge", "trn2.48xlarge"),
    ("inf1.xlarge", "inf1.24xlarge"), ("inf1.2xlarge", "inf1.24xlarge"), ("inf1.6xlarge", "inf1.24xlarge"),
])
def test_smaller_sizes_are_the_first_devices_of_the_big_table(small, big):
    s, b = build_machine(small), build_machine(big)
    for dev in s.devices:
        ref = b.devices[dev.index]
        assert dev.bdf == ref.bdf
        assert dev.connected == tuple(c for c in ref.connected if c < len(s.devices))
        assert (dev.physical_cores, dev.memory_bytes, len(dev.hbm_banks)) == (
            ref.physical_cores, ref.memory_bytes, len(ref.hbm_banks))


@pytest.mark.parametrize("instance_type,affinity", [
    ("trn1.2xlarge", "0-7"), ("inf2.xlarge", "0-3"), ("inf2.8xlarge", "0-31"), ("trn2.3xlarge", "0-11"),
    ("inf1.6xlarge", "0-23"),
])
def test_single_node_sizes_spread_their_own_vcpus(instance_type, affinity):
    machine = build_machine(instance_type)
    assert {(d.cpu_affinity, d.numa_node) for d in machine.devices} == {(affinity, 0)}


def test_inf2_24xlarge_renumbers_its_two_numa_nodes():
    machine = build_machine("inf2.24xlarge")
    assert [d.numa_node for d in machine.devices] == [0, 1, 0, 1, 0, 1]
    assert machine.devices[0].cpu_affinity == "0-23,48-71"
    assert machine.devices[1].cpu_affinity == "24-47,72-95"


def test_generation_figures_are_per_physical_core():
    v1, v2, v3 = GENERATIONS["v1"], GENERATIONS["v2"], GENERATIONS["v3"]
    assert (v1.kelf_target, v2.kelf_target, v3.kelf_target) == ("tonga", "sunda", "cayman")
    assert v1.peak_flops["bf16"] * 4 == pytest.approx(64e12)
    assert v1.peak_flops["int8"] * 4 == pytest.approx(128e12)
    assert v2.peak_flops["bf16"] * 2 == pytest.approx(190e12)
    assert v2.hbm_bandwidth == pytest.approx(820e9)
    assert v3.peak_flops["bf16"] * 8 == pytest.approx(667e12)
    assert v3.peak_flops["fp8"] * 8 == pytest.approx(1299e12)
    assert v3.peak_flops["fp32"] * 8 == pytest.approx(181e12)
    assert v3.hbm_bandwidth == pytest.approx(2.9e12)
    for gen in (v1, v2, v3):
        assert set(gen.peak_flops) == {"fp32", "bf16", "fp8", "int8"}
        assert gen.microcode_bytes == 96 * (1 << 20)
        assert gen.launch_cost_s > 0
    assert build_machine("trn2.48xlarge").generation is v3
    assert build_machine("inf2.xlarge").generation is v2
    assert build_machine("inf1.xlarge").generation is v1


# ---------------------------------------------------------------------------------------------
# select_machine

def test_select_defaults_to_trn1_32xlarge():
    assert DEFAULT_INSTANCE_TYPE == "trn1.32xlarge"
    assert select_machine().instance_type == "trn1.32xlarge"
    assert select_machine("", "").instance_type == "trn1.32xlarge"


def test_select_accepts_any_case_and_surrounding_blanks():
    assert select_machine(" TRN2.48xlarge ").instance_type == "trn2.48xlarge"


def test_select_passes_lnc():
    assert select_machine("trn2.48xlarge", lnc=1).total_cores == 128


def test_topology_file_wins_over_instance_type(tmp_path):
    doc = machine_to_topology(build_machine("inf2.24xlarge"))
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(doc))
    machine = select_machine("trn2.48xlarge", str(path))
    assert machine.instance_type == "inf2.24xlarge"
    assert machine.source == str(path)


@pytest.mark.parametrize("kwargs,variable,fragment", [
    ({"instance_type": "trn9.huge"}, "NEURON_SIM_INSTANCE_TYPE", "accepted: inf1.xlarge"),
    ({"topology_file": "/nonexistent/topo.json"}, "NEURON_SIM_TOPOLOGY", "cannot read"),
    ({"lnc": 3}, "NEURON_LOGICAL_NC_CONFIG", "must be 1 or 2"),
    ({"instance_type": "trn1.32xlarge", "lnc": 2}, "NEURON_LOGICAL_NC_CONFIG", "NeuronCore-v3"),
])
def test_select_errors_name_the_variable(kwargs, variable, fragment):
    with pytest.raises(SelectionError) as info:
        select_machine(**kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + "=")
    assert fragment in str(info.value)


def test_select_lnc2_with_a_v2_topology_file_blames_lnc(tmp_path):
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(machine_to_topology(build_machine("trn1.2xlarge"))))
    with pytest.raises(SelectionError) as info:
        select_machine(topology_file=str(path), lnc=2)
    assert info.value.variable == "NEURON_LOGICAL_NC_CONFIG"


def test_select_bad_topology_names_file_and_field(tmp_path):
    doc = machine_to_topology(build_machine("trn1.2xlarge"))
    doc["devices"][0]["numa_node"] = "x"
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SelectionError) as info:
        select_machine(topology_file=str(path))
    assert info.value.variable == "NEURON_SIM_TOPOLOGY"
    assert str(path) in str(info.value)
    assert 'devices[0].numa_node: must be an integer >= -1, got "x"' in str(info.value)
