"""Reservation across real processes: the documented 5×3-core example, ranges, SIGKILL, fork, LNC, races."""
from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuron_sim.runtime.lockfiles import core_lock_path
from neuron_sim.runtime.reservation import CoresUnavailable, list_holders, reserve

_spec = importlib.util.spec_from_file_location("reservation_worker", Path(__file__).with_name("reservation_worker.py"))
rw = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("reservation_worker", rw)
_spec.loader.exec_module(rw)

INF1 = "inf1.6xlarge:4x4"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def workers():
    started: list[rw.WorkerProcess] = []

    def start(state: Path, spec: str = INF1, *extra: str) -> rw.WorkerProcess:
        w = rw.WorkerProcess("reserve", *rw.machine_args(state, spec), *extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.cleanup()


@pytest.fixture(autouse=True)
def _release_here():
    yield
    while _HERE:
        _HERE.pop().release()


_HERE: list = []


def here(state: Path, spec: str = INF1, *, visible=None, num_cores=0):
    """Reserve from the test process itself (just another process to the workers)."""
    res = reserve(state, rw.make_machine(spec), visible=visible, num_cores=num_cores, runtime_version="x")
    _HERE.append(res)
    return res


def refused_here(state: Path, spec: str = INF1, **kw) -> CoresUnavailable:
    with pytest.raises(CoresUnavailable) as info:
        here(state, spec, **kw)
    return info.value


def held_by(state: Path, spec: str = INF1) -> dict[int, tuple[int, ...]]:
    return {h.pid: h.physical_cores for h in list_holders(state, rw.make_machine(spec))}


def test_documented_five_by_three_then_sixth_fails_naming_holders(tmp_path, workers):
    """Five NUM_CORES=3 processes started together never interleave: five disjoint runs; a sixth fails."""
    five = [workers(tmp_path, INF1, "--num-cores", "3") for _ in range(5)]
    got = {w.pid: w.event() for w in five}
    assert sorted(e["logical"] for e in got.values()) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]]
    assert held_by(tmp_path) == {pid: tuple(e["physical"]) for pid, e in got.items()}
    sixth = workers(tmp_path, INF1, "--num-cores", "3")
    failed = sixth.event()
    assert failed["event"] == "unavailable" and failed["status"] == 4
    assert failed["message"] == "Logical Neuron Core(s) not available - Requested:3 Available:1 Logical Core size 1"
    by_start = sorted(got, key=lambda pid: got[pid]["logical"][0])
    assert [h["pid"] for h in failed["holders"]] == by_start
    for pid, holder, line in zip(by_start, failed["holders"], failed["lines"]):
        a, b = got[pid]["logical"][0], got[pid]["logical"][-1]
        assert line.startswith(f"NeuronCore(s) {a}-{b} held by PID {pid} (") and ", started 20" in line
        assert "reservation_worker.py reserve" in holder["command"]
    assert sixth.let_go() == 3
    for w in five:
        assert w.let_go() == 0
    assert held_by(tmp_path) == {}


def test_visible_ranges_side_by_side_and_overlap_fails(tmp_path, workers):
    ranges = ["0-2", "3-5", "6-8", "9-11", "12-14", "15"]
    ws = [workers(tmp_path, INF1, "--visible", r) for r in ranges]
    events = [w.event() for w in ws]
    assert [e["event"] for e in events] == ["reserved"] * 6
    assert [e["logical"][0] for e in events] == [0, 3, 6, 9, 12, 15]
    overlap = workers(tmp_path, INF1, "--visible", "5-7")
    e = overlap.event()
    assert e["event"] == "unavailable"
    assert e["message"] == ("Logical Neuron Core(s) not available - Requested:lnc5-lnc7 Available:0 "
                            "Logical Core size:1 (cores busy, ret=-16)")
    assert [h["pid"] for h in e["holders"]] == [ws[1].pid, ws[2].pid]
    assert overlap.let_go() == 3


