"""Published runtime state: each runtime process keeps one JSON record in the machine's state directory.

The record says what neuron-ls, neuron-monitor and neuron-top show: pid, command, NEURON_PROCESS_TAG, runtime
version, cores held, loaded models with their device memory, device memory by category per core, the per-core
execution counters and simulated busy time, recent latencies, the calls the fault plan failed and the process's
CPU time. nrt_init writes the first record; the process's ticker thread (``runtime.ticker``, no thread of
its own) rewrites it every ``SLOW_INTERVAL_S``, or every ``FAST_INTERVAL_S`` while a monitor holds
``monitor.lock``. The execute path only appends one latency sample to a bounded deque and bumps counters it
already kept.

The record file is created once per process (temp file + rename, never following a symlink, never outside the
state directory) and then rewritten in place under an exclusive flock, which readers take shared: a reader sees
the old or the new record, never a mix. A closed runtime leaves ``{"closed": true}`` there for the process's next
runtime to overwrite. In place because a rename over an existing file costs ~0.3 ms of the directory's lock on
ext4 (its data is flushed first), which every other process's init in that directory then waits for.

Liveness works like core reservation: the process holds an exclusive flock on ``rt-<pid>-<token>.lock`` from its
first nrt_init until it exits (kept between its runtimes, whose records carry a ``runtime`` number), so the kernel
drops it however the process ends; a reader finds the record of a dead process unlocked, ignores it and removes
it. The random token keeps a reused pid from ever matching an old record.

State owned here: this process's published record, its lock file and the ``Publisher``'s ticker task.
"""
from __future__ import annotations

import atexit
import fcntl
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from neuron_sim.runtime import ticker
from neuron_sim.runtime.holder_records import process_command, process_start_time
from neuron_sim.runtime.lockfiles import LockFile, ensure_state_dir, is_held, try_lock_exclusive
from neuron_sim.runtime.reservation import default_state_dir
from neuron_sim.status import NrtError

RECORD_FORMAT = "neuron_sim.runtime_state/1"
MAX_STATE_BYTES = 4 << 20           # bound on what a reader loads from one record
SLOW_INTERVAL_S = 1.0
FAST_INTERVAL_S = 0.25              # while a monitor watches: its records are at most this stale
RECENT_LATENCIES = 1024             # samples kept in the record for percentiles
STALE_TEMP_S = 60.0                 # a temp file older than this was left by a writer that died mid-write
MONITOR_LOCK_NAME = "monitor.lock"
TASK_NAME = "publish"               # the publisher's task on the process's ticker thread
COUNTERS = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input",
            "failed_to_queue")
