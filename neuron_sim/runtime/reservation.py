"""Exclusive NeuronCore reservation across processes, through one flock'd lock file per physical NeuronCore.

nrt_init calls ``reserve``; the Reservation is held until ``release`` (nrt_close) or process exit. The kernel drops
the locks however the process ends, as the Neuron driver's flush handlers unmark a dead process's cores, so no
stale reservation can exist. docs/reservation.md describes the layout and protocol.

Decisions where the spec is silent:
- Locks are per *physical* core; a logical core (LNC=2) is free only when all its physical cores are, so LNC=1
  and LNC=2 processes on one machine exclude each other.
- NEURON_RT_NUM_CORES=n takes the first run of n contiguous free logical cores (lowest start: the driver's
  first-fit); 0 means every core of the machine. A count larger than the machine fails like a busy machine.
- "Available" in the count message is the number of free logical cores of the machine (the documented 6th-process
  example: Requested:3 Available:1). When that is >= the request but no run is contiguous, the message adds
  ``(no N contiguous free cores; largest free run M)``. For a NEURON_RT_VISIBLE_CORES range it is the number of
  requested cores that are free.
- An error names only the holders that block the request: those of the requested cores for a range, everyone
  for a count. Holder lines number cores as the *requesting* process does (its LNC), adding physical ids when
  its LNC is above 1.
- ``release()`` in the process that reserved unlocks the cores for every process sharing the lock (a forked child
  included), as nrt_close frees cores on hardware; in a forked child it only closes the child's copies and the
  parent keeps the cores. A process that ends without release leaves the cores to any forked child still alive.
- A machine's namespace is its instance type, or ``topology-<12 hex of sha256(realpath of the file)>``; LNC is not
  part of it, since processes at either LNC share the same physical cores.
- list_holders gives one Holder per pid (a process normally holds one reservation); its physical_cores are the
  lock files found held, its logical_cores come from the records (the holder's own numbering).
- A request that cannot be valid (range outside the machine, not contiguous, negative count) is NRT_INVALID with
  the reason, never NRT_RESOURCE.

State owned here: this process's ``Reservation`` (the held lock files of its cores) and the spare, unlocked
descriptors of busy cores' lock files that the optimistic path keeps for its next attempt.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from neuron_sim.hardware.model import LogicalCore, Machine
from neuron_sim.runtime.holder_records import (
    Holder, decode_record, encode_record, format_core_ids, holder_line, process_command, process_start_time,
    unknown_holder,
)
from neuron_sim.runtime.lockfiles import (
    AllocationLock, LockFile, core_lock_name, core_lock_path, ensure_state_dir, is_held, open_for_locking, open_for_probing,
    read_record, try_lock_exclusive, unlock, write_record,
)
from neuron_sim.status import NrtError, NrtStatus

__all__ = ["CoresUnavailable", "Holder", "Reservation", "default_state_dir", "holder_lines", "list_holders",
           "machine_namespace", "reserve"]

STATE_DIR_VARIABLE = "NEURON_SIM_STATE_DIR"


class CoresUnavailable(NrtError):
    """The requested NeuronCores are held by other processes (NRT_RESOURCE), with lines naming each holder."""

    def __init__(self, message: str, requested: str, available: int, holders: tuple[Holder, ...],
                 lines: tuple[str, ...]) -> None:
        super().__init__(NrtStatus.RESOURCE, message)
        self.requested = requested
        self.available = available
        self.holders = holders
        self.lines = lines

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.requested, self.available, self.holders, self.lines))


class Reservation:
    """NeuronCores this process holds exclusively until ``release()`` or exit."""

    def __init__(self, logical_cores: tuple[int, ...], physical_cores: tuple[int, ...], holder: Holder,
                 locks: list[LockFile], state_dir: Path | None = None) -> None:
        self.logical_cores = logical_cores
        self.physical_cores = physical_cores
        self.state_dir = state_dir
        self.holder = holder
        self._locks = locks
        self._owner_pid = os.getpid()
        self._guard = threading.Lock()

    @property
    def released(self) -> bool:
        return not self._locks

    def release(self) -> None:
        """Free the cores (idempotent); in a forked child only the child's inherited copies are closed."""
        with self._guard:
            locks, self._locks = self._locks, []
        owner = os.getpid() == self._owner_pid
        for lock in locks:
            if owner:
                _unlock_to_spare(lock)                # this process's next nrt_init retries it without an open
            else:
                lock.close()

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return (f"Reservation(logical_cores={format_core_ids(self.logical_cores) or '-'}, "
                f"physical_cores={format_core_ids(self.physical_cores) or '-'}, {state})")


