"""NEURON_SIM_TOPOLOGY: a JSON file describing a machine the catalog lacks, and its inverse.

Every validation error is a ``TopologyError`` whose message starts with the offending field path
(``devices[3].numa_node: must be an integer >= -1, got "x"``) and says the accepted form. Unknown
fields are rejected so that typos do not pass silently. The schema is documented in docs/hardware.md;
``machine_to_topology`` writes any catalog machine in it.

An ``lnc`` argument (NEURON_LOGICAL_NC_CONFIG) wins over the file's ``lnc`` field; an argument the
file's generation cannot use raises ``LncError`` (the variable's fault), while a device layout that
cannot host the chosen LNC raises ``TopologyError`` naming the device field.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from neuron_sim.hardware.catalog import (
    FAMILIES, MAX_CORES_PER_DEVICE, MAX_DEVICES, SIZES, LncError, assemble_machine, check_lnc,
    default_lnc, fake_instance_id, family_of, make_device, size_of,
)
from neuron_sim.hardware.generations import GENERATIONS
from neuron_sim.hardware.model import GiB, Device, Machine
from neuron_sim.regular_files import read_regular

MAX_TOPOLOGY_BYTES = 16 << 20     # far above any machine's topology document

MAX_MEMORY_GIB = 4096

TOP_FIELDS = ("instance_type", "generation", "family", "size", "instance_id", "lnc", "devices")
DEVICE_FIELDS = ("cores", "memory_gib", "hbm_banks", "connected", "bdf", "cpu_affinity", "numa_node")

_BDF = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]$")
_CPU_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class TopologyError(ValueError):
    """A topology file that cannot describe a machine; ``field`` is the offending JSON path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(doc: dict, key: str, field: str, low: int, high: int | None, default: int | None = None) -> int:
    if key not in doc and default is not None:
        return default
    value = doc.get(key)
    if key not in doc:
        raise TopologyError(field, "missing; " + _int_form(low, high))
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise TopologyError(field, f"{_int_form(low, high)}, got {_shown(value)}")
    return value


def _int_form(low: int, high: int | None) -> str:
    return f"must be an integer >= {low}" if high is None else f"must be an integer from {low} to {high}"


def _str(doc: dict, key: str, field: str, form: str, choices: tuple[str, ...] | None = None,
         pattern: re.Pattern[str] | None = None) -> str:
    if key not in doc:
        raise TopologyError(field, f"missing; {form}")
    value = doc[key]
    ok = isinstance(value, str) and value.strip() != ""
    ok = ok and (choices is None or value in choices) and (pattern is None or bool(pattern.match(value)))
    if not ok:
        raise TopologyError(field, f"{form}, got {_shown(value)}")
    return value


def _check_fields(doc: dict, accepted: tuple[str, ...], prefix: str) -> None:
    for key in doc:
        if key not in accepted:
            raise TopologyError(f"{prefix}{key}", f"unknown field; accepted: {', '.join(accepted)}")


