"""The instance catalog: every supported inf1/trn1/trn1n/inf2/trn2 size as a ``Machine`` value.

The three large layouts (trn1.32xlarge, inf2.48xlarge, trn2.48xlarge) copy neuron-ls's tables from the
Neuron runtime performance guide row for row. Smaller sizes keep the first N devices of their family's
large table (connected devices filtered to those present), renumber the NUMA nodes they use from 0 and
spread the instance's own vCPUs over them. inf1 has no published table: its 16-device layout is invented
(a ring of devices, 4 per PCI bus, 8 per NUMA node). docs/hardware.md gives the details.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from neuron_sim.hardware.generations import GENERATIONS, V1, V2, V3, display_name
from neuron_sim.hardware.model import GiB, CoreGeneration, Device, HbmBank, LogicalCore, Machine
from neuron_sim.ranges import format_ranges

# nrt.h instance family and size enums (nrt_instance_info_t), in enum order.
FAMILIES: tuple[str, ...] = (
    "UNKNOWN", "INF1", "TRN1", "TRN1N", "INF2", "TRN2", "TRN2N", "INF2E", "TRN2P", "TRN2U", "TRN2E",
    "TRN2EU", "TRN2AC", "TRN2UAC", "TRN3", "TRN3PDS98",
)
SIZES: tuple[str, ...] = ("1XL", "2XL", "4XL", "6XL", "8XL", "24XL", "32XL", "48XL", "3XL", "UNKNOWN")

MAX_DEVICES = 64            # the driver's per-core owner table is pid[64 devices x 8 NC]
MAX_CORES_PER_DEVICE = 8


class LncError(ValueError):
    """An LNC (NEURON_LOGICAL_NC_CONFIG) value the machine cannot use."""


# ---------------------------------------------------------------------------------------------
# Device tables: (PCI BDF, connected devices in neuron-ls order, NUMA node) per device index.
# Source: performance-tips "Respect the NUMA node layout" tables (spec/seeds/004_*.txt).

_TRN1_32XL: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("0000:10:1c.0", (12, 3, 4, 1), 0),
    ("0000:10:1d.0", (13, 0, 5, 2), 0),
    ("0000:a0:1c.0", (14, 1, 6, 3), 1),
    ("0000:a0:1d.0", (15, 2, 7, 0), 1),
    ("0000:20:1b.0", (0, 7, 8, 5), 0),
    ("0000:20:1c.0", (1, 4, 9, 6), 0),
    ("0000:90:1b.0", (2, 5, 10, 7), 1),
    ("0000:90:1c.0", (3, 6, 11, 4), 1),
    ("0000:20:1d.0", (4, 11, 12, 9), 0),
    ("0000:20:1e.0", (5, 8, 13, 10), 0),
    ("0000:90:1d.0", (6, 9, 14, 11), 1),
    ("0000:90:1e.0", (7, 10, 15, 8), 1),
    ("0000:10:1e.0", (8, 15, 0, 13), 0),
    ("0000:10:1b.0", (9, 12, 1, 14), 0),
    ("0000:a0:1e.0", (10, 13, 2, 15), 1),
    ("0000:a0:1b.0", (11, 14, 3, 12), 1),
)

_INF2_48XL: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("0000:80:1e.0", (11, 1), 2),
    ("0000:90:1e.0", (0, 2), 3),
    ("0000:80:1d.0", (1, 3), 2),
    ("0000:90:1f.0", (2, 4), 3),
    ("0000:80:1f.0", (3, 5), 2),
    ("0000:90:1d.0", (4, 6), 3),
    ("0000:20:1e.0", (5, 7), 1),
    ("0000:20:1f.0", (6, 8), 1),
    ("0000:10:1e.0", (7, 9), 0),
    ("0000:10:1f.0", (8, 10), 0),
    ("0000:10:1d.0", (9, 11), 0),
    ("0000:20:1d.0", (10, 0), 1),
)

_TRN2_48XL: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("0000:cc:00.0", (12, 3, 4, 1), 1),
    ("0000:b5:00.0", (13, 0, 5, 2), 1),
    ("0000:b6:00.0", (14, 1, 6, 3), 1),
    ("0000:cb:00.0", (15, 2, 7, 0), 1),
    ("0000:6f:00.0", (0, 7, 8, 5), 0),
    ("0000:58:00.0", (1, 4, 9, 6), 0),
    ("0000:59:00.0", (2, 5, 10, 7), 0),
    ("0000:6e:00.0", (3, 6, 11, 4), 0),
    ("0000:9b:00.0", (4, 11, 12, 9), 0),
    ("0000:84:00.0", (5, 8, 13, 10), 0),
    ("0000:85:00.0", (6, 9, 14, 11), 0),
    ("0000:9a:00.0", (7, 10, 15, 8), 0),
    ("0000:f8:00.0", (8, 15, 0, 13), 1),
    ("0000:e1:00.0", (9, 12, 1, 14), 1),
    ("0000:e2:00.0", (10, 13, 2, 15), 1),
    ("0000:f7:00.0", (11, 14, 3, 12), 1),
)

# Invented (no published inf1 table): 16 devices in a ring (previous, next), four per PCI bus
# (buses 10/20/30/40, slots 1b-1e), devices 0-7 on NUMA node 0 and 8-15 on node 1.
_INF1_24XL: tuple[tuple[str, tuple[int, ...], int], ...] = tuple(
    (f"0000:{0x10 * (d // 4 + 1):02x}:{0x1b + d % 4:02x}.0", ((d - 1) % 16, (d + 1) % 16), d // 8)
    for d in range(16)
)


@dataclass(frozen=True)
class _InstanceSpec:
    family: str
    size: str
    generation: CoreGeneration
    vcpus: int                     # published vCPU count of the instance type
    table: tuple[tuple[str, tuple[int, ...], int], ...]
    devices: int                   # first N devices of `table`
    physical_cores: int            # per device
    memory_gib: int                # per device
    hbm_banks: int                 # per device


_SPECS: dict[str, _InstanceSpec] = {
    "inf1.xlarge": _InstanceSpec("INF1", "1XL", V1, 4, _INF1_24XL, 1, 4, 8, 1),
    "inf1.2xlarge": _InstanceSpec("INF1", "2XL", V1, 8, _INF1_24XL, 1, 4, 8, 1),
    "inf1.6xlarge": _InstanceSpec("INF1", "6XL", V1, 24, _INF1_24XL, 4, 4, 8, 1),
    "inf1.24xlarge": _InstanceSpec("INF1", "24XL", V1, 96, _INF1_24XL, 16, 4, 8, 1),
    "trn1.2xlarge": _InstanceSpec("TRN1", "2XL", V2, 8, _TRN1_32XL, 1, 2, 32, 1),
    "trn1.32xlarge": _InstanceSpec("TRN1", "32XL", V2, 128, _TRN1_32XL, 16, 2, 32, 1),
    "trn1n.32xlarge": _InstanceSpec("TRN1N", "32XL", V2, 128, _TRN1_32XL, 16, 2, 32, 1),
    "inf2.xlarge": _InstanceSpec("INF2", "1XL", V2, 4, _INF2_48XL, 1, 2, 32, 1),
    "inf2.8xlarge": _InstanceSpec("INF2", "8XL", V2, 32, _INF2_48XL, 1, 2, 32, 1),
    "inf2.24xlarge": _InstanceSpec("INF2", "24XL", V2, 96, _INF2_48XL, 6, 2, 32, 1),
    "inf2.48xlarge": _InstanceSpec("INF2", "48XL", V2, 192, _INF2_48XL, 12, 2, 32, 1),
    "trn2.3xlarge": _InstanceSpec("TRN2", "3XL", V3, 12, _TRN2_48XL, 1, 8, 96, 4),
    "trn2.48xlarge": _InstanceSpec("TRN2", "48XL", V3, 192, _TRN2_48XL, 16, 8, 96, 4),
}

INSTANCE_TYPES: tuple[str, ...] = tuple(_SPECS)


# ---------------------------------------------------------------------------------------------
# Helpers shared with the topology-file loader.

def default_lnc(generation: CoreGeneration) -> int:
    """NEURON_LOGICAL_NC_CONFIG default: 2 on NeuronCore-v3 (trn2), 1 elsewhere."""
    return 2 if generation.name == "v3" else 1


def fake_instance_id(instance_type: str) -> str:
    """A stable EC2-style id (``i-`` + 17 hex digits) derived from the instance type."""
    return "i-" + hashlib.sha256(f"neuron-sim:{instance_type}".encode()).hexdigest()[:17]


def family_of(instance_type: str) -> str:
    """nrt family name from the instance-type prefix (``trn1n.32xlarge`` -> ``TRN1N``), else UNKNOWN."""
    prefix = instance_type.split(".", 1)[0].upper()
    return prefix if prefix in FAMILIES else "UNKNOWN"


def size_of(instance_type: str) -> str:
    """nrt size name from the instance-type suffix (``48xlarge`` -> ``48XL``), else UNKNOWN."""
    suffix = instance_type.split(".", 1)[1] if "." in instance_type else ""
    if suffix.endswith("xlarge"):
        name = (suffix[: -len("xlarge")] or "1") + "XL"
        if name in SIZES:
            return name
    return "UNKNOWN"


def format_cpu_list(cpus: list[int]) -> str:
    """``[0,1,2,5]`` -> ``"0-2,5"`` (the kernel's cpulist form used by neuron-ls)."""
    return format_ranges(cpus)


def numa_cpu_affinity(vcpus: int, nodes: int, node: int) -> str:
    """CPUs of NUMA ``node`` when ``vcpus`` are split evenly over ``nodes``, hyperthread siblings in the upper half.

    This reproduces the published tables: trn1.32xlarge node 0 is ``0-31,64-95``.
    """
    per_node = vcpus // (2 * nodes)
    half = vcpus // 2
    cpus = list(range(node * per_node, (node + 1) * per_node))
    cpus += list(range(half + node * per_node, half + (node + 1) * per_node))
    return format_cpu_list(cpus)


def make_device(index: int, physical_cores: int, memory_bytes: int, hbm_banks: int,
                connected: tuple[int, ...], bdf: str, cpu_affinity: str, numa_node: int) -> Device:
    """A Device whose memory is split evenly over ``hbm_banks`` banks."""
    if hbm_banks < 1 or memory_bytes % hbm_banks:
        raise ValueError(f"device {index}: {memory_bytes} bytes cannot be split evenly into {hbm_banks} HBM banks")
    if physical_cores % hbm_banks:
        raise ValueError(f"device {index}: {physical_cores} cores cannot be split evenly over {hbm_banks} HBM banks")
    banks = tuple(HbmBank(device=index, index=b, capacity=memory_bytes // hbm_banks) for b in range(hbm_banks))
    return Device(index=index, physical_cores=physical_cores, memory_bytes=memory_bytes, hbm_banks=banks,
                  connected=tuple(connected), bdf=bdf, cpu_affinity=cpu_affinity, numa_node=numa_node)


def check_lnc(generation: CoreGeneration, lnc: int, what: str) -> None:
    """Raise LncError unless ``lnc`` is 1, or 2 on NeuronCore-v3."""
    if isinstance(lnc, bool) or lnc not in (1, 2):
        raise LncError(f"LNC must be 1 or 2, got {lnc!r}")
    if lnc == 2 and generation.name != "v3":
        raise LncError(f"LNC 2 needs NeuronCore-v3 (trn2); {what} has {display_name(generation)}, "
                       f"which accepts only LNC 1")


def logical_cores(devices: tuple[Device, ...], lnc: int) -> tuple[LogicalCore, ...]:
    """Join each device's physical cores ``lnc`` at a time into logical cores, numbered machine-wide."""
    cores: list[LogicalCore] = []
    base = 0                       # machine-wide id of the device's first physical core
    for dev in devices:
        if dev.physical_cores % lnc:
            raise LncError(f"device {dev.index}: {dev.physical_cores} physical cores cannot form "
                           f"LNC {lnc} logical cores")
        per_bank = dev.physical_cores // len(dev.hbm_banks)
        if per_bank % lnc:
            raise LncError(f"device {dev.index}: each HBM bank serves {per_bank} physical core(s), "
                           f"so an LNC {lnc} logical core would span two banks")
        for local in range(dev.physical_cores // lnc):
            first = local * lnc
            cores.append(LogicalCore(
                global_id=len(cores),
                device=dev.index,
                local_id=local,
                physical_ids=tuple(base + first + i for i in range(lnc)),
                hbm_bank=first // per_bank,
            ))
        base += dev.physical_cores
    return tuple(cores)


def assemble_machine(instance_type: str, family: str, size: str, generation: CoreGeneration,
                     devices: tuple[Device, ...], lnc: int | None, instance_id: str | None = None,
                     source: str = "catalog") -> Machine:
    """A Machine with its logical cores for ``lnc`` (None = the generation's default)."""
    lnc = default_lnc(generation) if lnc is None else lnc
    check_lnc(generation, lnc, instance_type)
    return Machine(
        instance_type=instance_type, family=family, size=size, generation=generation, devices=devices,
        lnc=lnc, cores=logical_cores(devices, lnc),
        instance_id=instance_id if instance_id is not None else fake_instance_id(instance_type), source=source,
    )


def _devices_for(spec: _InstanceSpec) -> tuple[Device, ...]:
    rows = spec.table[: spec.devices]
    present = range(spec.devices)
    nodes = sorted({numa for _, _, numa in rows})
    devices = []
    for index, (bdf, connected, numa) in enumerate(rows):
        node = nodes.index(numa)
        devices.append(make_device(
            index=index, physical_cores=spec.physical_cores, memory_bytes=spec.memory_gib * GiB,
            hbm_banks=spec.hbm_banks, connected=tuple(c for c in connected if c in present), bdf=bdf,
            cpu_affinity=numa_cpu_affinity(spec.vcpus, len(nodes), node), numa_node=node,
        ))
    return tuple(devices)


def build_machine(instance_type: str, lnc: int | None = None) -> Machine:
    """The catalog Machine for ``instance_type`` (e.g. ``trn2.48xlarge``) at ``lnc`` (None = default)."""
    name = instance_type.strip().lower() if isinstance(instance_type, str) else instance_type
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown instance type {instance_type!r}; accepted: {', '.join(INSTANCE_TYPES)}")
    return _assembled(name, lnc)


@functools.lru_cache(maxsize=None, typed=True)   # a Machine is immutable and nrt_init asks for one on every call
def _assembled(name: str, lnc: int | None) -> Machine:
    spec = _SPECS[name]
    return assemble_machine(name, spec.family, spec.size, spec.generation, _devices_for(spec), lnc)


def generation_named(name: str) -> CoreGeneration:
    """The CoreGeneration called ``name`` ("v1", "v2", "v3")."""
    try:
        return GENERATIONS[name]
    except KeyError:
        raise ValueError(f"unknown NeuronCore generation {name!r}; accepted: {', '.join(GENERATIONS)}") from None