def test_sigkill_frees_cores_at_once(tmp_path, workers):
    victim = workers(tmp_path, INF1, "--num-cores", "16")
    assert victim.event()["logical"] == list(range(16))
    assert refused_here(tmp_path, visible=(4, 5)).holders[0].pid == victim.pid
    victim.proc.send_signal(signal.SIGKILL)
    assert victim.proc.wait(timeout=10) == -signal.SIGKILL
    assert held_by(tmp_path) == {}
    assert here(tmp_path, num_cores=0).logical_cores == tuple(range(16))     # at once, no cleanup step


def test_exception_exit_frees_cores(tmp_path):
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
            "import reservation_worker as rw; from neuron_sim.runtime.reservation import reserve;"
            "reserve(Path(sys.argv[1]), rw.make_machine('inf1.6xlarge:4x4'), visible=None, num_cores=4,"
            " runtime_version='x'); raise SystemExit('boom')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)],
                          capture_output=True, timeout=30)
    assert done.returncode == 1 and b"boom" in done.stderr
    assert held_by(tmp_path) == {}


def test_forked_child_keeps_cores_after_parent_exits(tmp_path, workers):
    """flock locks belong to the open file description: a forked child shares it and keeps the cores."""
    parent = workers(tmp_path, INF1, "--num-cores", "2", "--fork", "child-holds")
    assert parent.event()["logical"] == [0, 1]
    events = {e["event"]: e for e in (parent.event(), parent.event())}
    child = events["child"]["pid"]
    assert parent.proc.wait(timeout=10) == 0            # parent gone without release
    err = refused_here(tmp_path, visible=(1,))
    assert err.holders[0].pid == parent.pid             # the record names the process that reserved
    assert err.lines[0].endswith("which has exited: a process it forked still holds the cores")
    assert held_by(tmp_path) == {parent.pid: (0, 1)}
    parent.proc.stdin.close()                            # the child's stdin: let it exit
    deadline = time.monotonic() + 10
    while held_by(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held_by(tmp_path) == {}
    assert child != parent.pid


def test_release_in_parent_frees_cores_despite_forked_child(tmp_path, workers):
    parent = workers(tmp_path, INF1, "--num-cores", "2", "--fork", "parent-releases")
    assert parent.event()["logical"] == [0, 1]
    kinds = {parent.event()["event"], parent.event()["event"]}
    assert kinds == {"child", "released"}
    assert held_by(tmp_path) == {}                       # the child is alive but nrt_close freed the cores
    assert here(tmp_path, visible=(0, 1)).logical_cores == (0, 1)
    assert parent.let_go() == 0


def test_release_in_forked_child_leaves_parent_holding(tmp_path, workers):
    parent = workers(tmp_path, INF1, "--num-cores", "2", "--fork", "child-releases")
    assert parent.event()["logical"] == [0, 1]
    assert {parent.event()["event"], parent.event()["event"]} == {"child-released", "child-exited"}
    assert held_by(tmp_path) == {parent.pid: (0, 1)}
    assert refused_here(tmp_path, visible=(1,)).holders[0].pid == parent.pid
    assert parent.let_go() == 0
    assert held_by(tmp_path) == {}


def test_lnc1_and_lnc2_processes_exclude_each_other(tmp_path, workers):
    lnc2, lnc1 = "trn2.3xlarge:1x8:lnc2", "trn2.3xlarge:1x8:lnc1"
    one = workers(tmp_path, lnc1, "--visible", "2")      # physical 2: half of LNC=2 core 1
    assert one.event()["physical"] == [2]
    two = workers(tmp_path, lnc2, "--num-cores", "2")
    e = two.event()
    assert (e["logical"], e["physical"]) == ([2, 3], [4, 5, 6, 7])
    blocked = refused_here(tmp_path, lnc2, visible=(1,))
    assert blocked.holders[0].pid == one.pid and "Logical Core size:2" in blocked.message
    assert blocked.lines[0].startswith(f"NeuronCore(s) 1 (physical 2) held by PID {one.pid}")
    assert refused_here(tmp_path, lnc1, visible=(5,)).holders[0].pid == two.pid
    rest = here(tmp_path, lnc1, num_cores=2)
    assert rest.physical_cores == (0, 1)
    assert held_by(tmp_path, lnc1) == {one.pid: (2,), two.pid: (4, 5, 6, 7), os.getpid(): (0, 1)}


def test_parent_of_worker_cannot_take_worker_cores(tmp_path, workers):
    """The test process itself is just another process: a worker's cores are refused to it too."""
    w = workers(tmp_path, INF1, "--visible", "0-3")
    w.event()
    err = refused_here(tmp_path, visible=(3, 4))
    assert err.holders[0].pid == w.pid and err.available == 1


def test_many_processes_create_state_dir_at_once(tmp_path, workers):
    state = tmp_path / "fresh" / "inf1.6xlarge"
    ws = [workers(state, INF1, "--num-cores", "1") for _ in range(6)]
    assert sorted(w.event()["logical"][0] for w in ws) == list(range(6))


_PERMISSIONS_SCRIPT = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import reservation_worker as rw
from neuron_sim.runtime.lockfiles import core_lock_path
from neuron_sim.runtime.reservation import list_holders, reserve
state, m = Path(sys.argv[1]), rw.make_machine("inf1.6xlarge:4x4")
out = {}
for core, mode in ((1, 0o000), (2, 0o444), (3, 0o200)):          # our own files with wrong permissions
    path = core_lock_path(state, core)
    path.write_text("junk")
    path.chmod(mode)
    res = reserve(state, m, visible=(core,), num_cores=0, runtime_version="x")
    out[core] = {"mode": path.stat().st_mode & 0o777, "holders": [h.pid for h in list_holders(state, m)]}
    res.release()
foreign = reserve(state, m, visible=(5,), num_cores=0, runtime_version="x")   # core 5: another user's file
out["foreign"] = [(h.pid, list(h.physical_cores)) for h in list_holders(state, m)]
print(json.dumps(out))
"""


def test_wrong_permissions_repaired_and_foreign_files_still_lock(tmp_path):
    """Run as an unprivileged user (root ignores permission bits): own files are repaired, others' still lock."""
    state = Path(tempfile.mkdtemp(prefix="neuron_sim-perm-", dir="/tmp"))
    try:
        foreign = core_lock_path(state, 5)
        foreign.write_text("a record of some other user's older runtime")
        foreign.chmod(0o644)
        as_nobody = os.getuid() == 0 and shutil.which("setpriv") is not None
        if as_nobody:                                         # the directory is the runner's own and private
            os.chown(state, 65534, 65534)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
        if not as_nobody:
            foreign.unlink()                                  # no second user to own it: test our own files only
        done = subprocess.run([*prefix, sys.executable, "-c", _PERMISSIONS_SCRIPT, str(state),
                               str(Path(__file__).parent)], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        out = json.loads(done.stdout)
        for core in ("1", "2", "3"):
            assert out[core]["mode"] & 0o600 == 0o600           # readable and writable by its owner again
            assert len(out[core]["holders"]) == 1 and out[core]["holders"][0] > 0   # record written and read
        if as_nobody:
            assert out["foreign"] == [[0, [5]]]                 # locked through a read-only descriptor: unknown
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("round_", range(4))
def test_eight_two_core_processes_started_together_fill_sixteen_cores(tmp_path, workers, round_):
    """Racing takers never leave holes: eight NUM_CORES=2 processes started at once on 16 cores all get a run,
    and the runs are the first-fit ones (a taker that skipped a run another was half-way through taking would
    leave a one-core hole and refuse the last process)."""
    eight = [workers(tmp_path, INF1, "--num-cores", "2") for _ in range(8)]
    got = [w.event() for w in eight]
    assert [e["event"] for e in got] == ["reserved"] * 8, [e.get("message") for e in got]
    assert sorted(e["logical"] for e in got) == [[2 * i, 2 * i + 1] for i in range(8)]