def machine_namespace(machine: Machine) -> str:
    """The state subdirectory of a simulated machine: its instance type, or ``topology-<hash>`` of its file."""
    if machine.source == "catalog":
        return re.sub(r"[^a-z0-9._-]", "_", machine.instance_type.lower()) or "unnamed"
    source = os.path.realpath(machine.source) if os.path.exists(machine.source) else machine.source
    return "topology-" + hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def default_root() -> Path:
    """The state root when NEURON_SIM_STATE_DIR is unset: ``<tmp>/neuron_sim-<uid>``, a predictable name."""
    return Path(_default_root_name())


def _default_root_name() -> str:
    return os.path.join(tempfile.gettempdir(), f"neuron_sim-{os.getuid()}")


# default_state_dir per (setting, working directory, catalog machine): a warm nrt_init builds no Path
_state_dirs: dict[tuple[str, str, str, str], Path] = {}


def default_state_dir(machine: Machine, environ: Mapping[str, str] | None = None) -> Path:
    """NEURON_SIM_STATE_DIR (or <tmp>/neuron_sim-<uid>) plus the machine's namespace subdirectory.

    A value whose ``~user`` cannot be expanded is NRT_INVALID naming the variable (never a relative ``~x`` dir).
    """
    env = os.environ if environ is None else environ
    base = env.get(STATE_DIR_VARIABLE, "")
    if machine.source != "catalog" or base.startswith("~"):
        return _state_dir(machine, base)
    key = (base, "" if base.startswith("/") else os.getcwd(), machine.instance_type, tempfile.gettempdir())
    found = _state_dirs.get(key)
    if found is None:
        found = _state_dir(machine, base)
        if len(_state_dirs) >= 16:
            _state_dirs.clear()
        _state_dirs[key] = found
    return found


def _state_dir(machine: Machine, base: str) -> Path:
    if not base:
        return default_root() / machine_namespace(machine)
    expanded = os.path.expanduser(base)
    if expanded.startswith("~"):
        raise NrtError(NrtStatus.INVALID, f"{STATE_DIR_VARIABLE}={base!r}: cannot expand "
                                          f"{expanded.split('/', 1)[0]!r} (no such user or no home directory); "
                                          f"expected a directory path such as /tmp/neuron_sim-state")
    return Path(expanded).absolute() / machine_namespace(machine)


def _logical_label(ids: tuple[int, ...]) -> str:
    return f"lnc{ids[0]}-lnc{ids[-1]}"


def _check_request(machine: Machine, visible: tuple[int, ...] | None, num_cores: int) -> tuple[int, ...] | None:
    """Validate the request's shape against the machine; the logical ids wanted, or None for a count."""
    total = machine.total_cores
    if visible is not None:
        ids = tuple(visible)
        if not ids or any(b != a + 1 for a, b in zip(ids, ids[1:])):
            raise NrtError(NrtStatus.INVALID, f"NEURON_RT_VISIBLE_CORES must name contiguous increasing cores, "
                                              f"got {list(ids)}")
        if ids[0] < 0 or ids[-1] >= total:
            raise NrtError(NrtStatus.INVALID,
                           f"NEURON_RT_VISIBLE_CORES={format_core_ids(ids)} names logical cores the machine does "
                           f"not have: {machine.instance_type} has {total} (0-{total - 1}) at LNC {machine.lnc}")
        return ids
    if isinstance(num_cores, bool) or not isinstance(num_cores, int) or num_cores < 0:
        raise NrtError(NrtStatus.INVALID, f"NEURON_RT_NUM_CORES must be an integer from 0 (all) to {total}, "
                                          f"got {num_cores!r}")
    return None


class _Probe:
    """The machine's lock files, opened and probed on demand under the allocation lock."""

    def __init__(self, state_dir: Path, machine: Machine) -> None:
        self.state_dir = state_dir
        self.machine = machine
        self.locks: dict[int, LockFile] = {}
        self.busy: set[int] = set()

    def free(self, core: LogicalCore) -> bool:
        for phys in core.physical_ids:
            if phys not in self.locks:
                lock = open_for_locking(core_lock_path(self.state_dir, phys))
                self.locks[phys] = lock
                if is_held(lock):
                    self.busy.add(phys)
        return not any(p in self.busy for p in core.physical_ids)

    def first_fit(self, n: int) -> int | None:
        """Start of the first run of ``n`` free logical cores, probing only as far as needed."""
        run = 0
        for i, core in enumerate(self.machine.cores):
            run = run + 1 if self.free(core) else 0
            if run == n:
                return i - n + 1
        return None

    def close(self, keep: set[int] | frozenset[int] = frozenset()) -> None:
        for phys, lock in self.locks.items():
            if phys not in keep:
                lock.close()


def _largest_run(free: list[bool]) -> int:
    best = run = 0
    for ok in free:
        run = run + 1 if ok else 0
        best = max(best, run)
    return best


