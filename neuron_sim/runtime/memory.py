"""Device-memory accounting: bytes per HBM bank, NeuronCore, category and NEFF — counted, never allocated.

Capacities come from the hardware catalog. A request that does not fit raises ``OutOfDeviceMemory``
(NRT_RESOURCE) carrying the runtime's out-of-memory log: the failed allocation and the usage table
of the HBM bank (spec §2.4). With a MemoryLedger (every runtime has one) the bank is machine-wide: bytes other
processes hold on the same bank count against it, and an OOM they cause names them (docs/memory.md).

State owned here: the bytes accounted per HBM bank, category, core and NEFF (``DeviceMemory``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from neuron_sim.hardware.model import LogicalCore, Machine
from neuron_sim.runtime import trace
from neuron_sim.sizes import format_bytes
from neuron_sim.runtime.memory_ledger import MemoryEntry, MemoryLedger
from neuron_sim.status import NrtError, NrtStatus

# category -> usage-table column (real column names of TDRV:log_dev_mem_usage_table)
CATEGORIES: dict[str, str] = {
    "model_code": "Model Code",
    "constants": "Model Constants",
    "tensors": "Tensors",
    "shared_scratchpad": "Shared Scratchpad",
    "scratchpad": "Scratchpad",
    "runtime": "Runtime",
    "dma_rings": "DMA Rings IO",
    "async_reservations": "Tensors",
}
TABLE_COLUMNS = (
    "TOTAL", "Model Code", "Model Constants", "Tensors", "Shared Scratchpad", "Scratchpad", "Runtime",
    "DMA Rings IO", "DMA Rings Spill", "DMA Rings Collectives", "DMA Rings Runtime", "Collectives", "XT CC",
    "Profiler Buffers",
)
# columns that do not apply to one NEFF's row
_NEFF_NA = {"Tensors", "Runtime", "Shared Scratchpad", "Profiler Buffers"}


class OutOfDeviceMemory(NrtError):
    """An allocation that does not fit its HBM bank; ``log_lines`` is what the runtime logs (module, function, text)."""

    def __init__(self, message: str, log_lines: list[tuple[str, str, str]]) -> None:
        super().__init__(NrtStatus.RESOURCE, message)
        self.log_lines = log_lines


@dataclass(eq=False)
class Allocation:
    """One accounted block; ``owner`` is the NEFF (model) id it belongs to, if any."""

    device: int
    bank: int
    core: int
    category: str
    nbytes: int
    owner: int | None = None
    live: bool = True


@dataclass
class _Bank:
    capacity: int
    used: int = 0
    allocations: set[Allocation] = field(default_factory=set)


class _Banks(dict):
    """The _Bank of each HBM bank (device, bank) of a machine, made at its first use (KeyError for no such bank)."""

    def __init__(self, capacities: dict[tuple[int, int], int]) -> None:
        super().__init__()
        self._capacities = capacities

    def __missing__(self, key: tuple[int, int]) -> _Bank:
        bank = self[key] = _Bank(capacity=self._capacities[key])
        return bank


_capacities: dict[int, tuple[Machine, dict[tuple[int, int], int]]] = {}


def bank_capacities(machine: Machine) -> dict[tuple[int, int], int]:
    """Capacity per (device, HBM bank) of ``machine``, computed once per machine object (read-only: shared)."""
    found = _capacities.get(id(machine))
    if found is None or found[0] is not machine:
        if len(_capacities) >= 8:
            _capacities.clear()
        found = _capacities[id(machine)] = (machine, {(d.index, b.index): b.capacity for d in machine.devices
                                                      for b in d.hbm_banks})
    return found[1]


class DeviceMemory:
    """Accounting for every HBM bank of a machine; thread-safe."""

    def __init__(self, machine: Machine, state_dir=None, reset_banks: frozenset[tuple[int, int]] = frozenset()) -> None:
        self._machine = machine
        self._lock = threading.Lock()
        self._capacities = bank_capacities(machine)
        self._banks = _Banks(self._capacities)          # a bank's _Bank is made at its first use
        self.neff_names: dict[int, str] = {}
        # bytes per (logical core id, category), kept current so stats never walk the allocations
        self._by_core: dict[int, dict[str, int]] = {}    # filled at a core's first allocation
        self.ledger = (None if state_dir is None else MemoryLedger(state_dir, self._capacities, reset_banks))

    def close(self) -> None:
        """Leave the machine-wide ledger (idempotent)."""
        if self.ledger is not None:
            self.ledger.close()

    def _reserve(self, core: LogicalCore, category: str, key: tuple[int, int], bank: _Bank, nbytes: int) -> None:
        """Cross-check the machine-wide ledger when the local reservation is exceeded; OOM naming neighbours."""
        needed = bank.used + nbytes
        if self.ledger is None or needed <= self.ledger.reserved[key]:
            return
        others = self.ledger.grow(key, needed)
        if others is not None:
            raise self._oom(core, category, nbytes, bank, others)

    def _release(self, key: tuple[int, int], bank: _Bank) -> None:
        if self.ledger is not None:
            self.ledger.shrink(key, bank.used)

    def allocate(self, core: LogicalCore, category: str, nbytes: int, owner: int | None = None) -> Allocation:
        """Account ``nbytes`` of ``category`` on the bank of ``core``; OutOfDeviceMemory if it does not fit."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown memory category {category!r}")
        key = (core.device, core.hbm_bank)
        with self._lock:
            bank = self._banks[key]
            if bank.used + nbytes > bank.capacity:
                raise self._oom(core, category, nbytes, bank)
            self._reserve(core, category, key, bank, nbytes)
            alloc = Allocation(core.device, core.hbm_bank, core.global_id, category, nbytes, owner)
            bank.used += nbytes
            bank.allocations.add(alloc)
            self._count(alloc, nbytes)
            if trace.recorder is not None: trace.recorder.memory(key[0], key[1], bank.used)  # noqa: E701
            return alloc

    def free(self, alloc: Allocation | None) -> None:
        """Return an allocation's bytes; freeing twice is harmless."""
        if alloc is None:
            return
        with self._lock:
            if not alloc.live:
                return
            alloc.live = False
            bank = self._banks[(alloc.device, alloc.bank)]
            bank.used -= alloc.nbytes
            bank.allocations.discard(alloc)
            self._count(alloc, -alloc.nbytes)
            self._release((alloc.device, alloc.bank), bank)
            if trace.recorder is not None: trace.recorder.memory(alloc.device, alloc.bank, bank.used)  # noqa: E701

    def free_many(self, allocs: list[Allocation]) -> None:
        """``free`` each allocation under one lock acquisition (a model's unload returns several at once)."""
        with self._lock:
            touched = {}
            for alloc in allocs:
                if alloc is None or not alloc.live:
                    continue
                alloc.live = False
                key = (alloc.device, alloc.bank)
                bank = touched[key] = self._banks[key]
                bank.used -= alloc.nbytes
                bank.allocations.discard(alloc)
                self._count(alloc, -alloc.nbytes)
            for key, bank in touched.items():
                self._release(key, bank)

    def resize(self, alloc: Allocation, nbytes: int, core: LogicalCore) -> None:
        """Grow or shrink a live allocation in place (the shared scratchpad grows with the largest NEFF)."""
        with self._lock:
            bank = self._banks[(alloc.device, alloc.bank)]
            delta = nbytes - alloc.nbytes
            if delta > 0 and bank.used + delta > bank.capacity:
                raise self._oom(core, alloc.category, delta, bank)
            if delta > 0:
                self._reserve(core, alloc.category, (alloc.device, alloc.bank), bank, delta)
            bank.used += delta
            alloc.nbytes = nbytes
            self._count(alloc, delta)
            if delta < 0:
                self._release((alloc.device, alloc.bank), bank)
            if trace.recorder is not None: trace.recorder.memory(alloc.device, alloc.bank, bank.used)  # noqa: E701

    def _count(self, alloc: Allocation, delta: int) -> None:
        per_core = self._by_core.get(alloc.core)
        if per_core is None:
            per_core = self._by_core[alloc.core] = dict.fromkeys(CATEGORIES, 0)
        per_core[alloc.category] += delta

    def core_used(self, core: LogicalCore) -> int:
        """Bytes attributed to one logical core (O(1): from the per-core counters, not the allocations)."""
        with self._lock:
            per_core = self._by_core.get(core.global_id)
            return sum(per_core.values()) if per_core else 0

    def core_limit(self, core: LogicalCore) -> int:
        """Bytes the core may reach: its HBM bank's capacity less what other processes hold on that bank."""
        key = (core.device, core.hbm_bank)
        others = 0 if self.ledger is None else sum(e.nbytes for e in self.ledger.others(key))
        return self._capacities[key] - others

    def last_known_limit(self, core: LogicalCore) -> int:
        """``core_limit`` as of this process's last ledger scan, without taking the ledger's lock (for publishing)."""
        key = (core.device, core.hbm_bank)
        others = 0 if self.ledger is None else self.ledger.seen_others.get(key, 0)
        return self._capacities[key] - others

    def bank_used(self, device: int, bank: int) -> int:
        with self._lock:
            return self._banks[(device, bank)].used

    def usage_by_category(self, core: LogicalCore) -> dict[str, int]:
        """Bytes per category attributed to one core (for tools and tests)."""
        with self._lock:
            per_core = self._by_core.get(core.global_id)
            return dict(per_core) if per_core else dict.fromkeys(CATEGORIES, 0)

    def usage_table(self, device: int, bank_index: int) -> list[str]:
        """The runtime's ``Displaying Current Memory Utilization`` table for one HBM bank."""
        with self._lock:
            allocs = list(self._banks[(device, bank_index)].allocations)
        head = "| " + " | ".join(f"{c:>12}" for c in ("",) + TABLE_COLUMNS) + " |"
        lines = [head]

        def row(label: str, subset: list[Allocation], neff: bool = False) -> str:
            cols = {c: 0 for c in TABLE_COLUMNS}
            for a in subset:
                cols[CATEGORIES[a.category]] += a.nbytes
                cols["TOTAL"] += a.nbytes
            cells = [("n/a" if neff and c in _NEFF_NA else format_bytes(cols[c])) for c in TABLE_COLUMNS]
            return "| " + " | ".join(f"{x:>12}" for x in [label] + cells) + " |"

        lines.append(row(f"ND {device} HBM {bank_index}", allocs))
        for core_id in sorted({a.core for a in allocs}):
            on_core = [a for a in allocs if a.core == core_id]
            lines.append(row(f"\\_NC {core_id}", on_core))
            for owner in sorted({a.owner for a in on_core if a.owner is not None}):
                lines.append(row(f"  \\_NEFF {owner}", [a for a in on_core if a.owner == owner], neff=True))
        owners = sorted({a.owner for a in allocs if a.owner is not None})
        if owners:
            lines.append("NEFF id to name mapping:")
            lines.extend(f"  {o}: {self.neff_names.get(o, '?')}" for o in owners)
        return lines

    def _oom(self, core: LogicalCore, category: str, nbytes: int, bank: _Bank,
             others: list[MemoryEntry] = ()) -> OutOfDeviceMemory:
        # called with the lock held: build the log from a snapshot without re-locking
        sharers = [c.global_id for c in self._machine.cores
                   if c.device == core.device and c.hbm_bank == core.hbm_bank]
        lines: list[tuple[str, str, str]] = []
        if len(sharers) > 1:
            names = " and ".join(f"NC {c}" for c in sharers)
            lines.append(("TDRV", "print_lnc_hbm_details",
                          f"LNC size is {self._machine.lnc}. Neuron Cores using this HBM: {names}"))
        usage = category.replace("async_reservations", "tensors")
        msg = (f"Failed to allocate {format_bytes(nbytes)} (alignment: none, usage: {usage}) on "
               f"ND {core.device}:NC {core.global_id}")
        lines.append(("TDRV", "log_dev_mem", msg))
        lines.append(("TDRV", "log_dev_mem_usage_table", "Displaying Current Memory Utilization:"))
        self._lock.release()
        try:
            table = self.usage_table(core.device, core.hbm_bank)
        finally:
            self._lock.acquire()
        lines.extend(("TDRV", "log_dev_mem_usage_table", t) for t in table)
        for e in others:
            command = " ".join(e.command.split())
            command = command if len(command) <= 60 else command[:57] + "..."
            lines.append(("TDRV", "log_dev_mem",
                          f"HBM {core.hbm_bank} of ND {core.device} also holds {format_bytes(e.nbytes)} of another "
                          f"process on this machine: PID {e.pid} ({command})"))
        free = max(0, bank.capacity - bank.used - sum(e.nbytes for e in others))
        return OutOfDeviceMemory(
            f"{msg}: {format_bytes(free)} free of {format_bytes(bank.capacity)} in HBM {core.hbm_bank} "
            f"of device {core.device}", lines)
