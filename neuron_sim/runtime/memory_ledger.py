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

State owned here: this process's ledger file and its reservation per HBM bank, and the descriptors of the other
processes' ledger files it keeps open between scans (used only with ``memory.lock`` held).
"""
from __future__ import annotations

import atexit
import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.holder_records import MAX_COMMAND_CHARS, MAX_RECORD_BYTES, process_command
from neuron_sim.runtime.lockfiles import (
    AllocationLock, LockFile, is_held, open_existing_for_locking, open_for_locking, open_for_probing, read_record,
    try_lock_exclusive, unlock, write_record,
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
    return [Path(state_dir) / n for n in _ledger_names(str(state_dir))]


def _ledger_names(state_dir: str) -> list[str]:
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("mem-") and n.endswith(".ledger"))


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


class _Peers:
    """The other processes' ledger files, kept open between scans (call with ``memory.lock`` held).

    A scan lists the directory, opens only files it has not seen, probes each lock, and decodes a record only
    when its bytes changed: a process's allocations cost a few system calls per neighbour, not an open and a
    JSON decode each. Files are named by their path as a string (no pathlib on this path).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = str(state_dir)
        self.files: dict[str, tuple[LockFile, bytes, tuple[int, str, dict[BankKey, int]] | None]] = {}
        self.lock = threading.Lock()          # threads of this process (several may hold the shared mutex)

    def live(self, skip: str | None, tidy: bool = True) -> list[Record]:
        return [record for _, record in self.scan(skip, tidy)]

    def scan(self, skip: str | None, tidy: bool = True) -> list[tuple[str, Record]]:
        """(path, record) of every other ledger file with something to account, live or left behind.

        ``tidy``: delete the files of ended processes with nothing left to account (only with ``memory.lock`` held
        exclusively: under the shared lock a process may be claiming that very name).
        """
        paths = {os.path.join(self.state_dir, n) for n in _ledger_names(self.state_dir)}
        with self.lock:
            for path in [p for p in self.files if p not in paths]:
                self.files.pop(path)[0].close()
            out = []
            for path in sorted(paths):
                if path != skip:
                    record = self._read(path, tidy)
                    if record is not None:
                        out.append((path, record))
        return out

    def _read(self, path: str, tidy: bool = True) -> Record | None:
        """As ``_live_entries`` for one file: live or left behind, None when absent or nothing to account."""
        known = self.files.pop(path, None)
        while True:
            fresh = known is None
            if fresh:
                lock = open_for_probing(path)
                if lock is None:
                    return None
                known = (lock, b"", None)
            lock = known[0]
            alive = is_held(lock)
            if not alive and not fresh and not _same_file(path, lock):
                lock.close()                          # the name is a newer file now: read that one
                known = None
                continue
            data = read_record(lock)
            record = known[2] if data == known[1] else _decode(data)
            if record is None or not (alive or record[2]):
                if not alive and tidy:                # nothing left to account: drop the file
                    _unlink_if_same(path, lock)
                lock.close()
                return None
            self.files[path] = (lock, data, record)
            return (*record, alive)

    def close(self) -> None:
        for lock, _, _ in self.files.values():
            lock.close()
        self.files.clear()


_peers: dict[Path, _Peers] = {}       # per state directory, for every runtime of this process (nrt_init again)
_peers_lock = threading.Lock()


def _peers_of(state_dir: Path) -> _Peers:
    with _peers_lock:
        peers = _peers.get(state_dir)
        if peers is None:
            peers = _peers[state_dir] = _Peers(state_dir)
        return peers


# This process's ledger file per state directory, kept locked with an empty record between its runtimes: a warm
# nrt_init rewrites it instead of creating a file (a create and an unlink per init/close cycle cost more than the
# rest of the ledger's work). It goes when the process ends: the next reader deletes an unlocked empty file.
_kept: dict[str, LockFile] = {}
_kept_lock = threading.Lock()


def _take_kept(state_dir: str) -> LockFile | None:
    with _kept_lock:
        lock = _kept.pop(state_dir, None)
    if lock is not None and not _same_file(lock.path, lock):
        lock.close()                                  # removed or replaced meanwhile: claim afresh
        return None
    return lock


def _keep(state_dir: str, lock: LockFile) -> None:
    """Keep the file for the next runtime; only the latest state directory's (one file per process, not one per
    directory it ever used)."""
    with _kept_lock:
        old = [k for k in _kept.values() if k is not lock]
        _kept.clear()
        _kept[state_dir] = lock
    for k in old:
        _drop(k)


