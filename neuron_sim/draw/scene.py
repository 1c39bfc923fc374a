"""What a drawing shows, read from a machine's state directory: no plotting here, so tests assert on it.

Placement: every NeuronCore of the machine, each live runtime process with the cores it holds, its
NeuronCore groups (when its record lists them) and every model with its cores (published records,
``runtime.publish``). Memory: every HBM bank with its capacity, the bytes each process holds on it (the
machine-wide ledger, ``runtime.memory_ledger.read_machine_memory``) and those bytes per category (records).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.memory import CATEGORIES
from neuron_sim.runtime.memory_ledger import read_machine_memory
from neuron_sim.runtime.publish import read_runtimes


@dataclass(frozen=True)
class CoreBox:
    """One NeuronCore of the machine: machine-wide logical id, device, index on the device."""

    core: int
    device: int
    local: int


@dataclass(frozen=True)
class ModelBox:
    """One loaded model: its id, NEFF name and the machine-wide cores it occupies."""

    id: int
    name: str
    cores: tuple[int, ...]

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class ProcessBox:
    """One runtime process: pid, NEURON_PROCESS_TAG (or pid), the cores it holds, its groups and models."""

    pid: int
    tag: str
    cores: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    models: tuple[ModelBox, ...]


@dataclass(frozen=True)
class PlacementScene:
    instance_type: str
    cores: tuple[CoreBox, ...]
    processes: tuple[ProcessBox, ...]
    title: str = ""

    def placement(self) -> dict[str, tuple[int, ...]]:
        """Model label → machine-wide cores (labels made unique with the model id when names repeat)."""
        models = [m for p in self.processes for m in p.models]
        names = [m.name for m in models]
        return {(m.name if names.count(m.name) == 1 else f"{m.name}#{m.id}"): m.cores for m in models}

    def owners(self) -> dict[int, int]:
        """Machine-wide core → pid of the process holding it."""
        return {c: p.pid for p in self.processes for c in p.cores}


@dataclass(frozen=True)
class BankUsage:
    """One HBM bank: capacity, bytes per category (all processes), bytes per process (the ledger)."""

    device: int
    bank: int
    capacity: int
    categories: dict[str, int] = field(default_factory=dict)
    processes: dict[int, int] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return sum(self.categories.values())


@dataclass(frozen=True)
class MemoryScene:
    instance_type: str
    banks: tuple[BankUsage, ...]
    title: str = ""


def _groups(record: dict[str, Any]) -> tuple[tuple[int, ...], ...]:
    raw = record.get("groups") or ()
    out = []
    for g in raw if isinstance(raw, list) else ():
        cores = g.get("cores") if isinstance(g, dict) else g
        if isinstance(cores, list) and all(isinstance(c, int) for c in cores):
            out.append(tuple(cores))
    return tuple(out)


def placement_scene(state_dir: Path, machine: Machine, title: str = "") -> PlacementScene:
    """The live placement of every runtime process of the machine whose state directory this is."""
    cores = tuple(CoreBox(c.global_id, c.device, c.local_id) for c in machine.cores)
    processes = []
    for record in read_runtimes(Path(state_dir)):
        models = tuple(ModelBox(int(m["id"]), str(m["name"]), tuple(int(c) for c in m["cores"]))
                       for m in record.get("models", ()))
        processes.append(ProcessBox(int(record["pid"]), str(record.get("tag") or record["pid"]),
                                    tuple(int(c["core"]) for c in record.get("cores", ())), _groups(record),
                                    models))
    return PlacementScene(machine.instance_type, cores, tuple(processes), title)


def memory_scene(state_dir: Path, machine: Machine, title: str = "") -> MemoryScene:
    """HBM use per bank, machine-wide: categories from the published records, per-process bytes from the ledger."""
    per_bank: dict[tuple[int, int], dict[str, int]] = {}
    bank_of = {c.global_id: (c.device, c.hbm_bank) for c in machine.cores}
    for record in read_runtimes(Path(state_dir)):
        for core in record.get("cores", ()):
            key = bank_of.get(core.get("core"))
            if key is None:
                continue
            cats = per_bank.setdefault(key, {})
            for cat, nbytes in (core.get("memory") or {}).items():
                cats[cat] = cats.get(cat, 0) + int(nbytes)
    banks = []
    for b in read_machine_memory(Path(state_dir), machine):
        cats = per_bank.get((b.device, b.bank), {})
        ordered = {c: cats[c] for c in CATEGORIES if cats.get(c)}
        ordered.update({c: v for c, v in cats.items() if c not in ordered and v})
        banks.append(BankUsage(b.device, b.bank, b.capacity, ordered, {e.pid: e.nbytes for e in b.entries}))
    return MemoryScene(machine.instance_type, tuple(banks), title)