_NAME = re.compile(r"^rt-(\d+)-([0-9a-f]{12})\.lock$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC   # a symlinked machine dir is refused
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def process_tag(rt: Any) -> str:
    """NEURON_PROCESS_TAG as nrt_init parsed it (at most 255 characters), or the pid as text."""
    return rt.config.process_tag or str(os.getpid())


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


_statm = (-1, -1)           # (pid, descriptor of that process's /proc/self/statm), kept open between records


def _rss_bytes() -> int:
    """The process's resident bytes (from /proc/self/statm, kept open: a record is written every second)."""
    global _statm
    pid, fd = _statm
    try:
        if pid != os.getpid():                  # first use, or a forked child (the parent's file names the parent)
            if fd >= 0:
                os.close(fd)                    # the child's copy of the parent's
            fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
            _statm = (os.getpid(), fd)
        return int(os.pread(fd, 256, 0).split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def _model_memory(model: Any) -> dict[str, dict[str, int]]:
    """A model's device bytes per core (machine-wide logical id) and category."""
    out: dict[str, dict[str, int]] = {}
    allocs = list(model.allocations) + [e["alloc"] for e in model.shared_entries if model.id in e["users"]]
    for a in allocs:
        per_core = out.setdefault(str(a.core), {})
        per_core[a.category] = per_core.get(a.category, 0) + a.nbytes
    return out


def snapshot(rt: Any, identity: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    """The record of runtime ``rt`` now (counters cumulative since nrt_init)."""
    cores = []
    for cs in rt.cores:
        core = cs.core
        stats = cs.stats
        memory = rt.memory.usage_by_category(core)
        cores.append({
            "vnc": cs.vnc, "core": core.global_id, "device": core.device, "local": core.local_id,
            "physical": list(core.physical_ids),
            "counters": {name: stats.get(name, 0) for name in COUNTERS},
            "busy_s": stats.get("device_time_s", 0.0),
            "memory": {k: v for k, v in memory.items() if v},
            "memory_limit": rt.memory.last_known_limit(core),
        })
    models = []
    from neuron_sim.runtime import faults                       # runtime side only: readers (ls) import
    from neuron_sim.runtime.models import loaded as models_of   # neither numpy nor structlog
    from neuron_sim.runtime.placement import groups as core_groups
    for model in models_of(rt):
        if model.unloaded:
            continue
        models.append({
            "id": model.id, "name": model.name, "uuid": model.neff.uuid,
            "cores": [cs.core.global_id for cs in model.cores],
            "running": model.cores[0].lock.locked(),
            "memory": _model_memory(model),
        })
    cpu = os.times()
    return {
        **identity,
        "published_at": time.time(),
        "cpu_s": {"user": cpu.user, "system": cpu.system},
        "host_memory": _rss_bytes(),
        "cores": cores,
        "groups": [[rt.cores[v].core.global_id for v in g if v < len(rt.cores)]   # NEURONCORE_GROUP_SIZES
                   for g in core_groups(rt.config.neuroncore_group_sizes)],
        "models": models,
        "latency": latency,
        "injected_faults": [{"call": call, "status": status, "count": n}
                            for (call, status), n in sorted(faults.state().totals.items())],
    }


class Publisher:
    """Keeps this runtime's record current until ``close()``; a failure to write is logged once, never raised."""

    def __init__(self, rt: Any, state_dir: Path, tag: str) -> None:
        self._rt = rt
        self._state_dir = Path(state_dir)
        pid = self._owner_pid = os.getpid()
        self._identity = {
            "format": RECORD_FORMAT, "pid": pid, "command": process_command(), "tag": tag,
            "start_time": process_start_time(), "started_at": time.time(), "runtime": next(_runtime_numbers),
            "runtime_version": rt.reservation.holder.runtime_version,
            "instance_type": rt.machine.instance_type, "lnc": rt.machine.lnc,
        }
        self._recent: deque = deque(maxlen=RECENT_LATENCIES)
        self._latency_count = 0
        self._warned = False
        self._write_lock = threading.Lock()
        # the reservation of this nrt_init made and checked the directory; a symlink there is refused by the open
        kept = _take_kept(str(self._state_dir))
        if kept is None:
            self._dir = os.open(self._state_dir, _DIR_FLAGS)
            self.name = f"rt-{pid}-{secrets.token_hex(6)}"
            self._lock_fd = self._take_liveness_lock()
            self._monitor_probe = _open_monitor_lock(self._dir)
            self._record = -1
        else:
            self.name, self._lock_fd, self._dir, self._monitor_probe, self._record = kept
        self.publish()
        ticker.schedule(TASK_NAME, self._tick, self._interval())

    def _take_liveness_lock(self) -> int:
        """Create, lock, then rename into place: a reader never sees our lock file unlocked."""
        temp = f".{self.name}.lock.tmp"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644, dir_fd=self._dir)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temp, f"{self.name}.lock", src_dir_fd=self._dir, dst_dir_fd=self._dir)
        return fd

    def _drain_latencies(self) -> dict[str, Any]:
        samples = self._rt.latency_samples
        for _ in range(len(samples)):
            self._recent.append(samples.popleft())
            self._latency_count += 1
        return {"count": self._latency_count, "recent": list(self._recent)}

    def publish(self) -> None:
        """Write the record now (atomic: readers see the old or the new one, never a mix)."""
        with self._write_lock:
            if self._dir < 0:
                return
            try:
                record = snapshot(self._rt, self._identity, self._drain_latencies())
                self._write(json.dumps(record, separators=(",", ":")).encode("utf-8"))
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    from neuron_sim import nrtlog
                    nrtlog.warn("NRT", "nrt_publish", f"Cannot publish runtime state in {self._state_dir} "
                                f"({exc.strerror or exc}); neuron-ls/monitor/top will not see this process")

    def _write(self, data: bytes) -> None:
        """Rewrite the record in place while its name still is that file; else (the first time, a file removed or
        replaced meanwhile, a reader stuck on it) create it anew, replacing whatever is at its name."""
        name = f"{self.name}.json"
        if self._record >= 0 and _names(self._record, name, self._dir) and _rewrite(self._record, data):
            return
        if self._record >= 0:
            os.close(self._record)
            self._record = -1
        self._record = _create(self._dir, name, data)

    def _interval(self) -> float:
        return FAST_INTERVAL_S if _monitor_attached(self._monitor_probe) else SLOW_INTERVAL_S

    def _tick(self) -> float | None:
        """The ticker's task: publish, then say when to publish again (None once closed)."""
        if self._dir < 0:
            return None
        self.publish()
        return self._interval()

    def close(self) -> None:
        """Stop publishing and remove the record (idempotent); the liveness lock is kept, held, for this process's
        next runtime (``_keep``); a forked child only closes its copies."""
        if os.getpid() == self._owner_pid:
            ticker.cancel(TASK_NAME)
        with self._write_lock:
            if self._dir < 0:
                return
            kept = _Kept(self.name, self._lock_fd, self._dir, self._monitor_probe, self._record)
            if os.getpid() == self._owner_pid:
                if kept.record_fd < 0 or not _rewrite(kept.record_fd, _CLOSED):
                    try:                    # no record, or a reader stuck on it: remove it (readers see it go)
                        os.unlink(self.name + ".json", dir_fd=self._dir)
                    except OSError:
                        pass
                    if kept.record_fd >= 0:
                        os.close(kept.record_fd)
                        kept.record_fd = -1
                _keep(str(self._state_dir), kept)
            else:
                kept.close()
            self._dir = -1


# This process's liveness lock per state directory, kept held between its runtimes, with the directory's and
# the monitor probe's descriptors: a warm nrt_init reuses them instead of opening the directory, creating,
# locking and renaming a lock file and opening monitor.lock (and nrt_close unlinking the lock file). Each is
# used again only while its name still is that very file (one ``stat`` each); each runtime's record carries its
# own ``runtime`` number, so readers (``read_runtimes``: ``key``) tell the runtimes of one process apart. The lock
# file goes when the process exits (atexit), or after a kill with the first reader that finds it unlocked.
class _Kept:
    """A closed runtime's liveness lock (held), state directory, monitor probe and record descriptors."""

    __slots__ = ("stem", "lock_fd", "dir_fd", "monitor_fd", "record_fd")

    def __init__(self, stem: str, lock_fd: int, dir_fd: int, monitor_fd: int, record_fd: int) -> None:
        self.stem, self.lock_fd, self.dir_fd, self.monitor_fd = stem, lock_fd, dir_fd, monitor_fd
        self.record_fd = record_fd

    def close(self) -> None:
        for fd in (self.lock_fd, self.monitor_fd, self.record_fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)


_kept: dict[str, _Kept] = {}                # state dir -> what its last runtime kept
_kept_lock = threading.Lock()
_runtime_numbers = itertools.count(1)


def _names(fd: int, name: str, dir_fd: int | None = None) -> bool:
    """Whether ``name`` (relative to ``dir_fd``) still names the file ``fd`` has open, not following a symlink."""
    try:
        on_disk, mine = os.stat(name, dir_fd=dir_fd, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)


def _take_kept(state_dir: str) -> tuple[str, int, int, int, int] | None:
    """(stem, lock fd, dir fd, monitor probe fd, record fd or -1) kept for ``state_dir`` while they still are its
    files, else None (whatever was kept is then closed: its lock file goes with the next reader). The record's
    descriptor is checked by each write (``Publisher._write``)."""
    with _kept_lock:
        kept = _kept.pop(state_dir, None)
    if kept is None:
        return None
    if _names(kept.dir_fd, state_dir) and _names(kept.lock_fd, f"{kept.stem}.lock", kept.dir_fd):
        if kept.monitor_fd < 0 or not _names(kept.monitor_fd, MONITOR_LOCK_NAME, kept.dir_fd):
            if kept.monitor_fd >= 0:
                os.close(kept.monitor_fd)
            kept.monitor_fd = _open_monitor_lock(kept.dir_fd)
        return kept.stem, kept.lock_fd, kept.dir_fd, kept.monitor_fd, kept.record_fd
    kept.close()                                    # removed or replaced meanwhile: take new ones
    return None


def _keep(state_dir: str, kept: _Kept) -> None:
    """Keep this lock for the next runtime; only the latest state directory's (a process that moves between
    machines or state directories, as a test suite does, holds one lock file, not one per directory)."""
    with _kept_lock:
        old = [(d, k) for d, k in _kept.items() if k is not kept]
        _kept.clear()
        _kept[state_dir] = kept
    for d, k in old:
        _drop(d, k)


def _drop(state_dir: str, kept: _Kept) -> None:
    """Remove a kept record (a closed one) and lock file from their directory, then drop the flock."""
    for suffix in (".json", ".lock"):
        try:
            os.unlink(f"{kept.stem}{suffix}", dir_fd=kept.dir_fd)
        except OSError:
            pass
    kept.close()


def _drop_kept_at_exit() -> None:
    with _kept_lock:
        kept = list(_kept.items())
        _kept.clear()
    for state_dir, k in kept:
        _drop(state_dir, k)


def _forget_kept_in_child() -> None:
    for k in _kept.values():
        k.close()                                   # the parent's: its flock stays with the parent
    _kept.clear()


os.register_at_fork(after_in_child=_forget_kept_in_child)
atexit.register(_drop_kept_at_exit)


_CLOSED = b'{"closed":true}'           # what a closed runtime leaves in its record for the next one
_LOCK_TRIES = 50                       # a reader or writer holds a record's flock for microseconds: try this
_LOCK_PAUSE_S = 0.0002                 # many times this apart, then give up (a stopped process must not stall us)


def _create(dir_fd: int, name: str, data: bytes) -> int:
    """Create the record ``name`` holding ``data`` (temp file + rename: readers never see it half written);
    returns its descriptor, open for the in-place rewrites that follow."""
    temp = f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644, dir_fd=dir_fd)
    try:
        _write_all(fd, data)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    return fd


