"""The machine-wide device-memory ledger: what every process of a simulated machine holds on each HBM bank.

On hardware, HBM is one pool per bank whoever allocates from it. Each runtime process owns one ledger file in the
machine's state directory (``mem-<pid>.ledger``), holds an exclusive flock on it for its whole life and writes into
it the bytes it has *reserved* per HBM bank. Readers and writers serialise on ``memory.lock``. An entry whose file
is no longer locked belongs to a process that ended without nrt_close (the kernel drops the lock however the process
ends): it is *leftover* device state, still counted on its banks (``MemoryEntry.alive`` False) until a runtime
initialising with NEURON_RT_RESET_CORES resets cores on those banks (``clear_leftovers``), as the release notes
describe for runtimes before cores were reset at init. Unreadable dead files are deleted by the next reader.
docs/memory.md describes the protocol and the chunking.

Allocation stays cheap: a process reserves in chunks (``CHUNK_BYTES``), so a tensor allocation inside the chunk
touches no file; only crossing the reservation (grow) or dropping more than two chunks below it (shrink) writes.

State owned here: this process's ledger file and its reservation per HBM bank.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.holder_records import MAX_COMMAND_CHARS, MAX_RECORD_BYTES, process_command
from neuron_sim.runtime.lockfiles import (
    AllocationLock, LockFile, is_held, open_for_locking, open_for_probing, read_record, try_lock_exclusive,
    unlock, write_record,
)
from neuron_sim.status import NrtError, NrtStatus

LEDGER_LOCK_NAME = "memory.lock"
LEDGER_FORMAT = "neuron_sim.memory/1"
CHUNK_BYTES = 32 << 20      # a neighbour may be refused at most this much early per other process

BankKey = tuple[int, int]   # (device index, HBM bank index)


@dataclass(frozen=True)
class MemoryEntry:
    """Bytes one process holds on one HBM bank, as its ledger file says."""

    pid: int
    command: str
    nbytes: int
    alive: bool = True          # False: left behind by a process that ended without nrt_close


@dataclass(frozen=True)
class BankMemory:
    """One HBM bank of a machine: its capacity and the bytes each live process holds on it."""

    device: int
    bank: int
    capacity: int
    entries: tuple[MemoryEntry, ...]

    @property
    def used(self) -> int:
        return sum(e.nbytes for e in self.entries)


def _ledger_name(pid: int, n: int) -> str:
    return f"mem-{pid}.ledger" if n == 0 else f"mem-{pid}.{n}.ledger"


def _encode(pid: int, command: str, reserved: dict[BankKey, int]) -> bytes:
    record = {"format": LEDGER_FORMAT, "pid": pid, "command": command[:MAX_COMMAND_CHARS],
              "banks": {f"{d}:{b}": n for (d, b), n in sorted(reserved.items()) if n}}
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def _decode(data: bytes) -> tuple[int, str, dict[BankKey, int]] | None:
    """(pid, command, bytes per bank) of a ledger record; None for anything else (ignored, never fatal)."""
    if not data or len(data) > MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
        if not isinstance(record, dict) or record.get("format") != LEDGER_FORMAT:
            return None
        pid, command, banks = record["pid"], record["command"], record["banks"]
        if not isinstance(pid, int) or not isinstance(command, str) or not isinstance(banks, dict):
            return None
        out: dict[BankKey, int] = {}
        for key, n in banks.items():
            d, b = (int(x) for x in key.split(":"))
            if isinstance(n, int) and not isinstance(n, bool) and n > 0:
                out[(d, b)] = n
        return pid, command, out
    except (UnicodeDecodeError, ValueError, KeyError, AttributeError, RecursionError):
        return None


def _ledger_files(state_dir: Path) -> list[Path]:
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    return [Path(state_dir) / n for n in sorted(names) if n.startswith("mem-") and n.endswith(".ledger")]


Record = tuple[int, str, dict[BankKey, int], bool]     # pid, command, bytes per bank, alive


def _live_entries(state_dir: Path, skip: Path | None = None) -> list[Record]:
    """Every process's record, live or left behind (unreadable dead files are deleted); call with ``memory.lock``."""
    out = []
    for path in _ledger_files(state_dir):
        if path == skip:
            continue
        lock = open_for_probing(path)
        if lock is None:
            continue
        try:
            alive = is_held(lock)
            record = _decode(read_record(lock))
            if record is None or not (alive or record[2]):
                if not alive:                     # nothing left to account: drop the file
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                continue
            out.append((*record, alive))
        finally:
            lock.close()
    return out


