"""Published runtime state: record contents, atomic and symlink-safe writes, dead records removed."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.runtime import lifecycle, publish
from neuron_sim.runtime.reservation import default_state_dir

TESTS = Path(__file__).resolve().parent
MLP = TESTS.parent / "neffs" / "mlp_trn1.neff"


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")


def state_dir():
    return default_state_dir(lifecycle.current("test").machine)


def test_record_has_what_the_tools_need(trn1, monkeypatch):
    monkeypatch.setenv("NEURON_PROCESS_TAG", "trainer-1")
    with neuron_sim.Runtime() as rt:
        model = rt.load(str(MLP))
        for _ in range(5):
            model(x=np.ones((1, 64), np.float32))
        with pytest.raises(neuron_sim.NrtError):
            model.run({}, {})                                           # incorrect_input: no tensors
        runtime = lifecycle.current("test")
        runtime.publisher.publish()
        [record] = publish.read_runtimes(state_dir())
        assert (record["pid"], record["tag"], record["runtime_version"]) == (os.getpid(), "trainer-1", "2.25.57.0")
        assert [c["core"] for c in record["cores"]] == [0, 1]
        core0 = record["cores"][0]
        assert core0["counters"]["completed"] == 5 and core0["counters"]["incorrect_input"] == 1
        assert core0["busy_s"] == pytest.approx(5 * model.duration_s)
        assert sum(core0["memory"].values()) == rt.memory_stats(0)[0]
        assert record["latency"]["count"] == 5 and len(record["latency"]["recent"]) == 5
        assert record["latency"]["recent"][0][1] == pytest.approx(model.duration_s)
        [m] = record["models"]
        assert (m["name"], m["cores"], m["running"]) == ("mlp_trn1", [0], False)
        assert sum(m["memory"]["0"].values()) > 0
    assert publish.read_runtimes(state_dir_of_closed()) == []          # nrt_close removes the record


def state_dir_of_closed():
    from neuron_sim.cli.ls import machine_from_env
    return default_state_dir(machine_from_env())


def test_default_tag_is_the_pid_and_a_too_long_tag_fails_init(trn1, monkeypatch, capfd):
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        [record] = publish.read_runtimes(state_dir())
        assert record["tag"] == str(os.getpid())
    finally:
        nrt.nrt_close()
    monkeypatch.setenv("NEURON_PROCESS_TAG", "x" * 256)
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_INVALID
    assert "at most 255 characters" in capfd.readouterr().err


def test_symlinks_and_garbage_in_the_state_dir_are_not_followed(trn1, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        pub = lifecycle.current("test").publisher
        directory = state_dir()
        record = directory / f"{pub.name}.json"
        record.unlink()
        record.symlink_to(outside)                                      # a planted symlink at the record path
        pub.publish()
        assert outside.read_text() == "keep" and not record.is_symlink()   # replaced by rename, not followed
        (directory / "rt-1-0123456789ab.lock").symlink_to(outside)        # garbage that looks like a record
        (directory / "rt-2-0123456789ab.lock").mkdir()
        (directory / "rt-3-abcdefabcdef.json").write_text("not json")
        records = publish.read_runtimes(directory)
        assert [r["pid"] for r in records] == [os.getpid()]
        assert outside.read_text() == "keep"
    finally:
        nrt.nrt_close()


def test_killed_process_record_is_ignored_and_removed(trn1):
    env = dict(os.environ, NEURON_PROCESS_TAG="doomed", PYTHONPATH=str(TESTS.parent))
    worker = subprocess.Popen([sys.executable, str(TESTS / "tools_worker.py"), "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env)
    try:
        assert worker.stdout.readline()
        from neuron_sim.cli.ls import machine_from_env
        directory = default_state_dir(machine_from_env())
        assert [r["tag"] for r in publish.read_runtimes(directory)] == ["doomed"]
        names = {p.name for p in directory.glob("rt-*")}
        assert len(names) == 2
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert {p.name for p in directory.glob("rt-*")} == names             # left behind by SIGKILL...
    assert publish.read_runtimes(directory) == []                         # ...ignored: its flock is gone
    assert list(directory.glob("rt-*")) == []                             # and removed


def test_stale_temp_files_are_removed(trn1, tmp_path):
    directory = tmp_path / "state" / "trn1.2xlarge"
    directory.mkdir(parents=True)
    old = directory / ".rt-9-0123456789ab.json.dead.tmp"
    new = directory / ".rt-9-0123456789ab.json.live.tmp"
    old.write_text("{")
    new.write_text("{")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert publish.read_runtimes(directory) == []
    assert not old.exists() and new.exists()


def test_publisher_switches_to_fast_while_a_monitor_is_attached(trn1):
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        pub = lifecycle.current("test").publisher
        assert pub._interval() == publish.SLOW_INTERVAL_S
        attachment = publish.MonitorAttachment(state_dir())
        assert pub._interval() == publish.FAST_INTERVAL_S
        attachment.close()
        assert pub._interval() == publish.SLOW_INTERVAL_S
    finally:
        nrt.nrt_close()


def test_unwritable_state_dir_warns_and_the_runtime_still_works(trn1, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(publish, "Publisher", _refusing_publisher)
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        assert lifecycle.current("test").publisher is None
        assert "Cannot publish runtime state" in capfd.readouterr().err
    finally:
        nrt.nrt_close()


def _refusing_publisher(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_no_device_machine_fails_init_with_the_driver_message(tmp_path, monkeypatch, capfd):
    from neuron_sim.hardware.catalog import build_machine
    from neuron_sim.hardware.topology_file import machine_to_topology
    doc = machine_to_topology(build_machine("inf2.xlarge"))
    doc["devices"] = []
    path = tmp_path / "none.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("NEURON_SIM_TOPOLOGY", str(path))
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_FAILURE
    assert "TDRV:tdrv_get_dev_info" in capfd.readouterr().err.replace(" ", "")


def test_a_forked_child_closing_leaves_the_parents_record(trn1):
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        directory = state_dir()
        pid = os.fork()
        if pid == 0:                                                    # the child closes its inherited copy
            try:
                lifecycle.current("child").publisher.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert [r["pid"] for r in publish.read_runtimes(directory)] == [os.getpid()]
    finally:
        nrt.nrt_close()
    assert publish.read_runtimes(directory) == []


def test_a_symlinked_machine_directory_is_not_published_into(trn1, tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir()
    root = tmp_path / "state"
    root.mkdir()
    (root / "trn1.2xlarge").symlink_to(target)
    monkeypatch.setenv("NEURON_SIM_STATE_DIR", str(root))
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_FAILURE   # the state dir is refused
    assert list(target.iterdir()) == []                                             # nothing written through it
    assert publish.read_runtimes(root / "trn1.2xlarge") == []


REWRITER = r"""
import os, sys, time
import neuron_sim
from neuron_sim.runtime import lifecycle
seconds = float(sys.argv[1])
with neuron_sim.Runtime() as rt:
    pub = lifecycle.current("rewriter").publisher
    models, i = [], 0
    os.write(1, b"ready\n")
    end = time.monotonic() + seconds
    while time.monotonic() < end:      # records of changing size: 0..3 models, rewritten as fast as possible
        if len(models) < 3 and i % 7 < 4:
            models.append(rt.load(sys.argv[2]))
        elif models:
            models.pop().unload()
        pub.publish()
        i += 1
    os.write(1, f"{i}\n".encode())
    sys.stdin.read()                   # the runtime stays open until the reader is done
