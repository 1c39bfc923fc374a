"""Reservation rules inside one process: first-fit, all-or-nothing ranges, wording, LNC, garbage state files.

Two reservations in one process use two open file descriptions, which exclude each other exactly as two
processes do, so the allocation rules can be checked here; tests/test_reservation_processes.py uses real processes.
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuron_sim.runtime.holder_records import (
    Holder, decode_record, encode_record, format_core_ids, holder_line, process_start_time,
)
from neuron_sim.runtime.lockfiles import core_lock_path
from neuron_sim.runtime.reservation import (
    CoresUnavailable, Reservation, default_state_dir, holder_lines, list_holders, machine_namespace, reserve,
)
from neuron_sim.status import NrtError, NrtStatus

_spec = importlib.util.spec_from_file_location("reservation_worker", Path(__file__).with_name("reservation_worker.py"))
rw = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("reservation_worker", rw)
_spec.loader.exec_module(rw)

INF1 = rw.make_machine("inf1.6xlarge:4x4")          # 16 logical = 16 physical cores
TRN2_LNC2 = rw.make_machine("trn2.3xlarge:1x8:lnc2")  # logical k = physical (2k, 2k+1)
TRN2_LNC1 = rw.make_machine("trn2.3xlarge:1x8:lnc1")


_LIVE: list[Reservation] = []


@pytest.fixture(autouse=True)
def _release_everything():
    yield
    while _LIVE:
        _LIVE.pop().release()


def take(state: Path, machine=INF1, *, visible=None, num_cores=0, version="2.22.14.0") -> Reservation:
    res = reserve(state, machine, visible=visible, num_cores=num_cores, runtime_version=version)
    _LIVE.append(res)
    return res


def refused(state: Path, machine=INF1, **kw) -> CoresUnavailable:
    with pytest.raises(CoresUnavailable) as info:
        take(state, machine, **kw)
    return info.value


# ---- state directory -------------------------------------------------------------------------------------------

def test_state_dir_from_variable_with_machine_namespace(tmp_path):
    assert default_state_dir(INF1, {"NEURON_SIM_STATE_DIR": str(tmp_path)}) == tmp_path / "inf1.6xlarge"


def test_state_dir_default_is_per_user_under_temp_dir():
    expected = Path(tempfile.gettempdir()) / f"neuron_sim-{os.getuid()}" / "inf1.6xlarge"
    assert default_state_dir(INF1, {}) == expected
    assert default_state_dir(INF1, {"NEURON_SIM_STATE_DIR": ""}) == expected


def test_state_dir_relative_variable_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_state_dir(INF1, {"NEURON_SIM_STATE_DIR": "state"}) == tmp_path / "state" / "inf1.6xlarge"


def test_topology_machine_namespace_hashes_file_not_lnc(tmp_path):
    from dataclasses import replace
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    a1 = replace(TRN2_LNC1, source=str(tmp_path / "a.json"))
    a2 = replace(TRN2_LNC2, source=str(tmp_path / "a.json"))
    b = replace(TRN2_LNC1, source=str(tmp_path / "b.json"))
    assert machine_namespace(a1).startswith("topology-") and len(machine_namespace(a1)) == len("topology-") + 12
    assert machine_namespace(a1) == machine_namespace(a2)
    assert machine_namespace(a1) != machine_namespace(b)


def test_lnc_does_not_change_catalog_namespace():
    assert machine_namespace(TRN2_LNC1) == machine_namespace(TRN2_LNC2) == "trn2.3xlarge"


def test_state_dir_created_with_parents(tmp_path):
    state = tmp_path / "deep" / "er" / "inf1.6xlarge"
    with take(state, num_cores=1):
        assert state.is_dir() and core_lock_path(state, 0).is_file()


def test_state_dir_that_is_a_file_gives_clear_error(tmp_path):
    state = tmp_path / "ns"
    state.write_text("not a directory")
    with pytest.raises(NrtError) as info:
        take(state, num_cores=1)
    assert str(state) in info.value.message and "directory" in info.value.message


# ---- allocation rules ------------------------------------------------------------------------------------------

def test_five_processes_of_three_then_sixth_fails_with_runtime_wording(tmp_path):
    held = [take(tmp_path, num_cores=3) for _ in range(5)]
    assert [r.logical_cores for r in held] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11), (12, 13, 14)]
    err = refused(tmp_path, num_cores=3)
    assert err.status == NrtStatus.RESOURCE
    assert err.message == "Logical Neuron Core(s) not available - Requested:3 Available:1 Logical Core size 1"
    assert (err.requested, err.available) == ("3", 1)
    assert [h.physical_cores for h in err.holders] == [tuple(range(15))]
    [line] = err.lines
    started = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(err.holders[0].start_time))
    assert line.startswith(f"NeuronCore(s) 0-14 held by PID {os.getpid()} ({err.holders[0].command[:20]}")
    assert line.endswith(f"), started {started}")


def test_first_fit_takes_lowest_hole(tmp_path):
    held = [take(tmp_path, num_cores=3) for _ in range(5)]
    held[1].release()
    assert take(tmp_path, num_cores=2).logical_cores == (3, 4)
    assert take(tmp_path, num_cores=1).logical_cores == (5,)
    assert take(tmp_path, num_cores=1).logical_cores == (15,)


def test_fragmented_free_cores_explained(tmp_path):
    held = [take(tmp_path, visible=(i,)) for i in range(0, 16, 2)]   # every even core
    err = refused(tmp_path, num_cores=2)
    assert err.message == ("Logical Neuron Core(s) not available - Requested:2 Available:8 Logical Core size 1 "
                           "(no 2 contiguous free cores; largest free run 1)")
    assert len(held) == 8


def test_visible_ranges_side_by_side(tmp_path):
    held = [take(tmp_path, visible=tuple(range(a, a + 3))) for a in (0, 3, 6, 9, 12)]
    assert [r.physical_cores[0] for r in held] == [0, 3, 6, 9, 12]
    assert take(tmp_path, visible=(15,)).logical_cores == (15,)


def test_overlapping_range_fails_all_or_nothing_with_range_wording(tmp_path):
    first = take(tmp_path, visible=(3, 4, 5))
    err = refused(tmp_path, visible=(5, 6, 7))
    assert err.message == ("Logical Neuron Core(s) not available - Requested:lnc5-lnc7 Available:2 "
                           "Logical Core size:1 (cores busy, ret=-16)")
    assert (err.requested, err.available) == ("lnc5-lnc7", 2)
    assert [h.physical_cores for h in err.holders] == [(5,)]
    assert err.lines[0].startswith(f"NeuronCore(s) 5 held by PID {os.getpid()} (")
    # nothing of the failed request was kept: 6 and 7 are still free
    assert take(tmp_path, visible=(6, 7)).logical_cores == (6, 7)
    first.release()


def test_range_error_names_only_blocking_holders(tmp_path):
    take(tmp_path, visible=(0,))
    take(tmp_path, visible=(9,))
    err = refused(tmp_path, visible=(8, 9, 10))
    assert [h.physical_cores for h in err.holders] == [(9,)]
    assert err.message.endswith("Requested:lnc8-lnc10 Available:2 Logical Core size:1 (cores busy, ret=-16)")


def test_single_core_range_wording(tmp_path):
    take(tmp_path, visible=(0,))
    assert "Requested:lnc0-lnc0 Available:0" in refused(tmp_path, visible=(0,)).message


def test_num_cores_zero_takes_every_core(tmp_path):
    whole = take(tmp_path, num_cores=0)
    assert whole.logical_cores == tuple(range(16))
    err = refused(tmp_path, num_cores=0)
    assert err.message == "Logical Neuron Core(s) not available - Requested:16 Available:0 Logical Core size 1"
    whole.release()
    take(tmp_path, num_cores=1)
    assert "Requested:16 Available:15" in refused(tmp_path, num_cores=0).message


def test_visible_wins_over_num_cores(tmp_path):
    assert take(tmp_path, visible=(7, 8), num_cores=5).logical_cores == (7, 8)


def test_more_cores_than_the_machine_fails_like_busy(tmp_path):
    err = refused(tmp_path, num_cores=17)
    assert err.message == "Logical Neuron Core(s) not available - Requested:17 Available:16 Logical Core size 1"
    assert err.holders == () and err.lines == ()


@pytest.mark.parametrize("visible, num, needle", [
    ((16,), 0, "names logical cores the machine does not have"),
    ((14, 15, 16), 0, "0-15"),
    ((1, 3), 0, "contiguous increasing"),
    ((), 0, "contiguous increasing"),
    (None, -1, "NEURON_RT_NUM_CORES"),
])
def test_bad_requests_are_invalid_with_reason(tmp_path, visible, num, needle):
    with pytest.raises(NrtError) as info:
        take(tmp_path, visible=visible, num_cores=num)
    assert info.value.status == NrtStatus.INVALID and needle in info.value.message
    assert not isinstance(info.value, CoresUnavailable)


def test_release_is_idempotent_and_frees(tmp_path):
    res = take(tmp_path, num_cores=16)
    res.release()
    res.release()
    assert res.released and "released" in repr(res)
    with take(tmp_path, num_cores=16) as again:
        assert list_holders(tmp_path, INF1)[0].physical_cores == again.physical_cores
    assert list_holders(tmp_path, INF1) == []


def test_cores_unavailable_pickles(tmp_path):
    take(tmp_path, num_cores=16)
    err = refused(tmp_path, num_cores=1)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.message, copy.status, copy.holders, copy.lines) == (err.message, err.status, err.holders, err.lines)


# ---- LNC -------------------------------------------------------------------------------------------------------

def test_lnc2_locks_both_physical_cores(tmp_path):
    res = take(tmp_path, TRN2_LNC2, num_cores=2)
    assert res.logical_cores == (0, 1) and res.physical_cores == (0, 1, 2, 3)
    assert [h.physical_cores for h in list_holders(tmp_path, TRN2_LNC1)] == [(0, 1, 2, 3)]


def test_lnc1_and_lnc2_exclude_each_other(tmp_path):
    one = take(tmp_path, TRN2_LNC1, visible=(3,))                  # physical 3 = half of LNC2 core 1
    two = take(tmp_path, TRN2_LNC2, num_cores=2)
    assert two.logical_cores == (2, 3) and two.physical_cores == (4, 5, 6, 7)
    err = refused(tmp_path, TRN2_LNC2, visible=(1,))
    assert err.message == ("Logical Neuron Core(s) not available - Requested:lnc1-lnc1 Available:0 "
                           "Logical Core size:2 (cores busy, ret=-16)")
    assert err.lines[0].startswith(f"NeuronCore(s) 1 (physical 3) held by PID {os.getpid()}")
    assert err.holders[0].logical_cores == (3,)                  # as the LNC=1 holder numbered it
    assert take(tmp_path, TRN2_LNC1, num_cores=3).logical_cores == (0, 1, 2)
    assert "Requested:1 Available:0 Logical Core size 2" in refused(tmp_path, TRN2_LNC2, num_cores=1).message
    one.release()
    two.release()


# ---- holder records and listing ------------------------------------------------------------------------------

def test_list_holders_reports_record(tmp_path):
    assert list_holders(tmp_path / "missing", INF1) == []
    take(tmp_path, visible=(4, 5), version="9.9.9")
    [h] = list_holders(tmp_path, INF1)
    assert (h.pid, h.runtime_version, h.physical_cores, h.logical_cores) == (os.getpid(), "9.9.9", (4, 5), (4, 5))
    assert h.command and abs(h.start_time - process_start_time()) < 1.0 and h.start_time <= time.time()
    record = json.loads(core_lock_path(tmp_path, 4).read_text())
    assert record["pid"] == os.getpid() and record["physical_cores"] == [4, 5]


def test_list_holders_merges_one_pid(tmp_path):
    take(tmp_path, visible=(0,))
    take(tmp_path, visible=(2, 3))
    [h] = list_holders(tmp_path, INF1)
    assert h.physical_cores == (0, 2, 3) and h.logical_cores == (0, 2, 3)


def test_record_of_released_core_is_ignored(tmp_path):
    take(tmp_path, visible=(1,)).release()
    assert decode_record(core_lock_path(tmp_path, 1).read_bytes()) is not None   # stale text stays on disk
    assert list_holders(tmp_path, INF1) == []


def _hold_raw(path: Path) -> int:
    """Hold a lock file the way a foreign (older, record-less) holder would: lock it, write nothing."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


