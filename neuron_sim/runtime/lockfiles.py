"""OS advisory lock files: open a state file whatever is on disk, ``flock`` it, read and write its small record.

``flock`` (BSD semantics) is used, not ``fcntl``/``lockf`` record locks: a flock belongs to the open file
description, so (a) closing some *other* descriptor of the same file never drops it (record locks are dropped by
any close of the file in the process), (b) two descriptions opened in one process conflict like two processes do,
and (c) a forked child shares the description and so keeps the lock while it lives. The kernel drops a lock when
the last descriptor of its description closes, however the process ends.

The state directory is a security boundary: nothing is created, truncated or written outside it. Every open uses
O_NOFOLLOW (a planted symlink is refused, never followed) and O_NONBLOCK (a planted FIFO cannot hang us), and the
open file must be a regular file (fstat), else the state is refused with NRT_FAILURE naming the path and the fix.
Nothing is ever opened with O_TRUNC: a record is replaced only once its lock is held. The state directory itself is
created 0700 and refused when it is a symlink, owned by another user, or writable by group or others.

Garbage *content* never stops the lock from working: a regular file we may not write is locked through a read-only
descriptor (its record cannot be written, so its holder lists as unknown, or as the last holder that could write
it); a file we own but may not read or write gets its normal mode back (0o666 less the umask).

State owned here: none in memory; the lock files of the state directory and their descriptors.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from neuron_sim.status import NrtError, NrtStatus

from neuron_sim.runtime.holder_records import MAX_RECORD_BYTES

ALLOCATION_LOCK_NAME = "alloc.lock"
_COMMON_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass
class LockFile:
    """An open descriptor of one lock file; ``writable`` says whether a holder record can be written to it.

    ``identity`` is the open file's (inode, device), taken when it was opened: ``names_same_file`` compares the
    path against it with one ``stat``, so a descriptor kept between runtimes is checked without an ``fstat``.
    ``size`` lets a record rewritten under a lock held all along skip the ``fstat`` for a longer old tail.
    """

    path: Path | str
    fd: int
    writable: bool
    identity: tuple[int, int] | None = None
    size: int | None = None         # the file's length as our last write left it, while we hold its lock

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def names_same_file(self) -> bool:
        """Whether ``path`` still names the file this descriptor has open (not removed, replaced or a symlink)."""
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
            mine = self.identity
            if mine is None:
                st = os.fstat(self.fd)
                mine = self.identity = (st.st_ino, st.st_dev)
        except OSError:
            return False
        return (on_disk.st_ino, on_disk.st_dev) == mine


def core_lock_path(state_dir: Path, physical_id: int) -> Path:
    """``nc<NNN>.lock`` for a machine-wide physical NeuronCore id."""
    return Path(core_lock_name(state_dir, physical_id))


def core_lock_name(state_dir: Path | str, physical_id: int) -> str:
    """``core_lock_path`` as a string (the reservation's hot path builds no Path objects)."""
    return os.path.join(state_dir, f"nc{physical_id:03d}.lock")


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _state_error(path: Path, exc: OSError, hint: str) -> NrtError:
    reason = exc.strerror or type(exc).__name__
    return NrtError(NrtStatus.FAILURE, f"cannot use the NeuronCore state file {path} ({reason}); {hint}")


def _check_private_dir(path: Path) -> None:
    """Refuse a state directory that is a symlink, not a directory, foreign-owned, or writable by others."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _state_error(path, exc, "set NEURON_SIM_STATE_DIR to a writable directory") from exc
    if stat.S_ISLNK(st.st_mode):
        raise _refused(path, "it is a symbolic link", "remove it; neuron_sim creates a private directory there")
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(path, "it is not a directory", "remove it or set NEURON_SIM_STATE_DIR")
    if st.st_uid != os.getuid():
        raise _refused(path, f"it is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})",
                       "remove it, or set NEURON_SIM_STATE_DIR to a directory of your own")
    if st.st_mode & 0o022:
        raise _refused(path, f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
                       f"run `chmod go-w {path}` or set NEURON_SIM_STATE_DIR to a private directory")


def _refused(path: Path, cause: str, hint: str) -> NrtError:
    return NrtError(NrtStatus.FAILURE, f"refusing the NeuronCore state directory {path}: {cause}; {hint}")


def ensure_state_dir(state_dir: Path | str, private_parent: bool = False) -> None:
    """Create the state directory race-free, mode 0700, and refuse it unless it is a private directory of ours.

    ``private_parent``: the parent is the predictable default root (``<tmp>/neuron_sim-<uid>``), so it is held to
    the same rule; a parent named by NEURON_SIM_STATE_DIR is only created (with its parents) if missing.
    An existing directory costs one ``lstat`` (two with a private parent): nothing is created then.
    """
    state_dir = os.fspath(state_dir)
    parent = os.path.dirname(state_dir) or "."
    if private_parent:
        _make_private_dir(parent)
    elif _private_dir_exists(state_dir):
        return
    else:
        try:
            os.makedirs(parent, mode=0o777, exist_ok=True)
        except FileExistsError as exc:     # a non-directory sits where the state directory should be
            raise _state_error(parent, exc, "it must be a directory: remove it or set NEURON_SIM_STATE_DIR") from exc
        except OSError as exc:
            raise _state_error(parent, exc, "set NEURON_SIM_STATE_DIR to a writable directory") from exc
    _make_private_dir(state_dir)


def _private_dir_exists(path: str) -> bool:
    """Whether ``path`` already is a directory that ``_check_private_dir`` accepts (never raises)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _make_private_dir(path: str) -> None:
    if _private_dir_exists(path):
        return
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _state_error(path, exc, "set NEURON_SIM_STATE_DIR to a writable directory") from exc
    _check_private_dir(path)


def _not_regular(path: Path, st: os.stat_result) -> NrtError | None:
    """An error when the open file is not a regular file (a directory, FIFO, device, socket), else None."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return NrtError(NrtStatus.FAILURE, f"cannot use the NeuronCore state file {path}: it is {kind}, not a regular "
                                       f"file; remove it, neuron_sim recreates it")


def _open_regular(path: Path, flags: int, writable: bool, mode: int = 0o666) -> LockFile:
    """os.open without following symlinks; the LockFile of a regular file, else NrtError (FAILURE)."""
    try:
        fd = os.open(path, flags | _COMMON_FLAGS, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NrtError(NrtStatus.FAILURE, f"cannot use the NeuronCore state file {path}: it is a symbolic "
                                              f"link, which neuron_sim never follows; remove it") from None
        raise
    try:
        st = os.fstat(fd)
        error = _not_regular(path, st)
    except BaseException:
        os.close(fd)
        raise
    if error is not None:
        os.close(fd)
        raise error
    return LockFile(path, fd, writable, (st.st_ino, st.st_dev))


def open_for_locking(path: Path) -> LockFile:
    """Open (creating if missing) a regular lock file for taking its lock, never following a symlink."""
    repaired = False
    while True:
        try:
            return _open_regular(path, os.O_RDWR | os.O_CREAT, True)
        except IsADirectoryError:
            raise NrtError(NrtStatus.FAILURE, f"cannot use the NeuronCore state file {path}: it is a directory, "
                                              f"not a regular file; remove it, neuron_sim recreates it") from None
        except PermissionError:
            if not repaired and _repair_mode(path):
                repaired = True
                continue
        except NrtError:
            raise
        except OSError as exc:
            raise _state_error(path, exc, "remove it; neuron_sim recreates it") from exc
        try:
            return _open_regular(path, os.O_RDONLY, False)
        except OSError as exc:
            raise _state_error(path, exc, "make it and its directory readable and writable, "
                                          "or set NEURON_SIM_STATE_DIR") from exc


def open_for_probing(path: Path) -> LockFile | None:
    """Open an existing regular lock file read-only to see whether it is held; None when missing or not one."""
    try:
        return _open_regular(path, os.O_RDONLY, False)
    except (OSError, NrtError):
        return None


def open_existing_for_locking(path: Path) -> LockFile | None:
    """Open an existing regular lock file read-write, never creating it; None when missing, not one, or ours to
    read only (a file another process just deleted is never brought back)."""
    try:
        return _open_regular(path, os.O_RDWR, True)
    except (OSError, NrtError):
        return None


def _repair_mode(path: Path) -> bool:
    """Give a lock file of ours that we may not read or write its normal mode back; False if not ours."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode):
            return False
        os.chmod(f"/proc/self/fd/{fd}", 0o666 & ~_umask() | stat.S_IRUSR | stat.S_IWUSR)   # the file itself
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _flock_nonblocking(lock: LockFile, operation: int) -> bool:
    """Try ``flock(operation | LOCK_NB)``: True when taken, False when another open file description holds it."""
    try:
        fcntl.flock(lock.fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise _state_error(lock.path, exc, "the state directory must be on a local filesystem") from exc
    return True


def try_lock_exclusive(lock: LockFile) -> bool:
    """Take the exclusive lock without waiting; False when another open file description holds it."""
    return _flock_nonblocking(lock, fcntl.LOCK_EX)


def is_held(lock: LockFile) -> bool:
    """Whether someone holds the exclusive lock: probe with a non-blocking shared lock and drop it at once."""
    if not _flock_nonblocking(lock, fcntl.LOCK_SH):
        return True
    fcntl.flock(lock.fd, fcntl.LOCK_UN)
    return False


def unlock(lock: LockFile) -> None:
    """Drop the lock of this open file description (for every process sharing it) and close it."""
    lock.size = None
    try:
        fcntl.flock(lock.fd, fcntl.LOCK_UN)
    finally:
        lock.close()


def write_record(lock: LockFile, data: bytes) -> bool:
    """Replace the file's content with ``data``; False when it cannot be written (read-only, FIFO, full disk)."""
    if not lock.writable:
        return False
    known, lock.size = lock.size, None
    try:
        if os.pwrite(lock.fd, data, 0) != len(data):
            return False
        if (known is None or known > len(data)) and os.fstat(lock.fd).st_size > len(data):
            os.ftruncate(lock.fd, len(data))          # a longer old record or garbage: cut its tail
        lock.size = len(data)
        return True
    except OSError:
        return False


def read_record(lock: LockFile) -> bytes:
    """The first bytes of the file (bounded), or b"" when it cannot be read (a directory, a FIFO)."""
    try:
        return os.pread(lock.fd, MAX_RECORD_BYTES + 1, 0)
    except OSError:
        return b""


# Unlocked descriptors of mutex files (alloc.lock, memory.lock), kept between uses: taking a mutex is then a
# ``stat`` (the name still is that very file) and a flock, not an open, fstat and close. A descriptor in use is
# out of the pool: two threads never share one open file description (they would not exclude each other).
_IDLE_FILES = 4                                  # mutex files kept (two state directories' worth)
_idle: dict[str, LockFile] = {}
_idle_lock = threading.Lock()


def _take_mutex_file(path: str) -> LockFile:
    with _idle_lock:
        lock = _idle.pop(path, None)
    if lock is not None:
        if lock.names_same_file():
            return lock
        lock.close()                             # removed or replaced meanwhile: never lock a file no one sees
    return open_for_locking(path)


def _keep_mutex_file(lock: LockFile) -> None:
    with _idle_lock:
        closing = [old for old in (_idle.pop(lock.path, None),) if old is not None]
        _idle[lock.path] = lock
        while len(_idle) > _IDLE_FILES:
            closing.append(_idle.pop(next(iter(_idle))))
    for old in closing:
        old.close()


def _forget_mutex_files_in_child() -> None:
    for lock in _idle.values():
        lock.close()                             # the parent's open file descriptions: never shared
    _idle.clear()


os.register_at_fork(after_in_child=_forget_mutex_files_in_child)


class AllocationLock:
    """The namespace-wide mutex (blocking LOCK_EX on ``alloc.lock``) that makes find-and-take atomic.

    ``shared=True`` takes LOCK_SH instead: many optimistic takers at once, excluded only by exclusive holders.
    """

    def __init__(self, state_dir: Path | str, name: str = ALLOCATION_LOCK_NAME, shared: bool = False) -> None:
        self._path = os.path.join(state_dir, name)
        self._lock: LockFile | None = None
        self._operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX

    def __enter__(self) -> "AllocationLock":
        lock = _take_mutex_file(self._path)
        try:
            fcntl.flock(lock.fd, self._operation)
        except OSError as exc:
            lock.close()
            raise _state_error(self._path, exc, "the state directory must be on a local filesystem") from exc
        self._lock = lock
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            try:
                fcntl.flock(lock.fd, fcntl.LOCK_UN)
            except BaseException:
                lock.close()
                raise
            _keep_mutex_file(lock)
