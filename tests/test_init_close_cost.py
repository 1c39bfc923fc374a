"""What keeps a warm nrt_init/nrt_close cheap: no thread started per init, nothing polling between runtimes, no
50 ms fault-plan polling on a machine without a plan (yet a plan written later by another process is picked up),
the first ledger reservation under the shared ledger lock, the configuration parsed once per environment.
Timing figures live in benchmarks/ (run_all.py --only init); these tests assert the behaviour."""
from __future__ import annotations

import json
import threading

import pytest

from neuron_sim import nrt
from neuron_sim.config import load_config
from neuron_sim.runtime import fault_store, faults, lifecycle, publish, ticker
from neuron_sim.runtime.fault_plan import parse_fault
from neuron_sim.runtime.memory_ledger import CHUNK_BYTES, MemoryLedger, read_machine_memory
from neuron_sim.runtime.reservation import default_state_dir

KEY = (0, 0)


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")


def background_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name in ("nrt-ticker", "nrt-publisher", "nrt-fault-plan"))


def test_init_close_cycles_start_no_thread_and_leave_nothing_scheduled(trn1):
    for _ in range(3):
        assert nrt.nrt_init() == nrt.NRT_SUCCESS
        assert ticker.scheduled(publish.TASK_NAME) and ticker.scheduled(faults.TASK_NAME)
        nrt.nrt_close()
        assert not ticker.scheduled(publish.TASK_NAME) and not ticker.scheduled(faults.TASK_NAME)
    assert background_threads() == ["nrt-ticker"]          # one per process, however many runtimes came and went


def test_publisher_record_is_written_at_init_and_rewritten_by_its_ticker_task(trn1):
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        rt = lifecycle.current("test")
        directory = default_state_dir(rt.machine)
        [first] = publish.read_runtimes(directory)                 # there at once: neuron-ls sees the process
        assert rt.publisher._tick() == publish.SLOW_INTERVAL_S      # what the ticker runs: publish, then wait
        [again] = publish.read_runtimes(directory)
        assert again["published_at"] >= first["published_at"] and again["pid"] == first["pid"]
    finally:
        nrt.nrt_close()
    assert rt.publisher._tick() is None                            # a late tick after close writes nothing
    assert publish.read_runtimes(directory) == []


def test_without_a_machine_plan_the_fault_task_looks_once_a_second_and_sees_a_later_plan(trn1):
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        directory = faults.state().state_dir
        assert fault_store.signature(directory) is None
        assert faults._watch() == faults.FIRST_PLAN_POLL_S                # no 50 ms polling without a plan
        # another process adds a fault: the plan file changes, nothing in this process is told
        fault_store.add(directory, [parse_fault({"call": "tensor_allocate", "status": "NRT_RESOURCE"})])
        assert faults.active is None
        assert faults._watch() == faults.POLL_INTERVAL_S                  # the next look reads it...
        assert faults.active is not None                                  # ...and it is planned in this process
        status, _ = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 64, "t")
        assert status == nrt.NRT_RESOURCE
    finally:
        nrt.nrt_close()


def test_with_a_machine_plan_at_init_the_fault_task_polls_every_50_ms(trn1):
    from neuron_sim.cli.ls import machine_from_env
    directory = default_state_dir(machine_from_env())
    directory.mkdir(parents=True, mode=0o700)
    fault_store.clear(directory)                                          # an (empty) plan file exists
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        assert faults._watch() == faults.POLL_INTERVAL_S
    finally:
        nrt.nrt_close()
    assert faults._watch() is None                                        # after nrt_close the task ends


def _ledger(tmp_path, capacity: int) -> MemoryLedger:
    return MemoryLedger(tmp_path, {KEY: capacity})


