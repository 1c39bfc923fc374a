"""Storm: 24 real processes reserve and release at random on one machine (LNC=1 and LNC=2 mixed), some are
SIGKILLed; no physical NeuronCore is ever held by two processes at once, and nothing is held afterwards.

Soundness of the checks: a worker stamps "acq" (time.monotonic_ns, one clock for all processes) after reserve()
returned and "rel" before release(); a killed worker's holding ends after the launcher's stamp taken just before
SIGKILL. Every logged interval therefore lies inside the real holding time, so two overlapping logged intervals
on one core prove a real double hold (no false alarms). A watcher samples list_holders meanwhile: a core it sees
under pid P during [t0, t1] must not lie wholly inside another pid's logged interval on that core.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from neuron_sim.runtime.reservation import list_holders, reserve

_spec = importlib.util.spec_from_file_location("reservation_worker", Path(__file__).with_name("reservation_worker.py"))
rw = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("reservation_worker", rw)
_spec.loader.exec_module(rw)

LNC1, LNC2 = "trn2.3xlarge:2x8:lnc1", "trn2.3xlarge:2x8:lnc2"      # 16 physical cores shared by both
WORKERS, KILLS, SLEEPERS = 22, 5, 2         # 24 processes: 5 storm workers and both sleepers get SIGKILL


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _intervals(out: Path, kill_time: dict[int, int]) -> tuple[dict[int, list[tuple[int, int, int]]], list[dict]]:
    """Per physical core, (start, end, pid) of every logged holding; plus all acquire events."""
    per_core: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    acquires = []
    for path in out.glob("events-*.jsonl"):
        open_acq = None
        for ev in _read_jsonl(path):
            if ev["kind"] == "acq":
                assert open_acq is None, f"{path.name}: acquire while holding"
                open_acq = ev
                acquires.append(ev)
            elif ev["kind"] == "rel":
                assert open_acq is not None and ev["physical"] == open_acq["physical"]
                for core in ev["physical"]:
                    per_core[core].append((open_acq["t"], ev["t"], ev["pid"]))
                open_acq = None
        if open_acq is not None:                      # killed while holding: held at least until the kill
            pid = open_acq["pid"]
            assert pid in kill_time, f"worker {pid} never released {open_acq['physical']} yet was not killed"
            if open_acq["t"] < kill_time[pid]:
                for core in open_acq["physical"]:
                    per_core[core].append((open_acq["t"], kill_time[pid], pid))
    return per_core, acquires


def _check_acquire_shape(ev: dict) -> None:
    logical, physical, lnc = ev["logical"], ev["physical"], ev["lnc"]
    assert physical == [lnc * c + i for c in logical for i in range(lnc)]
    if ev["visible"] is not None:
        assert logical == ev["visible"]
    else:
        assert logical == list(range(logical[0], logical[0] + ev["num"]))


@pytest.mark.timeout(120)
def test_storm_never_double_holds_a_core(tmp_path):
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    fleet = rw.WorkerProcess("fleet", "--state-dir", str(state), "--out-dir", str(out), "--machines",
                             f"{LNC1},{LNC2}", "--count", str(WORKERS), "--kills", str(KILLS), "--rounds", "8",
                             "--sleepers", str(SLEEPERS), "--kill-window", "0.25", "--seed", "7")
    try:
        done = fleet.event(timeout=90)
        assert fleet.let_go() == 0
    finally:
        fleet.cleanup()
    assert done["event"] == "fleet-done" and done["watcher"] == 0
    exits = {int(p): c for p, c in done["exits"].items()}
    kill_time = {k["pid"]: k["t"] for k in _read_jsonl(out / "kills.jsonl")}
    assert len(exits) == WORKERS + SLEEPERS and len(kill_time) == KILLS + SLEEPERS
    assert all(code == 0 for pid, code in exits.items() if pid not in kill_time), exits
    assert sum(code == -9 for code in exits.values()) >= SLEEPERS

    per_core, acquires = _intervals(out, kill_time)
    killed_holding = {pid for spans in per_core.values() for _, end, pid in spans if kill_time.get(pid) == end}
    assert len(killed_holding) >= SLEEPERS, "no process was killed while holding cores"
    for ev in acquires:
        _check_acquire_shape(ev)
    assert len(acquires) >= WORKERS, "too little traffic to mean anything"
    assert {ev["lnc"] for ev in acquires} == {1, 2}
    busy = sum(ev["kind"] == "busy" for p in out.glob("events-*.jsonl") for ev in _read_jsonl(p))
    assert busy > 0, "no contention happened"

    for core, spans in per_core.items():                    # logged holdings never overlap on a core
        spans.sort()
        for i, (start, end, pid) in enumerate(spans):
            for start2, end2, pid2 in spans[i + 1:]:
                if start2 >= end:
                    break
                assert pid2 == pid, f"core {core}: pid {pid} [{start}, {end}] and pid {pid2} [{start2}, {end2}]"

    snapshots = _read_jsonl(out / "watch.jsonl")
    assert len(snapshots) >= 5
    workers = set(exits)
    for snap in snapshots:
        seen: dict[int, int] = {}
        for h in snap["holders"]:
            assert h["pid"] in workers, f"unexpected holder {h}"     # no unknown (pid 0) or foreign holder
            for core in h["physical"]:
                assert core not in seen, f"core {core} listed under {seen[core]} and {h['pid']}"
                seen[core] = h["pid"]
        for core, pid in seen.items():
            for start, end, other in per_core.get(core, []):
                assert not (other != pid and start <= snap["t0"] and snap["t1"] <= end), (
                    f"watcher saw core {core} under {pid} while {other} held it")

    lnc1, lnc2 = rw.make_machine(LNC1), rw.make_machine(LNC2)
    assert list_holders(state, lnc1) == [] and list_holders(state, lnc2) == []
    everything = reserve(state, lnc2, visible=None, num_cores=0, runtime_version="x")
    assert everything.physical_cores == tuple(range(16))
    everything.release()
