"""NEURON_RT_RESET_CORES: nrt_init resets the NeuronCores it reserves (default since RT 2.10.15).

A reset takes ``RESET_TIME_S`` of simulated time on every reserved core (all in parallel; nrt_init returns after
it), logs one line per device and clears what processes that ended without nrt_close left on the reset cores'
HBM banks (their device-memory ledger entries; their published records are ignored and removed by every reader,
their core locks died with them). With the reset off, that
state stays, still counted against device memory, and nrt_init warns about it: the release notes' "resetting of
the Neuron Driver after application crash" era, until some runtime resets those cores.

Where the seeds are silent: the reset time (50 ms) and the line wording are neuron_sim's; the work a crashed
process had queued lived in its own memory (the async queue) and ended with it.

State owned here: none (the ledger belongs to memory_ledger, the timelines to execution).
"""
from __future__ import annotations

from pathlib import Path

from neuron_sim import nrtlog
from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.memory_ledger import MemoryEntry, read_machine_memory
from neuron_sim.ranges import format_ranges

RESET_TIME_S = 0.050


def banks(machine: Machine, reservation) -> frozenset[tuple[int, int]]:
    """The HBM banks of the reserved cores: the ledger clears their leftovers when this runtime claims its entry
    (one ``memory.lock`` section with its first reservation); none without a state directory."""
    if reservation.state_dir is None:
        return frozenset()
    return frozenset(_banks(machine, reservation.logical_cores))


def _banks(machine: Machine, logical_cores: tuple[int, ...]) -> set[tuple[int, int]]:
    return {(machine.core(g).device, machine.core(g).hbm_bank) for g in logical_cores}


def report(rt) -> list[MemoryEntry]:
    """Log what the reset cleared (the ledger did it while this runtime claimed its entry); returns it."""
    cleared = [] if rt.memory.ledger is None else rt.memory.ledger.cleared
    for pid in sorted({e.pid for e in cleared}):
        nbytes = sum(e.nbytes for e in cleared if e.pid == pid)
        nrtlog.info("NRT", "nrt_init", f"Reset cleared {nbytes} bytes of device memory left by exited process {pid}")
    return cleared


def charge(rt) -> None:
    """The reset's simulated time on every reserved core, and its log line per device."""
    start = rt.clock.thread_now()
    end = max(cs.timeline.reserve(start, RESET_TIME_S)[1] for cs in rt.cores)
    rt.clock.wait_until(end)
    if nrtlog.enabled("INFO", "TDRV"):
        by_device: dict[int, list[int]] = {}
        for cs in rt.cores:
            by_device.setdefault(cs.core.device, []).append(cs.core.local_id)
        for device, ncs in by_device.items():
            nrtlog.info("TDRV", "tdrv_reset_mla", f"Reset NeuronCore(s) {format_ranges(ncs)} of Neuron Device "
                        f"{device} in {RESET_TIME_S * 1e3:.0f} ms (NEURON_RT_RESET_CORES=1)")


def warn_leftovers(state_dir: Path | None, machine: Machine, logical_cores: tuple[int, ...]) -> list[MemoryEntry]:
    """With the reset off: warn about state exited processes left on the reserved cores' banks (kept as is)."""
    if state_dir is None:
        return []
    banks = _banks(machine, logical_cores)
    left = [e for b in read_machine_memory(state_dir, machine) if (b.device, b.bank) in banks
            for e in b.entries if not e.alive]
    for pid in sorted({e.pid for e in left}):
        nbytes = sum(e.nbytes for e in left if e.pid == pid)
        nrtlog.warn("NRT", "nrt_init", f"NeuronCores were not reset (NEURON_RT_RESET_CORES=0): {nbytes} bytes of "
                    f"device memory left by exited process {pid} stay allocated on their HBM; set "
                    "NEURON_RT_RESET_CORES=1 to reset the cores at init")
    return left