GARBAGE = {
    "truncated": b'{"format":"neuron_sim.reservation/1","pid":12',
    "binary": bytes(range(256)) * 4,
    "older-format": json.dumps({"pid": 123, "cores": [2]}).encode(),
    "wrong-types": json.dumps({"format": "neuron_sim.reservation/1", "pid": "abc", "command": 1, "start_time": "x",
                               "runtime_version": None, "physical_cores": [2], "logical_cores": [2]}).encode(),
    "negative-pid": json.dumps({"format": "neuron_sim.reservation/1", "pid": -5, "command": "x", "start_time": 1.0,
                                "runtime_version": "1", "physical_cores": [2], "logical_cores": [2]}).encode(),
    "empty": b"",
    "huge": b"[" * 200_000,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_lock_file_still_locks_and_lists_unknown(tmp_path, kind):
    path = core_lock_path(tmp_path, 2)
    path.write_bytes(GARBAGE[kind])
    fd = _hold_raw(path)                                          # a foreign holder of core 2 left garbage
    try:
        [h] = list_holders(tmp_path, INF1)
        assert (h.pid, h.command, h.physical_cores, h.logical_cores) == (0, "?", (2,), (2,))
        err = refused(tmp_path, visible=(1, 2))
        assert err.lines == ("NeuronCore(s) 2 held by an unknown process "
                             "(its lock file has no readable holder record)",)
        assert take(tmp_path, num_cores=2).logical_cores == (0, 1)
    finally:
        os.close(fd)
    res = take(tmp_path, visible=(2,))                            # garbage is overwritten by the next holder
    assert list_holders(tmp_path, INF1)[-1].pid == os.getpid()
    res.release()


@pytest.mark.parametrize("plant", ["directory", "fifo"])
def test_non_regular_lock_file_is_refused_without_hanging(tmp_path, plant):
    path = core_lock_path(tmp_path, 5)
    path.mkdir() if plant == "directory" else os.mkfifo(path)
    with pytest.raises(NrtError) as info:
        take(tmp_path, visible=(4, 5, 6))
    assert info.value.status is NrtStatus.FAILURE
    assert str(path) in info.value.message and "not a regular file" in info.value.message
    assert "remove it" in info.value.message
    assert take(tmp_path, visible=(6,)).logical_cores == (6,)    # cores whose files are sound still work


@pytest.mark.parametrize("mode", [0o000, 0o444])
def test_lock_file_with_wrong_permissions_still_works(tmp_path, mode):
    path = core_lock_path(tmp_path, 3)
    path.write_text("x")
    path.chmod(mode)
    res = take(tmp_path, visible=(3,))
    assert res.logical_cores == (3,)
    assert "Requested:lnc3-lnc3 Available:0" in refused(tmp_path, visible=(3,)).message
    res.release()
    assert take(tmp_path, visible=(3,)).logical_cores == (3,)


# ---- property tests ------------------------------------------------------------------------------------------

@given(st.binary(max_size=512))
def test_decode_record_never_raises(data):
    holder = decode_record(data)
    assert holder is None or holder.pid > 0


@given(st.integers(1, 2**31 - 1), st.text(max_size=200), st.floats(0, 4e9), st.text(max_size=20),
       st.lists(st.integers(0, 1023), max_size=16))
def test_record_round_trips(pid, command, start, version, cores):
    holder = Holder(pid, command, start, version, tuple(cores), tuple(c // 2 for c in cores))
    assert decode_record(encode_record(holder)) == holder


@given(st.lists(st.integers(0, 200), max_size=30))
def test_format_core_ids_lists_each_id_once_in_runs(ids):
    text = format_core_ids(ids)
    expanded = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        expanded.extend(range(int(a), int(b or a) + 1))
    assert expanded == sorted(set(ids))


OPS = st.lists(st.one_of(
    st.tuples(st.just("count"), st.integers(0, 6)),
    st.tuples(st.just("range"), st.integers(0, 15), st.integers(1, 4)),
    st.tuples(st.just("release"), st.integers(0, 20)),
), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_allocation_matches_first_fit_model(ops):
    """Random reserve/release sequences agree with a plain model of the driver's first-fit and range rules."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        owner = [None] * 16
        live: list[Reservation] = []
        for op in ops:
            if op[0] == "release":
                if live:
                    res = live.pop(op[1] % len(live))
                    res.release()
                    for c in res.logical_cores:
                        owner[c] = None
                continue
            if op[0] == "count":
                n = op[1] or 16
                free = [o is None for o in owner]
                start = next((s for s in range(17 - n) if all(free[s:s + n])), None)
                want = None if start is None else tuple(range(start, start + n))
                kw = {"num_cores": op[1]}
            else:
                want = tuple(range(op[1], min(16, op[1] + op[2])))
                want = want if all(owner[c] is None for c in want) else None
                kw = {"visible": tuple(range(op[1], min(16, op[1] + op[2])))}
            if want is None:
                err = refused(state, **kw)
                assert err.available == (sum(o is None for o in owner) if "num_cores" in kw
                                         else sum(owner[c] is None for c in kw["visible"]))
            else:
                res = take(state, **kw)
                assert res.logical_cores == want
                for c in want:
                    owner[c] = res
                live.append(res)
        held = {p for h in list_holders(state, INF1) for p in h.physical_cores}
        assert held == {c for c in range(16) if owner[c] is not None}
        for res in live:
            res.release()


def test_holder_line_truncates_command_and_flags_exited_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    child = int(done.stdout)
    line = holder_line(Holder(child, "python " + "x" * 100, 0.0, "2", (1,), (1,)), "1")
    assert f"held by PID {child} (python xxx" in line and "...)" in line
    assert line.endswith("which has exited: a process it forked still holds the cores")


def test_holder_lines_of_a_listing_match_the_error_lines(tmp_path):
    take(tmp_path, visible=(0, 1))
    take(tmp_path, TRN2_LNC1, visible=(6,))
    err = refused(tmp_path, num_cores=16)
    assert holder_lines(list_holders(tmp_path, INF1), INF1) == err.lines
    assert err.lines[0].startswith(f"NeuronCore(s) 0-1,6 held by PID {os.getpid()}")