def _holders_of(locks: dict[int, LockFile], busy: set[int], machine: Machine) -> list[Holder]:
    """Group busy physical cores by the pid their lock file's record names (unknown when unreadable)."""
    records: dict[int, Holder] = {}
    physical: dict[int, list[int]] = {}
    logical: dict[int, set[int]] = {}
    for core in sorted(busy):
        record = decode_record(read_record(locks[core])) if core in locks else None
        pid = 0 if record is None else record.pid
        if record is not None:
            records.setdefault(pid, record)
            logical.setdefault(pid, set()).update(record.logical_cores)
        physical.setdefault(pid, []).append(core)
    holders = []
    for pid, cores in physical.items():
        if pid == 0:
            held = set(cores)
            ids = tuple(c.global_id for c in machine.cores if held & set(c.physical_ids))
            holders.append(unknown_holder(tuple(cores), ids))
        else:
            r = records[pid]
            holders.append(Holder(pid, r.command, r.start_time, r.runtime_version, tuple(cores),
                                  tuple(sorted(logical[pid]))))
    holders.sort(key=lambda h: h.physical_cores[0])
    return holders


def _holder_lines(holders: list[Holder], machine: Machine) -> tuple[str, ...]:
    lines = []
    for holder in holders:
        held = set(holder.physical_cores)
        logical = [c.global_id for c in machine.cores if held & set(c.physical_ids)]
        label = format_core_ids(logical)
        if machine.lnc > 1:
            label += f" (physical {format_core_ids(holder.physical_cores)})"
        lines.append(holder_line(holder, label))
    return tuple(lines)


def _unavailable(probe: _Probe, wanted: tuple[int, ...] | None, n: int) -> CoresUnavailable:
    machine = probe.machine
    cores = machine.cores if wanted is None else tuple(machine.cores[i] for i in wanted)
    free = [probe.free(c) for c in cores]              # probes whatever the search did not reach
    available = sum(free)
    if wanted is not None:
        requested = _logical_label(wanted)
        blocking = {p for c in cores for p in c.physical_ids} & probe.busy
        message = (f"Logical Neuron Core(s) not available - Requested:{requested} Available:{available} "
                   f"Logical Core size:{machine.lnc} (cores busy, ret=-16)")
    else:
        requested = str(n)
        blocking = set(probe.busy)
        message = (f"Logical Neuron Core(s) not available - Requested:{n} Available:{available} "
                   f"Logical Core size {machine.lnc}")
        if available >= n:
            message += f" (no {n} contiguous free cores; largest free run {_largest_run(free)})"
    holders = _holders_of(probe.locks, blocking, machine)
    return CoresUnavailable(message, requested, available, tuple(holders), _holder_lines(holders, machine))


# Unlocked descriptors of core lock files (busy cores' and the cores this process released), kept between its
# reservations: a later nrt_init retries them without opening every file again. A descriptor that takes its lock
# leaves the cache. Only the latest state directory's are kept (a test suite's many directories leak none).
_spare: dict[str, LockFile] = {}
_spare_dir: list[str] = [""]
_spare_lock = threading.Lock()


def _open_spare(path: str) -> LockFile:
    """The kept descriptor of ``path`` while the name still is that very file (one ``stat``), else a fresh open."""
    with _spare_lock:
        lock = _spare.pop(path, None)
    if lock is not None:
        if lock.names_same_file():
            return lock
        lock.close()                                  # replaced or removed: never lock a file no one else sees
    return open_for_locking(path)


def _unlock_to_spare(lock: LockFile) -> None:
    """Drop a held core lock (for every process sharing it) and keep the descriptor as a spare."""
    lock.size = None
    try:
        fcntl.flock(lock.fd, fcntl.LOCK_UN)
    except BaseException:
        lock.close()
        raise
    _keep_spare(lock)


def _forget_spares_in_child() -> None:
    """A forked child never uses its parent's spare descriptors: the two would share one open file description,
    so both would get its lock."""
    for lock in _spare.values():
        lock.close()
    _spare.clear()
    _spare_dir[0] = ""


os.register_at_fork(after_in_child=_forget_spares_in_child)


def _keep_spare(lock: LockFile) -> None:
    path = os.fspath(lock.path)
    directory = os.path.dirname(path)
    with _spare_lock:
        if directory != _spare_dir[0]:
            closing = list(_spare.values())
            _spare.clear()
            _spare_dir[0] = directory
        else:
            closing = [old for old in (_spare.get(path),) if old is not None and old is not lock]
        _spare[path] = lock
    for old in closing:
        old.close()


def _try_take(state_dir: str, cores: tuple[LogicalCore, ...], held: list[LockFile]) -> int:
    """Lock every physical core of ``cores`` without waiting, appending to ``held``; the index of the first logical
    core that could not be taken (its locks and those after it are not held), or len(cores) when all were."""
    for i, core in enumerate(cores):
        for phys in core.physical_ids:
            lock = _open_spare(core_lock_name(state_dir, phys))
            if not try_lock_exclusive(lock):
                _keep_spare(lock)
                return i
            held.append(lock)
    return len(cores)