"""


def test_a_record_rewritten_in_place_is_never_read_half_written(trn1):
    """A real process rewrites its record (sizes changing) as fast as it can while this one reads: every read
    finds the process with a whole record (in place under flock: never torn, never missing)."""
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    writer = subprocess.Popen([sys.executable, "-c", REWRITER, "1.5", str(MLP)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env)
    try:
        assert writer.stdout.readline() == b"ready\n"
        machine_dir = _machine_dir()
        reads, sizes = 0, set()
        while not select.select([writer.stdout], [], [], 0)[0]:     # until it says how many rewrites it did
            records = [r for r in publish.read_runtimes(machine_dir) if r["pid"] == writer.pid]
            assert len(records) == 1, (reads, records)
            sizes.add(len(records[0]["models"]))
            reads += 1
        rewrites = int(writer.stdout.readline())
    finally:
        writer.kill()
        writer.wait()
    assert reads > 50 and rewrites > 100 and sizes >= {0, 1, 2}


def _machine_dir() -> Path:
    from neuron_sim.hardware.select import select_machine
    return default_state_dir(select_machine("trn1.2xlarge", None, None))


def test_a_reader_stuck_on_the_record_never_stalls_the_runtime(trn1):
    """A reader that holds the record's shared lock (stopped mid-read): publishing creates the record anew
    instead of waiting, and nrt_close removes it; both in bounded time."""
    import fcntl
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    closed = False
    try:
        pub = lifecycle.current("test").publisher
        path = state_dir() / f"{pub.name}.json"
        stuck = os.open(path, os.O_RDONLY)
        fcntl.flock(stuck, fcntl.LOCK_SH)
        inode = path.stat().st_ino
        t0 = time.monotonic()
        pub.publish()
        assert path.stat().st_ino != inode                           # created anew beside the stuck reader
        [record] = publish.read_runtimes(state_dir())
        assert record["pid"] == os.getpid()
        os.close(stuck)
        stuck = os.open(path, os.O_RDONLY)
        fcntl.flock(stuck, fcntl.LOCK_SH)
        nrt.nrt_close()
        closed = True
        assert time.monotonic() - t0 < 5
        assert not path.exists()                                     # could not be marked closed: removed
        os.close(stuck)
        assert nrt.nrt_init() == nrt.NRT_SUCCESS                     # the next runtime creates it again
        [record] = publish.read_runtimes(state_dir())
        assert record["pid"] == os.getpid()
    finally:
        if not closed:
            nrt.nrt_close()
    nrt.nrt_close()


def test_a_writer_stopped_mid_write_does_not_stall_readers(trn1):
    """A record held exclusively (its writer stopped mid-rewrite) is read without its lock after a few ms:
    the reader still returns, and a whole record is listed."""
    import fcntl
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        pub = lifecycle.current("test").publisher
        path = state_dir() / f"{pub.name}.json"
        writer = os.open(path, os.O_RDONLY)
        fcntl.flock(writer, fcntl.LOCK_EX)
        t0 = time.monotonic()
        [record] = publish.read_runtimes(state_dir())
        waited = time.monotonic() - t0
        os.close(writer)
        assert record["pid"] == os.getpid() and waited < 2
    finally:
        nrt.nrt_close()