def test_first_reservation_backs_off_when_a_racing_process_took_the_room(tmp_path):
    """Write, then scan: of two first reservations racing for the last room, the one that sees the other backs off."""
    a, b = _ledger(tmp_path, 3 * CHUNK_BYTES // 2), _ledger(tmp_path, 3 * CHUNK_BYTES // 2)

    class RacingScan:                    # b's whole first reservation runs between a's write and a's scan
        def __init__(self, real):
            self.real = real

        def scan(self, skip, tidy=True):
            results.append(b._first_reservation(KEY, 1))
            return self.real.scan(skip, tidy)

    results: list[bool] = []
    a._peers = RacingScan(a._peers)
    results.insert(0, a._first_reservation(KEY, 1))
    assert results == [True, False]                                       # b saw a's chunk and withdrew
    assert (a.reserved[KEY], b.reserved[KEY]) == (CHUNK_BYTES, 0)
    on_disk = [json.loads(p.read_text())["banks"].get("0:0", 0) for p in tmp_path.glob("mem-*.ledger")]
    assert sorted(on_disk) == [0, CHUNK_BYTES]                            # never both: the bank is not overcommitted
    a.close()
    b.close()


def test_first_reservation_short_of_room_takes_the_exclusive_path(tmp_path):
    a, b = _ledger(tmp_path, 3 * CHUNK_BYTES // 2), _ledger(tmp_path, 3 * CHUNK_BYTES // 2)
    assert a.grow(KEY, CHUNK_BYTES) is None
    assert b.grow(KEY, CHUNK_BYTES) == [e for e in b.others(KEY)]         # does not fit: the neighbours named
    assert b.grow(KEY, CHUNK_BYTES // 4) is None                          # the rest of the bank does
    assert b.reserved[KEY] == CHUNK_BYTES // 2                            # clamped to the room left
    a.close()
    b.close()
    files = [json.loads(p.read_text()) for p in tmp_path.glob("mem-*.ledger")]
    assert [f["banks"] for f in files] == [{}]        # emptied; one file kept, locked, for this process's next runtime


def test_a_process_that_exits_normally_leaves_no_ledger_file(trn1):
    import os
    import subprocess
    import sys
    from tests.conftest import REPO
    child = "from neuron_sim import nrt\nfor _ in range(2):\n    assert nrt.nrt_init() == 0\n    nrt.nrt_close()\n"
    subprocess.run([sys.executable, "-c", child], env=dict(os.environ), cwd=REPO, check=True, timeout=120)
    from neuron_sim.cli.ls import machine_from_env
    directory = default_state_dir(machine_from_env())
    assert directory.is_dir() and list(directory.glob("mem-*.ledger")) == [] and list(directory.glob("rt-*")) == []


def test_runtimes_of_one_process_share_its_liveness_lock_and_are_told_apart(trn1):
    keys, stems, inodes = [], set(), set()
    for _ in range(2):
        assert nrt.nrt_init() == nrt.NRT_SUCCESS
        rt = lifecycle.current("test")
        directory = default_state_dir(rt.machine)
        [record] = publish.read_runtimes(directory)
        keys.append(record["key"])
        stems.add(rt.publisher.name)
        inodes.add((directory / f"{rt.publisher.name}.json").stat().st_ino)
        nrt.nrt_close()
        assert publish.read_runtimes(directory) == []                      # a closed runtime is not listed
        name = rt.publisher.name
        assert sorted(p.name for p in directory.glob("rt-*")) == [f"{name}.json", f"{name}.lock"]   # both kept
        assert json.loads((directory / f"{name}.json").read_text()) == {"closed": True}
    assert len(stems) == 1 and len(set(keys)) == 2                         # one lock file, two runtimes
    assert len(inodes) == 1                                                # the record rewritten in place


def test_a_warm_init_reuses_the_process_ledger_file(trn1):
    for _ in range(2):
        assert nrt.nrt_init() == nrt.NRT_SUCCESS
        directory = lifecycle.current("test").reservation.state_dir
        [entry] = read_machine_memory(directory, lifecycle.current("test").machine)[0].entries
        nrt.nrt_close()
        [kept] = directory.glob("mem-*.ledger")
        assert json.loads(kept.read_text())["banks"] == {}
    inode = kept.stat().st_ino
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert [p.stat().st_ino for p in directory.glob("mem-*.ledger")] == [inode]   # rewritten, not created again
    nrt.nrt_close()


def test_a_closed_ledger_reserves_nothing_and_writes_nothing(tmp_path):
    from neuron_sim.hardware.select import select_machine
    machine = select_machine("trn1.2xlarge", None, None)
    ledger = MemoryLedger(tmp_path, {KEY: 32 << 30})
    assert ledger.grow(KEY, 3 * CHUNK_BYTES) is None
    ledger.close()
    ledger.shrink(KEY, 0)                                                 # after close: no file to write
    assert ledger.grow(KEY, 1) == []
    assert read_machine_memory(tmp_path, machine)[0].entries == ()


def test_the_configuration_is_parsed_once_per_set_of_neuron_variables():
    env = {"NEURON_RT_NUM_CORES": "1", "HOME": "/x"}
    first = load_config(env)
    assert load_config(dict(env, HOME="/y", PATH="/bin")) is first        # other variables do not matter
    assert load_config(dict(env, NEURON_RT_NUM_CORES="2")).num_cores == 2
    for _ in range(2):                                                    # a bad value is refused every time
        with pytest.raises(Exception, match="NEURON_RT_NUM_CORES"):
            load_config({"NEURON_RT_NUM_CORES": "many"})


def test_os_environ_is_keyed_by_its_neuron_variables_without_decoding_the_rest(monkeypatch):
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    first = load_config()
    monkeypatch.setenv("SOME_OTHER_VARIABLE", "x")
    assert load_config() is first                                         # other variables do not matter
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "2")
    assert load_config().num_cores == 2                                   # a changed value is parsed again
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "1")
    assert load_config().visible_cores == (1,)                            # so is a variable newly set
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES")
    assert load_config().visible_cores is None                            # and one removed
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    assert load_config() == first


def test_a_process_moving_between_state_directories_keeps_files_of_the_latest_only(trn1, tmp_path, monkeypatch):
    dirs = []
    for i in range(3):
        monkeypatch.setenv("NEURON_SIM_STATE_DIR", str(tmp_path / f"state{i}"))
        assert nrt.nrt_init() == nrt.NRT_SUCCESS
        dirs.append(lifecycle.current("test").reservation.state_dir)
        nrt.nrt_close()
    left = [sorted(p.name.split("-")[0] for p in d.iterdir() if p.name.startswith(("mem-", "rt-"))) for d in dirs]
    assert left == [[], [], ["mem", "rt", "rt"]]         # earlier directories' kept files were deleted
