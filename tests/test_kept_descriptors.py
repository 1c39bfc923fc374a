"""Descriptors a process keeps between its runtimes (mutex files, busy cores' lock files, the published state's
directory and monitor probe) are used only while their path still names that very file: a state directory
deleted and recreated, a lock file replaced, or a symlink planted meanwhile is opened afresh (or refused), and
mutual exclusion never rests on a descriptor of a file no one else sees."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from neuron_sim import nrt
from neuron_sim.runtime import lifecycle
from neuron_sim.runtime.lockfiles import AllocationLock

NAMESPACE = "trn1.2xlarge"

HOLD = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def machine(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", NAMESPACE)
    monkeypatch.setenv("NEURON_SIM_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state" / NAMESPACE


def _cycle() -> Path:
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    state_dir = Path(lifecycle.current("test").reservation.state_dir)
    nrt.nrt_close()
    return state_dir


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _takes_exclusive_without_waiting(state_dir: Path, name: str) -> bool:
    """Whether AllocationLock(name) is taken within 0.3 s (run on a thread: a blocked flock cannot be cancelled)."""
    done = threading.Event()

    def take() -> None:
        with AllocationLock(state_dir, name):
            done.set()

    threading.Thread(target=take, daemon=True).start()
    return done.wait(0.3)


@pytest.mark.parametrize("name", ["alloc.lock", "memory.lock"])
def test_a_replaced_mutex_file_is_opened_afresh_so_its_new_holder_excludes_us(machine, name):
    state_dir = _cycle()                                     # the mutex files' descriptors are kept now
    (state_dir / name).unlink()
    holder = _holder(state_dir / name)                       # another process holds the *new* file
    try:
        assert not _takes_exclusive_without_waiting(state_dir, name)
    finally:
        holder.stdin.close()
        holder.wait()
    time.sleep(0.05)
    assert _takes_exclusive_without_waiting(state_dir, name)


def test_two_threads_never_share_a_kept_mutex_descriptor(machine):
    state_dir = _cycle()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with AllocationLock(state_dir):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert inside.wait(5)
    try:
        assert not _takes_exclusive_without_waiting(state_dir, "alloc.lock")   # a second open file description
    finally:
        release.set()
        thread.join(5)


def test_a_deleted_and_recreated_state_directory_works_and_is_locked_for_real(machine):
    import shutil
    state_dir = _cycle()
    shutil.rmtree(state_dir.parent)
    assert _cycle() == state_dir
    holder = _holder(state_dir / "alloc.lock")
    try:
        assert not _takes_exclusive_without_waiting(state_dir, "alloc.lock")
    finally:
        holder.stdin.close()
        holder.wait()


@pytest.mark.parametrize("name", ["alloc.lock", "memory.lock", "nc000.lock", "monitor.lock"])
def test_a_symlink_planted_over_a_kept_file_is_refused_or_ignored_never_followed(machine, tmp_path, name):
    state_dir = _cycle()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (state_dir / name).unlink()
    (state_dir / name).symlink_to(victim)
    status = nrt.nrt_init()
    if status == nrt.NRT_SUCCESS:
        nrt.nrt_close()
    assert status != nrt.NRT_SUCCESS or name == "monitor.lock"   # a monitor probe it cannot open is skipped
    assert victim.read_text() == "keep me\n"
    fd = os.open(victim, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)              # nothing holds a lock on the victim
    finally:
        os.close(fd)


def test_the_record_is_published_in_a_recreated_state_directory_right_after_init(machine):
    import shutil
    from neuron_sim.runtime.publish import read_runtimes
    state_dir = _cycle()
    shutil.rmtree(state_dir.parent)
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        assert [r["pid"] for r in read_runtimes(state_dir)] == [os.getpid()]
        assert len(list(state_dir.glob("rt-*.lock"))) == 1
    finally:
        nrt.nrt_close()
    assert read_runtimes(state_dir) == []


def test_a_forked_child_never_shares_its_parents_spare_core_descriptors(tmp_path):
    from neuron_sim.hardware.catalog import build_machine
    from neuron_sim.runtime.reservation import CoresUnavailable, reserve
    machine = build_machine(NAMESPACE)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    holder = _holder(state_dir / "nc000.lock")                # core 0 busy: the parent keeps a spare descriptor
    with reserve(state_dir, machine, visible=None, num_cores=1, runtime_version="t") as first:
        assert first.logical_cores == (1,)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                              # the child: wait until the parent holds core 0
        try:
            holder.stdin.close()                              # the holder's pipe: only the parent ends it
            os.close(write_end)
            os.read(read_end, 1)
            try:
                reserve(state_dir, machine, visible=(0,), num_cores=0, runtime_version="t")
                os._exit(1)                                   # both would own core 0
            except CoresUnavailable:
                os._exit(0)
        except BaseException:
            os._exit(2)
    os.close(read_end)
    holder.stdin.close()
    holder.wait()
    try:
        with reserve(state_dir, machine, visible=None, num_cores=1, runtime_version="t") as second:
            assert second.logical_cores == (0,)
            os.write(write_end, b"x")
            assert os.waitpid(pid, 0)[1] == 0
    finally:
        os.close(write_end)