def _take_optimistically(state_dir: Path, machine: Machine, wanted: tuple[int, ...] | None, n: int,
                         identity: tuple[int, str, float], runtime_version: str) -> Reservation | None:
    """The fast path: take free cores with per-core non-blocking locks, without reading any holder's record.

    Runs under the allocation lock held *exclusively* but briefly (one non-blocking try per core until a free run):
    two takers that ran side by side under a shared lock could make each other skip a run they each saw half
    taken, leaving holes that break first fit (five 3-core processes on 16 cores, one refused). No core is ever
    held twice: flock is the owner. None when this path found nothing (the exact path then decides and explains).
    """
    cores = machine.cores
    if n > len(cores):
        return None
    starts = [wanted[0]] if wanted is not None else range(len(cores) - n + 1)
    directory = str(state_dir)
    with AllocationLock(directory):                # exclusive: takers never see each other's half-taken runs
        start_at = 0
        for start in starts:
            if start < start_at:
                continue
            held: list[LockFile] = []
            try:
                got = _try_take(directory, cores[start:start + n], held)
            except BaseException:
                for lock in held:
                    unlock(lock)
                raise
            if got == n:
                chosen = cores[start:start + n]
                physical = tuple(p for c in chosen for p in c.physical_ids)
                holder = Holder(*identity, runtime_version, physical, tuple(c.global_id for c in chosen))
                record = encode_record(holder)
                for lock in held:
                    write_record(lock, record)
                return Reservation(holder.logical_cores, physical, holder, held, state_dir)
            for lock in held:
                unlock(lock)
            start_at = start + got + 1             # no run through the busy core can start before it
    return None


def reserve(state_dir: Path, machine: Machine, *, visible: tuple[int, ...] | None, num_cores: int,
            runtime_version: str) -> Reservation:
    """Take ``visible`` (all or nothing), else the first ``num_cores`` contiguous free cores (0 = all of them)."""
    wanted = _check_request(machine, visible, num_cores)
    n = len(wanted) if wanted is not None else (num_cores or machine.total_cores)
    if not isinstance(state_dir, Path):
        state_dir = Path(state_dir)
    directory = str(state_dir)
    ensure_state_dir(directory, private_parent=os.path.dirname(directory) == _default_root_name())
    identity = (os.getpid(), process_command(), process_start_time())
    taken = _take_optimistically(state_dir, machine, wanted, n, identity, runtime_version)
    if taken is not None:
        return taken
    with AllocationLock(state_dir):
        probe = _Probe(state_dir, machine)
        kept: set[int] = set()
        try:
            if wanted is not None:
                start = wanted[0] if all([probe.free(machine.cores[i]) for i in wanted]) else None
            else:
                start = probe.first_fit(n) if n <= machine.total_cores else None
            if start is None:
                raise _unavailable(probe, wanted, n)
            cores = machine.cores[start:start + n]
            physical = tuple(p for c in cores for p in c.physical_ids)
            for phys in physical:
                if not try_lock_exclusive(probe.locks[phys]):  # only a non-cooperating prober can cause this
                    probe.busy.add(phys)
                    raise _unavailable(probe, wanted, n)
                kept.add(phys)
            holder = Holder(*identity, runtime_version, physical, tuple(c.global_id for c in cores))
            record = encode_record(holder)
            for phys in physical:
                write_record(probe.locks[phys], record)
            locks = [probe.locks[p] for p in physical]
        except BaseException:
            for phys in kept:
                unlock(probe.locks[phys])
            probe.close(keep=kept)
            raise
        probe.close(keep=kept)
    return Reservation(holder.logical_cores, physical, holder, locks, state_dir)


def list_holders(state_dir: Path, machine: Machine) -> list[Holder]:
    """The processes holding cores of ``machine`` in ``state_dir``, one Holder per pid, by lowest core."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir() or state_dir.is_symlink():
        return []
    with AllocationLock(state_dir):
        locks: dict[int, LockFile] = {}
        busy: set[int] = set()
        try:
            for phys in sorted({p for core in machine.cores for p in core.physical_ids}):
                lock = open_for_probing(core_lock_path(state_dir, phys))
                if lock is None:
                    continue
                locks[phys] = lock
                if is_held(lock):
                    busy.add(phys)
            return _holders_of(locks, busy, machine)
        finally:
            for lock in locks.values():
                lock.close()


def holder_lines(holders: list[Holder], machine: Machine) -> tuple[str, ...]:
    """Log lines naming each holder's cores in ``machine``'s numbering (what CoresUnavailable.lines holds)."""
    return _holder_lines(list(holders), machine)