def _cpu_list(value: Any, field: str) -> str:
    form = 'must be a CPU list such as "0-31,64-95" (increasing numbers and ranges a-b with a <= b)'
    if not isinstance(value, str) or not value:
        raise TopologyError(field, f"{form}, got {_shown(value)}")
    last = -1
    for part in value.split(","):
        match = _CPU_RANGE.match(part)
        if not match:
            raise TopologyError(field, f"{form}, got {_shown(value)}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low or low <= last:
            raise TopologyError(field, f"{form}, got {_shown(value)}")
        last = high
    return value


def _memory_bytes(dev: dict, field: str) -> int:
    form = f"must be a number of GiB > 0 and <= {MAX_MEMORY_GIB} that is a whole number of bytes"
    if "memory_gib" not in dev:
        raise TopologyError(field, f"missing; {form}")
    value = dev["memory_gib"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TopologyError(field, f"{form}, got {_shown(value)}")
    if not math.isfinite(value) or not 0 < value <= MAX_MEMORY_GIB or not float(value * GiB).is_integer():
        raise TopologyError(field, f"{form}, got {_shown(value)}")
    return int(value * GiB)


def _connected(value: Any, field: str, index: int, count: int) -> tuple[int, ...]:
    form = f"must be a list of distinct device indices from 0 to {count - 1}, other than {index}"
    if not isinstance(value, list):
        raise TopologyError(field, f"{form}, got {_shown(value)}")
    for pos, item in enumerate(value):
        if not _is_int(item) or not 0 <= item < count or item == index or item in value[:pos]:
            raise TopologyError(f"{field}[{pos}]", f"{form}, got {_shown(item)}")
    return tuple(value)


def _device(raw: Any, index: int, count: int, lnc: int, first_cores: int | None) -> Device:
    prefix = f"devices[{index}]"
    if not isinstance(raw, dict):
        raise TopologyError(prefix, f"must be an object with fields {', '.join(DEVICE_FIELDS)}, got {_shown(raw)}")
    _check_fields(raw, DEVICE_FIELDS, prefix + ".")
    cores = _int(raw, "cores", f"{prefix}.cores", 1, MAX_CORES_PER_DEVICE)
    if first_cores is not None and cores != first_cores:
        raise TopologyError(f"{prefix}.cores", f"every device must have the same core count as devices[0] "
                                              f"({first_cores}), got {cores}")
    if cores % lnc:
        raise TopologyError(f"{prefix}.cores", f"LNC {lnc} joins physical cores {lnc} at a time, "
                                              f"so the count must be a multiple of {lnc}, got {cores}")
    memory = _memory_bytes(raw, f"{prefix}.memory_gib")
    banks = _int(raw, "hbm_banks", f"{prefix}.hbm_banks", 1, MAX_CORES_PER_DEVICE, default=1)
    if cores % banks or memory % banks:
        raise TopologyError(f"{prefix}.hbm_banks", f"must divide both the core count ({cores}) and the memory "
                                                  f"({memory} bytes) evenly, got {banks}")
    if (cores // banks) % lnc:
        raise TopologyError(f"{prefix}.hbm_banks", f"each bank serves {cores // banks} physical core(s), so an "
                                                  f"LNC {lnc} logical core would span two banks; use fewer banks")
    connected = _connected(raw.get("connected", []), f"{prefix}.connected", index, count)
    bdf = _str(raw, "bdf", f"{prefix}.bdf", 'must be a PCI address "DDDD:BB:DD.F" such as "0000:10:1c.0"',
               pattern=_BDF).lower()
    if "cpu_affinity" not in raw:
        raise TopologyError(f"{prefix}.cpu_affinity", 'missing; must be a CPU list such as "0-31,64-95"')
    cpu_affinity = _cpu_list(raw["cpu_affinity"], f"{prefix}.cpu_affinity")
    numa = _int(raw, "numa_node", f"{prefix}.numa_node", -1, None, default=-1)
    return make_device(index=index, physical_cores=cores, memory_bytes=memory, hbm_banks=banks,
                       connected=connected, bdf=bdf, cpu_affinity=cpu_affinity, numa_node=numa)


def parse_topology(document: Any, lnc: int | None = None, source: str = "<topology>") -> Machine:
    """Validate a decoded topology document and build its Machine (``lnc`` argument wins over the file's)."""
    if not isinstance(document, dict):
        raise TopologyError("(top level)", f"must be a JSON object with fields {', '.join(TOP_FIELDS)}, "
                                           f"got {_shown(document)}")
    _check_fields(document, TOP_FIELDS, "")
    instance_type = _str(document, "instance_type", "instance_type",
                         'must be a non-empty string such as "trn2.48xlarge"')
    generation = GENERATIONS[_str(document, "generation", "generation",
                                  f"must be one of {', '.join(map(json.dumps, GENERATIONS))}",
                                  choices=tuple(GENERATIONS))]
    family = family_of(instance_type)
    if "family" in document:
        family = _str(document, "family", "family", f"must be an nrt family name: {', '.join(FAMILIES)}",
                      choices=FAMILIES)
    size = size_of(instance_type)
    if "size" in document:
        size = _str(document, "size", "size", f"must be an nrt size name: {', '.join(SIZES)}", choices=SIZES)
    instance_id = fake_instance_id(instance_type)
    if "instance_id" in document:
        instance_id = _str(document, "instance_id", "instance_id", 'must be a non-empty string such as "i-0abc"')
    file_lnc = _int(document, "lnc", "lnc", 1, 2, default=default_lnc(generation))
    if lnc is None:
        try:
            check_lnc(generation, file_lnc, instance_type)
        except LncError as exc:
            raise TopologyError("lnc", str(exc)) from None
        lnc = file_lnc
    else:
        check_lnc(generation, lnc, instance_type)
    raw_devices = document.get("devices")
    if not isinstance(raw_devices, list) or not 0 <= len(raw_devices) <= MAX_DEVICES:   # [] = no Neuron device
        raise TopologyError("devices", f"must be a list of 0 to {MAX_DEVICES} device objects, got "
                                       f"{'nothing' if 'devices' not in document else _shown(raw_devices)}")
    devices: list[Device] = []
    for i, raw in enumerate(raw_devices):
        first_cores = devices[0].physical_cores if devices else None
        devices.append(_device(raw, i, len(raw_devices), lnc, first_cores))
    for dev in devices:
        for pos, other in enumerate(dev.connected):
            if dev.index not in devices[other].connected:
                raise TopologyError(f"devices[{dev.index}].connected[{pos}]",
                                    f"links are both ways, so devices[{other}].connected must list {dev.index}")
    return assemble_machine(instance_type, family, size, generation, tuple(devices), lnc, instance_id, source)


def load_topology(path: str | os.PathLike, lnc: int | None = None) -> Machine:
    """Read and validate the topology JSON file at ``path``; the Machine's ``source`` is the path."""
    name = os.fspath(path)
    try:
        text = read_regular(name, "the topology file", MAX_TOPOLOGY_BYTES).decode("utf-8")
    except OSError as exc:
        raise TopologyError("(file)", f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TopologyError("(file)", f"{name} is not UTF-8 text: {exc.reason}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopologyError("(file)", f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} "
                                      f"column {exc.colno}") from None
    except RecursionError:
        raise TopologyError("(file)", f"{name} is nested too deeply to be a topology document") from None
    return parse_topology(document, lnc, source=name)


def machine_to_topology(machine: Machine) -> dict:
    """The topology document of ``machine``: ``parse_topology`` of it rebuilds an equal machine."""
    devices = []
    for dev in machine.devices:
        gib = dev.memory_bytes / GiB
        devices.append({
            "cores": dev.physical_cores,
            "memory_gib": int(gib) if gib.is_integer() else gib,
            "hbm_banks": len(dev.hbm_banks),
            "connected": list(dev.connected),
            "bdf": dev.bdf,
            "cpu_affinity": dev.cpu_affinity,
            "numa_node": dev.numa_node,
        })
    return {
        "instance_type": machine.instance_type,
        "generation": machine.generation.name,
        "family": machine.family,
        "size": machine.size,
        "instance_id": machine.instance_id,
        "lnc": machine.lnc,
        "devices": devices,
    }
