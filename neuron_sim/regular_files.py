"""Open and read files the runtime is pointed at, accepting regular files only and reading a bounded amount.

A FIFO, device or directory given as a NEFF, topology or log location would block the runtime or read
without end (``/dev/zero``); these helpers refuse them with an OSError whose ``strerror`` says why, so the
caller can turn it into a status and a log line.
"""
from __future__ import annotations

import errno
import os
import stat


def open_regular(path: str | os.PathLike, what: str, flags: int = os.O_RDONLY, mode: int = 0o644,
                 allow_null: bool = False) -> int:
    """A descriptor of ``path`` opened without blocking; OSError unless it is a regular file (or, with
    ``allow_null``, the null device)."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) and not (allow_null and _is_null(st)):
            raise OSError(errno.EINVAL, f"{what} must be a regular file, {os.fspath(path)} is not")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_null(st: os.stat_result) -> bool:
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev


def read_regular(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes; OSError naming the cause otherwise."""
    fd = open_regular(path, what)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"{what} {os.fspath(path)} is larger than {limit} bytes")
    return data