def _drop(lock: LockFile) -> None:
    """Delete this process's ledger file, then its flock (a reader sees it live or not at all)."""
    try:
        os.unlink(lock.path)
    except OSError:
        pass
    unlock(lock)


def _forget_kept_in_child() -> None:
    for lock in _kept.values():
        lock.close()                                  # the parent's: its flock stays with the parent
    _kept.clear()


def _drop_kept_at_exit() -> None:
    with _kept_lock:
        kept = list(_kept.values())
        _kept.clear()
    for lock in kept:
        _drop(lock)


os.register_at_fork(after_in_child=_forget_kept_in_child)
atexit.register(_drop_kept_at_exit)             # a normal exit leaves no empty file behind (a kill does, for a reader)


def _same_file(path: Path, lock: LockFile) -> bool:
    """Whether ``path`` still names the file ``lock`` has open."""
    if os.fspath(path) == os.fspath(lock.path):
        return lock.names_same_file()
    try:
        on_disk, mine = os.stat(path, follow_symlinks=False), os.fstat(lock.fd)
    except OSError:
        return False
    return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)


def _unlink_if_same(path: Path, lock: LockFile) -> None:
    """Delete a dead process's ledger file, unless the name now belongs to a newer file."""
    if _same_file(path, lock):
        try:
            os.unlink(path)
        except OSError:
            pass


class ResetFailed(NrtError):
    """The leftovers of ended processes could not be cleared (the state directory refused a write)."""


def clear_leftovers(state_dir: Path, banks: set[BankKey]) -> list[MemoryEntry]:
    """Reset: drop what ended processes left on ``banks`` (NEURON_RT_RESET_CORES); returns what was cleared."""
    state_dir = Path(state_dir)
    with AllocationLock(state_dir, LEDGER_LOCK_NAME):
        return _clear_leftovers_locked(_peers_of(state_dir), banks)


