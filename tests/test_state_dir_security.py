"""The state directory is a security boundary (issue 9 §1): planted symlinks, FIFOs, directories, foreign or
world-writable directories are refused with NRT_FAILURE and an ERROR log line; nothing outside is ever touched."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from neuron_sim import nrt
from neuron_sim.runtime.reservation import default_root

NAMESPACE = "trn1.2xlarge"


def _init(monkeypatch, state_root: Path | str | None) -> int:
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", NAMESPACE)
    if state_root is None:
        monkeypatch.delenv("NEURON_SIM_STATE_DIR", raising=False)
    else:
        monkeypatch.setenv("NEURON_SIM_STATE_DIR", str(state_root))
    status = nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "")
    if status == nrt.NRT_SUCCESS:
        nrt.nrt_close()
    return status


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]


@pytest.fixture
def outside(tmp_path):
    """A file and a directory outside the state directory that nothing may change."""
    victim = tmp_path / "outside" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    return victim


def _unchanged(victim: Path) -> None:
    assert victim.read_text() == "keep me\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]


def _refused(monkeypatch, capsys, root, needle: str, path: Path) -> None:
    assert _init(monkeypatch, root) == nrt.NRT_FAILURE
    lines = _error_lines(capsys)
    assert any(str(path) in line and needle in line for line in lines), lines


@pytest.mark.parametrize("name", ["nc000.lock", "nc001.lock", "alloc.lock"])
def test_symlinked_lock_file_to_outside_file_is_refused(tmp_path, monkeypatch, capsys, outside, name):
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True, mode=0o700)
    (ns / name).symlink_to(outside)
    _refused(monkeypatch, capsys, tmp_path / "state", "symbolic link", ns / name)
    _unchanged(outside)


def test_symlinked_lock_file_to_outside_directory_is_refused(tmp_path, monkeypatch, capsys, outside):
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True, mode=0o700)
    (ns / "nc000.lock").symlink_to(outside.parent)
    _refused(monkeypatch, capsys, tmp_path / "state", "symbolic link", ns / "nc000.lock")
    _unchanged(outside)


@pytest.mark.parametrize("plant", ["fifo", "directory"])
def test_fifo_or_directory_with_a_lock_name_is_refused(tmp_path, monkeypatch, capsys, plant):
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True, mode=0o700)
    path = ns / "nc001.lock"
    os.mkfifo(path) if plant == "fifo" else path.mkdir()
    _refused(monkeypatch, capsys, tmp_path / "state", "not a regular file", path)
    assert stat.S_ISFIFO(path.lstat().st_mode) if plant == "fifo" else path.is_dir()


def test_symlinked_namespace_directory_is_refused(tmp_path, monkeypatch, capsys, outside):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / NAMESPACE).symlink_to(outside.parent)
    _refused(monkeypatch, capsys, tmp_path / "state", "symbolic link", tmp_path / "state" / NAMESPACE)
    _unchanged(outside)


def test_regular_file_in_place_of_the_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "state").write_text("x")
    _refused(monkeypatch, capsys, tmp_path / "state", "", tmp_path / "state")
    assert (tmp_path / "state").read_text() == "x"


def test_unwritable_state_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    _refused(monkeypatch, capsys, tmp_path / "file" / "sub", "NEURON_SIM_STATE_DIR", tmp_path / "file")


def test_world_writable_state_directory_is_refused(tmp_path, monkeypatch, capsys):
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True)
    ns.chmod(0o777)
    _refused(monkeypatch, capsys, tmp_path / "state", "chmod go-w", ns)
    assert list(ns.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_foreign_owned_state_directory_is_refused(tmp_path, monkeypatch, capsys):
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True, mode=0o700)
    os.chown(ns, 65534, 65534)
    _refused(monkeypatch, capsys, tmp_path / "state", "owned by uid 65534", ns)
    assert list(ns.iterdir()) == []


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Point the default root (<tmp>/neuron_sim-<uid>) into this test's directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return default_root()


def test_default_root_is_created_private(private_tmp, monkeypatch):
    assert _init(monkeypatch, None) == nrt.NRT_SUCCESS
    for d in (private_tmp, private_tmp / NAMESPACE):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_uid == os.getuid()


def test_planted_default_root_symlink_is_refused(private_tmp, monkeypatch, capsys, outside):
    private_tmp.symlink_to(outside.parent)
    _refused(monkeypatch, capsys, None, "symbolic link", private_tmp)
    _unchanged(outside)


@pytest.mark.parametrize("trick", ["world-writable", "foreign"])
def test_planted_default_root_directory_is_refused(private_tmp, monkeypatch, capsys, trick):
    if trick == "foreign" and os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    private_tmp.mkdir(mode=0o700)
    if trick == "foreign":
        os.chown(private_tmp, 65534, 65534)
    else:
        private_tmp.chmod(0o777)
    _refused(monkeypatch, capsys, None, "owned by uid" if trick == "foreign" else "writable by group or others",
             private_tmp)
    assert list(private_tmp.iterdir()) == []


def test_unexpandable_home_in_state_dir_is_a_status(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert _init(monkeypatch, "~nosuchuser/x") == nrt.NRT_INVALID
    lines = _error_lines(capsys)
    assert any("NEURON_SIM_STATE_DIR" in line and "~nosuchuser" in line for line in lines), lines
    assert list(tmp_path.iterdir()) == []                       # no relative "~nosuchuser" directory appears
    assert _init(monkeypatch, tmp_path / "ok") == nrt.NRT_SUCCESS  # nothing carried over


def test_lock_file_is_never_truncated_before_its_lock_is_held(tmp_path, monkeypatch):
    import fcntl
    ns = tmp_path / "state" / NAMESPACE
    ns.mkdir(parents=True, mode=0o700)
    record = b'{"format":"neuron_sim.reservation/1","pid":1}\n'
    (ns / "nc000.lock").write_bytes(record)
    fd = os.open(ns / "nc000.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)                                 # another holder of core 0
    try:
        monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0")
        assert _init(monkeypatch, tmp_path / "state") == nrt.NRT_RESOURCE
        assert (ns / "nc000.lock").read_bytes() == record
    finally:
        os.close(fd)