def _rewrite(fd: int, data: bytes) -> bool:
    """Replace the record's content under its exclusive flock; False when readers keep it locked."""
    if not _flock(fd, fcntl.LOCK_EX):
        return False
    try:
        _write_all(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)


def _flock(fd: int, kind: int) -> bool:
    """Take ``kind`` (shared or exclusive) on ``fd`` without ever blocking for long."""
    for _ in range(_LOCK_TRIES):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(_LOCK_PAUSE_S)
        except OSError:
            return False
    return False


def _open_monitor_lock(dir_fd: int) -> int:
    try:
        return os.open(MONITOR_LOCK_NAME, os.O_RDWR | os.O_CREAT | _FILE_FLAGS, 0o666, dir_fd=dir_fd)
    except OSError:
        return -1


def _monitor_attached(fd: int) -> bool:
    """Whether a monitor holds its shared lock on ``monitor.lock`` (probe: a non-blocking exclusive lock)."""
    if fd < 0:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class MonitorAttachment:
    """Held by neuron-monitor / neuron-top while they watch: runtimes then publish every FAST_INTERVAL_S."""

    def __init__(self, state_dir: Path) -> None:
        ensure_state_dir(Path(state_dir))
        dir_fd = os.open(state_dir, _DIR_FLAGS)
        try:
            self._fd = os.open(MONITOR_LOCK_NAME, os.O_RDWR | os.O_CREAT | _FILE_FLAGS, 0o666, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _read_bounded(dir_fd: int, name: str) -> bytes | None:
    """A record's bytes, read under its shared flock (so never half rewritten); None when it cannot be read."""
    try:
        fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > MAX_STATE_BYTES:
            return None
        _flock(fd, fcntl.LOCK_SH)           # not taken (a writer stopped mid-write): the JSON check decides
        return os.read(fd, MAX_STATE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)                        # drops the shared flock with it


def _valid(record: object, pid: int) -> bool:
    return (isinstance(record, dict) and record.get("format") == RECORD_FORMAT and record.get("pid") == pid
            and isinstance(record.get("cores"), list) and isinstance(record.get("models"), list)
            and isinstance(record.get("tag"), str))


def _reap(dir_fd: int, stem: str, fd: int) -> None:
    """Remove a dead runtime's record; only the reader that gets the lock removes (its holder is gone)."""
    if not try_lock_exclusive(LockFile(Path(stem), fd, False)):
        return
    for suffix in (".json", ".lock"):
        try:
            os.unlink(stem + suffix, dir_fd=dir_fd)
        except OSError:
            pass


def _remove_stale_temps(dir_fd: int, names: list[str]) -> None:
    now = time.time()
    for name in names:
        if name.startswith(".rt-") and name.endswith(".tmp"):
            try:
                if now - os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime > STALE_TEMP_S:
                    os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass


def read_runtimes(state_dir: Path) -> list[dict[str, Any]]:
    """Records of the live runtime processes of a machine's state directory, by pid; dead ones are removed."""
    try:
        dir_fd = os.open(state_dir, _DIR_FLAGS)
    except OSError:
        return []
    records = []
    try:
        names = os.listdir(dir_fd)
        for name in names:
            match = _NAME.match(name)
            if match is None:
                continue
            stem = name[: -len(".lock")]
            try:
                fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                lock = LockFile(Path(name), fd, False)
                if not is_held(lock):
                    _reap(dir_fd, stem, fd)
                    continue
            finally:
                os.close(fd)
            data = _read_bounded(dir_fd, stem + ".json")
            try:
                record = json.loads(data) if data else None
            except (ValueError, UnicodeDecodeError, RecursionError):
                record = None
            if _valid(record, int(match.group(1))):
                record["key"] = f"{stem}#{record.get('runtime', 0)}"     # one process's runtimes one by one
                records.append(record)
        _remove_stale_temps(dir_fd, names)
    finally:
        os.close(dir_fd)
    records.sort(key=lambda r: (r["pid"], r["key"]))
    return records


def attach(rt: Any) -> Publisher | None:
    """Start publishing ``rt``'s state (nrt_init); None, with a warning, when the state dir refuses it."""
    state_dir = rt.reservation.state_dir or default_state_dir(
        rt.machine, {"NEURON_SIM_STATE_DIR": rt.config.state_dir} if rt.config.state_dir else {})
    try:
        return Publisher(rt, state_dir, process_tag(rt))
    except (OSError, NrtError) as exc:
        from neuron_sim import nrtlog
        nrtlog.warn("NRT", "nrt_init", f"Cannot publish runtime state in {state_dir} ({getattr(exc, 'strerror', None) or exc}); "
                    "neuron-ls/monitor/top will not see this process")
        return None
