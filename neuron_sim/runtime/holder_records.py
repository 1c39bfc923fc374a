"""Holder records: who holds a NeuronCore, as written into its lock file and read back for errors and listings.

A record is one JSON line. Anything that does not parse as the current format (truncated, binary, hand-edited,
an older format) decodes to ``None``: the caller then reports the core's holder as unknown (pid 0, command "?")
instead of failing, because a later process must never be broken by what an earlier one left on disk.

State owned here: none in memory; the encoding of the holder record written into a lock file.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterable

from neuron_sim.ranges import format_ranges

RECORD_FORMAT = "neuron_sim.reservation/1"
MAX_RECORD_BYTES = 64 * 1024      # more than any real record; bounds what a reader loads from a garbage file
MAX_COMMAND_CHARS = 4096          # stored in the record
SHOWN_COMMAND_CHARS = 60          # shown in a holder line, truncated with "..." as neuron-ls does
UNKNOWN_PID = 0
UNKNOWN_TEXT = "?"


@dataclass(frozen=True)
class Holder:
    """A process holding NeuronCores, as its lock files describe it (pid 0 / command "?" when unreadable)."""

    pid: int
    command: str
    start_time: float                 # epoch seconds the holding process started (0.0 when unknown)
    runtime_version: str
    physical_cores: tuple[int, ...]   # machine-wide physical ids this process holds
    logical_cores: tuple[int, ...]    # as the holder numbered them (global logical ids at its LNC)

    @property
    def known(self) -> bool:
        return self.pid != UNKNOWN_PID


def unknown_holder(physical_cores: tuple[int, ...], logical_cores: tuple[int, ...]) -> Holder:
    """The holder of cores whose lock files are held but carry no readable record."""
    return Holder(UNKNOWN_PID, UNKNOWN_TEXT, 0.0, UNKNOWN_TEXT, physical_cores, logical_cores)


_this_process: dict[str, tuple[int, object]] = {}     # what /proc says of this process, by pid (forks re-read)


def _per_process(key: str, read):  # type: ignore[no-untyped-def]
    """``read()`` once per process: a process's command line and start time do not change while it runs."""
    pid = os.getpid()
    known = _this_process.get(key)
    if known is None or known[0] != pid:
        known = _this_process[key] = (pid, read())
    return known[1]


def process_command() -> str:
    """This process's command line: /proc/self/cmdline where it exists, else the interpreter and sys.argv."""
    return _per_process("command", _read_command)


def _read_command() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read(MAX_COMMAND_CHARS * 4)
        parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]
        if parts:
            return " ".join(parts)[:MAX_COMMAND_CHARS]
    except OSError:
        pass
    return " ".join([sys.executable or "python", *sys.argv])[:MAX_COMMAND_CHARS]


def process_start_time() -> float:
    """Epoch seconds this process started (from /proc on Linux); the current time where /proc is missing."""
    return _per_process("start_time", _read_start_time)


def _read_start_time() -> float:
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        fields = stat[stat.rindex(")") + 2:].split()
        ticks = int(fields[19])                       # field 22 "starttime", counted after "pid (comm)"
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def encode_record(holder: Holder) -> bytes:
    """The one-line JSON record a holder writes into each lock file it holds."""
    record = {
        "format": RECORD_FORMAT,
        "pid": holder.pid,
        "command": holder.command[:MAX_COMMAND_CHARS],
        "start_time": holder.start_time,
        "runtime_version": holder.runtime_version,
        "physical_cores": list(holder.physical_cores),
        "logical_cores": list(holder.logical_cores),
    }
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def _core_ids(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, list) or len(value) > 4096:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 20 for v in value):
        return None
    return tuple(value)


def decode_record(data: bytes) -> Holder | None:
    """The Holder a lock file's bytes describe, or None for anything that is not a current-format record."""
    if not data or len(data) > MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    pid, command, start, version = (record.get(k) for k in ("pid", "command", "start_time", "runtime_version"))
    physical, logical = _core_ids(record.get("physical_cores")), _core_ids(record.get("logical_cores"))
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 31:
        return None
    if not isinstance(command, str) or not isinstance(version, str):
        return None
    if not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) or start < 0:
        return None
    if physical is None or logical is None:
        return None
    return Holder(pid, command, float(start), version, physical, logical)


def format_core_ids(ids: Iterable[int]) -> str:
    """Core ids as runs: ``3-5``, ``7``, ``0-2,6``."""
    return format_ranges(ids)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (EPERM counts as existing: it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_line(holder: Holder, cores_label: str) -> str:
    """A log line naming who holds ``cores_label`` (already formatted in the reader's numbering)."""
    if not holder.known:
        return (f"NeuronCore(s) {cores_label} held by an unknown process "
                f"(its lock file has no readable holder record)")
    command = " ".join(holder.command.split())      # one log line: no newlines from `python -c` scripts
    if len(command) > SHOWN_COMMAND_CHARS:
        command = command[: SHOWN_COMMAND_CHARS - 3] + "..."
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.start_time))
    line = f"NeuronCore(s) {cores_label} held by PID {holder.pid} ({command}), started {started}"
    if not pid_alive(holder.pid):
        line += ", which has exited: a process it forked still holds the cores"
    return line
