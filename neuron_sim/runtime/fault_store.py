"""The machine-wide fault plan: ``faults.json`` in the machine's state directory, shared by all its processes.

Writers (``neuron-sim faults add|clear``, the ``neuron_faults`` fixture) hold ``faults.lock`` while they
read, change and atomically replace the file (a new file created with O_EXCL|O_NOFOLLOW, then renamed over
the old one), so readers never see half a plan. Nothing is written outside the state directory and no
symlink there is followed. ``generation`` grows on every clear: processes take it as a reset of the devices
that fell off.

State owned here: the machine's ``faults.json`` and ``faults.lock`` in the state directory.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from neuron_sim.runtime.fault_plan import Fault, FaultPlanError, parse_plan
from neuron_sim.runtime.lockfiles import ensure_state_dir, open_for_locking, unlock

PLAN_NAME = "faults.json"
LOCK_NAME = "faults.lock"
FORMAT = "neuron_sim.faults/1"
MAX_PLAN_BYTES = 1 << 20


@dataclass(frozen=True)
class StoredPlan:
    """The plan as stored: its faults, the clear generation and the next fault id."""

    faults: tuple[Fault, ...] = ()
    generation: int = 0
    next_id: int = 1


def plan_path(state_dir: Path) -> Path:
    return Path(state_dir) / PLAN_NAME


def signature(state_dir: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, inode, size) of the plan file, None when absent: cheap change detection."""
    try:
        st = os.stat(os.path.join(state_dir, PLAN_NAME), follow_symlinks=False)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def read(state_dir: Path) -> StoredPlan:
    """The stored plan (empty when there is none); FaultPlanError when the file is not a plan."""
    path = plan_path(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return StoredPlan()
    except OSError as exc:
        raise FaultPlanError(f"cannot read the fault plan {path}: {exc.strerror}; remove it "
                             "(neuron-sim faults clear)") from None
    with os.fdopen(fd, "rb") as f:
        body = f.read(MAX_PLAN_BYTES + 1)
    try:
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        generation, next_id = data.get("generation", 0), data.get("next_id", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (generation, next_id)):
            raise ValueError("bad generation or next_id")
        return StoredPlan(parse_plan(data), generation, next_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FaultPlanError(f"the fault plan {path} is damaged ({exc}); remove it with "
                             "neuron-sim faults clear") from None


def _write(state_dir: Path, plan: StoredPlan) -> None:
    body = json.dumps({"format": FORMAT, "generation": plan.generation, "next_id": plan.next_id,
                       "faults": [f.to_json() for f in plan.faults]}, indent=1).encode()
    tmp = Path(state_dir) / f".{PLAN_NAME}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)                      # a stale temp file (or a link planted there): removed, not followed
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, plan_path(state_dir))   # rename replaces a symlink itself, never its target
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Locked:
    """Hold ``faults.lock`` while the plan is read, changed and replaced."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def __enter__(self) -> "_Locked":
        ensure_state_dir(self.state_dir)
        self.lock = open_for_locking(self.state_dir / LOCK_NAME)
        fcntl.flock(self.lock.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        unlock(self.lock)


def _tolerant_read(state_dir: Path) -> StoredPlan:
    try:
        return read(state_dir)
    except FaultPlanError:
        return StoredPlan()            # a damaged file is replaced by the write that follows


def add(state_dir: Path, faults: list[Fault] | tuple[Fault, ...]) -> tuple[Fault, ...]:
    """Append faults to the machine's plan; returns them with the ids the plan gave them."""
    with _Locked(state_dir):
        plan = _tolerant_read(state_dir)
        added = tuple(Fault(**{**f.__dict__, "id": plan.next_id + i}) for i, f in enumerate(faults))
        _write(state_dir, StoredPlan(plan.faults + added, plan.generation, plan.next_id + len(added)))
    return added


def clear(state_dir: Path, ids: list[int] | None = None) -> tuple[Fault, ...]:
    """Remove the faults ``ids`` (all when None; that also resets fallen-off devices); returns those removed."""
    with _Locked(state_dir):
        plan = _tolerant_read(state_dir)
        if ids is None:
            removed, kept, generation = plan.faults, (), plan.generation + 1
        else:
            wanted = set(ids)
            removed = tuple(f for f in plan.faults if f.id in wanted)
            kept = tuple(f for f in plan.faults if f.id not in wanted)
            generation = plan.generation
        _write(state_dir, StoredPlan(kept, generation, plan.next_id))
    return removed