def clear_leftovers(state_dir: Path, banks: set[BankKey]) -> list[MemoryEntry]:
    """Reset: drop what ended processes left on ``banks`` (NEURON_RT_RESET_CORES); returns what was cleared."""
    cleared: list[MemoryEntry] = []
    state_dir = Path(state_dir)
    with AllocationLock(state_dir, LEDGER_LOCK_NAME):
        for path in _ledger_files(state_dir):
            lock = open_for_locking(path)
            try:
                if not lock.writable or not try_lock_exclusive(lock):
                    continue                      # a live process's file (or one we may not touch)
                record = _decode(read_record(lock))
                if record is None:
                    continue
                pid, command, held = record
                gone = {k: n for k, n in held.items() if k in banks}
                if not gone:
                    continue
                cleared.extend(MemoryEntry(pid, command, n, alive=False) for n in gone.values())
                rest = {k: n for k, n in held.items() if k not in banks}
                if rest:
                    os.ftruncate(lock.fd, 0)
                    write_record(lock, _encode(pid, command, rest))
                else:
                    os.unlink(path)
            finally:
                lock.close()
    return cleared


def read_machine_memory(state_dir: Path, machine: Machine) -> list[BankMemory]:
    """Machine-wide device memory per HBM bank, from the ledger (for tools: neuron-sim ls -a, monitors)."""
    state_dir = Path(state_dir)
    entries: list[Record] = []
    if state_dir.is_dir() and not state_dir.is_symlink():
        with AllocationLock(state_dir, LEDGER_LOCK_NAME):
            entries = _live_entries(state_dir)
    banks = []
    for device in machine.devices:
        for hbm in device.hbm_banks:
            key = (device.index, hbm.index)
            held = tuple(MemoryEntry(pid, cmd, b[key], alive) for pid, cmd, b, alive in entries if b.get(key))
            banks.append(BankMemory(device.index, hbm.index, hbm.capacity, held))
    return banks


def _round_up(n: int) -> int:
    return -(-n // CHUNK_BYTES) * CHUNK_BYTES


class MemoryLedger:
    """This process's entry in the ledger; the caller (DeviceMemory) serialises calls with its own lock."""

    def __init__(self, state_dir: Path, capacities: dict[BankKey, int]) -> None:
        self.state_dir = Path(state_dir)
        self.capacities = capacities
        self.reserved: dict[BankKey, int] = {k: 0 for k in capacities}
        self._pid = os.getpid()
        self._command = process_command()
        self._file = self._claim_file()

    def _claim_file(self) -> LockFile:
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            for n in range(64):
                lock = open_for_locking(self.state_dir / _ledger_name(self._pid, n))
                if lock.writable and try_lock_exclusive(lock):
                    write_record(lock, _encode(self._pid, self._command, self.reserved))   # replaces stale
                    return lock
                lock.close()
        raise NrtError(NrtStatus.FAILURE, f"cannot claim a device-memory ledger file in {self.state_dir}")

    def others(self, key: BankKey) -> list[MemoryEntry]:
        """The other live processes' bytes on one bank."""
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            return self._others(key)

    def _others(self, key: BankKey) -> list[MemoryEntry]:
        return [MemoryEntry(pid, cmd, b[key], alive) for pid, cmd, b, alive in _live_entries(self.state_dir,
                                                                                             self._file.path)
                if b.get(key)]

    def grow(self, key: BankKey, needed: int) -> list[MemoryEntry] | None:
        """Reserve at least ``needed`` bytes on a bank; None when done, else the neighbours that leave too little."""
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            others = self._others(key)
            room = self.capacities[key] - sum(e.nbytes for e in others)
            if needed > room:
                return others
            return None if self._write(key, min(_round_up(needed), room)) else others

    def shrink(self, key: BankKey, used: int) -> None:
        """Give back whole chunks once the reservation exceeds the use by more than two chunks (hysteresis)."""
        if self.reserved[key] - used > 2 * CHUNK_BYTES:
            with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
                self._write(key, _round_up(used))

    def _write(self, key: BankKey, nbytes: int) -> bool:
        before = self.reserved[key]
        self.reserved[key] = nbytes
        if write_record(self._file, _encode(self._pid, self._command, self.reserved)):
            return True
        self.reserved[key] = before
        return False

    def close(self) -> None:
        """Remove this process's entry (idempotent); a killed process's entry stays until a reset clears it."""
        if self._file.fd < 0:
            return
        if os.getpid() != self._pid:                  # a forked child: its copy only, the parent keeps its entry
            self._file.close()
            return
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            try:
                os.unlink(self._file.path)
            except OSError:
                pass
            unlock(self._file)