def _clear_leftovers_locked(peers: _Peers, banks: set[BankKey]) -> list[MemoryEntry]:
    """``clear_leftovers`` with ``memory.lock`` held. The scan is the kept-open one of ``_Peers``: only the files
    of ended processes with bytes on ``banks`` are opened for writing, so a reset with nothing to clear costs a
    probe per neighbour."""
    cleared: list[MemoryEntry] = []
    for path, (_, _, held, alive) in peers.scan(None):
        if alive or not any(k in banks for k in held):
            continue
        lock = open_existing_for_locking(path)
        if lock is None:
            continue
        try:
            if not try_lock_exclusive(lock):
                continue                          # taken over since the scan: a live process's file now
            record = _decode(read_record(lock))
            if record is None:
                continue
            pid, command, held = record
            gone = {k: n for k, n in held.items() if k in banks}
            if not gone:
                continue
            rest = {k: n for k, n in held.items() if k not in banks}
            try:
                if rest:
                    os.ftruncate(lock.fd, 0)
                    write_record(lock, _encode(pid, command, rest))
                else:
                    os.unlink(path)
            except OSError as exc:
                raise ResetFailed(NrtStatus.FAILURE, f"Cannot reset the NeuronCores' state in the state directory "
                                                     f"(NEURON_SIM_STATE_DIR): {exc}") from None
            cleared.extend(MemoryEntry(pid, command, n, alive=False) for n in gone.values())
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
    """This process's entry in the ledger; the caller (DeviceMemory) serialises calls with its own lock.

    The file is claimed at the first reservation, in the same ``memory.lock`` section as its scan of the
    neighbours, so nrt_init takes the ledger mutex once; nrt_close deletes the file without taking it.
    """

    def __init__(self, state_dir: Path, capacities: dict[BankKey, int],
                 reset_banks: set[BankKey] | frozenset[BankKey] = frozenset()) -> None:
        self.state_dir = Path(state_dir)
        self.capacities = capacities
        self.reserved: dict[BankKey, int] = defaultdict(int)    # bytes per bank (0 until reserved)
        self.seen_others: dict[BankKey, int] = {}   # other processes' bytes per bank at our last scan
        self.cleared: list[MemoryEntry] = []        # what the reset at the claim took from ended processes
        self._reset_banks = set(reset_banks)        # NEURON_RT_RESET_CORES: cleared of leftovers at the claim
        self._pid = os.getpid()
        self._command = process_command()
        self._peers = _peers_of(self.state_dir)
        self._file: LockFile | None = None          # claimed by the first grow (or ``claim``)
        self._closed = False

    def claim(self) -> None:
        """Take this process's ledger file and reset ``reset_banks`` now, if the first grow did not (idempotent)."""
        if (self._file is None or self._reset_banks) and not self._closed:
            with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
                self._claim_locked()

    def _claim_locked(self) -> None:
        """With ``memory.lock`` held exclusively: the reset, then this process's file."""
        if self._reset_banks:
            self.cleared = _clear_leftovers_locked(self._peers, self._reset_banks)
            self._reset_banks = set()
        if self._file is None:
            self._file = self._claim_file()

    def _first_reservation(self, key: BankKey, needed: int) -> bool:
        """nrt_init's common case without the exclusive mutex: claim and reserve under the *shared* ``memory.lock``.

        Write first, then scan: of two processes racing for the last room of a bank, at least one sees the other's
        reservation (each reads after its own write) and backs off; exclusive holders (grows, resets, readers)
        never overlap. False (reservation withdrawn) sends the caller to the exclusive path: too little room
        seen, or leftovers of ended processes to reset on this runtime's banks.
        """
        want = min(_round_up(needed), self.capacities[key])
        if needed > want:
            return False
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME, shared=True):
            self._file = self._claim_file()
            if not self._write(key, want):
                return False
            room, leftovers = self.capacities[key], False
            seen: dict[BankKey, int] = {}
            for _, (_, _, banks, alive) in self._peers.scan(self._file.path, tidy=False):
                for k, n in banks.items():
                    seen[k] = seen.get(k, 0) + n
                    leftovers = leftovers or (not alive and k in self._reset_banks)
            self.seen_others = seen
            if want + seen.get(key, 0) <= room and not leftovers:
                self._reset_banks = set()                 # nothing an ended process left here to reset
                return True
            self._write(key, 0)                           # withdrawn: the exclusive path decides
        return False

    def _claim_file(self) -> LockFile:
        """Take ``mem-<pid>[.<n>].ledger`` (call with ``memory.lock`` held); a stale record there is replaced."""
        kept = _take_kept(str(self.state_dir))
        if kept is not None:
            if not any(self.reserved.values()):
                return kept                           # it holds our empty record already (written by close)
            if write_record(kept, _encode(self._pid, self._command, self.reserved)):
                return kept
            _drop(kept)
        for n in range(64):
            lock = open_for_locking(os.path.join(self.state_dir, _ledger_name(self._pid, n)))
            if lock.writable and try_lock_exclusive(lock):
                write_record(lock, _encode(self._pid, self._command, self.reserved))
                return lock
            lock.close()
        raise NrtError(NrtStatus.FAILURE, f"cannot claim a device-memory ledger file in {self.state_dir}")

    def others(self, key: BankKey) -> list[MemoryEntry]:
        """The other live processes' bytes on one bank."""
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            return self._others(key)

    def _others(self, key: BankKey) -> list[MemoryEntry]:
        seen: dict[BankKey, int] = {}
        out = []
        for pid, cmd, banks, alive in self._peers.live(None if self._file is None else self._file.path):
            for k, n in banks.items():
                seen[k] = seen.get(k, 0) + n
            if banks.get(key):
                out.append(MemoryEntry(pid, cmd, banks[key], alive))
        self.seen_others = seen
        return out

    def grow(self, key: BankKey, needed: int) -> list[MemoryEntry] | None:
        """Reserve at least ``needed`` bytes on a bank; None when done, else the neighbours that leave too little."""
        if self._closed:
            return []                                 # after nrt_close nothing more is reserved
        if self._file is None and self._first_reservation(key, needed):
            return None
        with AllocationLock(self.state_dir, LEDGER_LOCK_NAME):
            self._claim_locked()
            others = self._others(key)
            room = self.capacities[key] - sum(e.nbytes for e in others)
            if needed > room:
                return others
            return None if self._write(key, min(_round_up(needed), room)) else others

    def shrink(self, key: BankKey, used: int) -> None:
        """Give back whole chunks once the reservation exceeds the use by more than two chunks (hysteresis)."""
        if self._file is not None and self._file.fd >= 0 and self.reserved[key] - used > 2 * CHUNK_BYTES:
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
        """Empty this process's entry (idempotent); a killed process's entry stays until a reset clears it.

        No ``memory.lock``, since bytes only go: the record is rewritten empty and the file kept, locked, for the
        process's next runtime (a reader sees it live with our bytes, or live with none). A file that cannot be
        rewritten is deleted, name first, then flock, so a reader never takes it for an ended process's leftover.
        """
        self._closed = True
        lock, self._file = self._file, None
        if lock is None or lock.fd < 0:
            return
        if os.getpid() != self._pid:                  # a forked child: its copy only, the parent keeps its entry
            lock.close()
            return
        if write_record(lock, _encode(self._pid, self._command, {})):
            _keep(str(self.state_dir), lock)
        else:
            _drop(lock)
