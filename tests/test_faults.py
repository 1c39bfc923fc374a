"""Fault injection: every fault kind and trigger through the flat and the Pythonic faces."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import fault_store, faults
from neuron_sim.runtime.fault_plan import CALLS, FaultPlanError, load_plan_text, parse_fault, parse_plan
from neuron_sim.status import NrtStatus

EXECUTE_STATUSES = [s.name for s in CALLS["execute"]]
LOAD_STATUSES = [s.name for s in CALLS["load"]]


def scale_neff(name: str = "scale") -> bytes:
    b = NeffBuilder(name, target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", x * 2.0)
    return b.build()


def flat_model(neff: bytes, vnc: int = -1):
    """Load with the flat face and bind x/y on the model's core: (model, inputs, outputs)."""
    status, model = nrt.nrt_load(neff, vnc, -1)
    assert status == 0, nrt.nrt_get_status_as_str(status)
    core = nrt.nrt_get_model_info(model)[1].vnc
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    for tset, name in ((ins, "x"), (outs, "y")):
        status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, core, 16, name)
        assert status == 0
        nrt.nrt_add_tensor_to_tensor_set(tset, name, t)
    return model, ins, outs


def executes(model, ins, outs, n: int) -> list[int]:
    return [nrt.nrt_execute(model, ins, outs) for _ in range(n)]


@pytest.fixture
def machine(isolated_runtime, monkeypatch):
    """inf2.24xlarge: six devices of two cores each (device faults need more than one device)."""
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf2.24xlarge")
    return isolated_runtime


def start_flat() -> None:
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == 0


# ---- plan parsing -------------------------------------------------------------------------------------
def test_plan_accepts_short_and_prefixed_names_and_numbers_faults():
    plan = parse_plan({"faults": [{"call": "nrt_execute", "status": "timeout"},
                                  {"call": "LOAD", "status": 9, "model": "m"},
                                  {"call": "device_lost", "device": 2}]})
    assert [(f.call, f.status, f.id) for f in plan] == [
        ("execute", NrtStatus.TIMEOUT, 1), ("load", NrtStatus.LOAD_NOT_ENOUGH_NC, 2),
        ("device_lost", NrtStatus.HW_ERROR, 3)]


@pytest.mark.parametrize("raw, words", [
    ({"call": "unload"}, "unknown call 'unload'"),
    ({"call": "execute"}, "'status' is missing"),
    ({"call": "execute", "status": "NRT_RESOURCE"}, "cannot be injected into execute"),
    ({"call": "load", "status": "NRT_TIMEOUT"}, "expected one of NRT_RESOURCE, NRT_FAILURE"),
    ({"call": "init", "nth": 0}, "nth=0 must be an integer >= 1"),
    ({"call": "init", "probability": 1.5}, "probability=1.5 must be a number in (0, 1]"),
    ({"call": "init", "probability": 0}, "probability=0"),
    ({"call": "init", "sticky": "yes"}, "sticky='yes' must be true or false"),
    ({"call": "init", "colour": 1}, "unknown key(s) colour"),
    ({"call": "device_lost"}, "needs 'device'"),
    ({"call": "init", "core": -1}, "core=-1 must be an integer >= 0"),
])
def test_bad_fault_names_the_key_and_accepted_form(raw, words):
    with pytest.raises(FaultPlanError, match="fault #1") as info:
        parse_fault(raw)
    assert words in str(info.value)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12))
def test_any_json_is_a_plan_or_a_fault_plan_error(data):
    try:
        parse_plan(data)
    except FaultPlanError as exc:
        assert str(exc)


def test_plan_text_inline_file_and_errors(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps([{"call": "init"}]))
    assert load_plan_text(str(path))[0].call == "init"
    assert load_plan_text('{"faults": [{"call": "tensor_allocate"}]}')[0].status is NrtStatus.RESOURCE
    with pytest.raises(FaultPlanError, match="not valid JSON"):
        load_plan_text("[{")
    with pytest.raises(FaultPlanError, match="cannot read the fault plan file .*missing.json"):
        load_plan_text(str(tmp_path / "missing.json"))
    (tmp_path / "link.json").symlink_to(path)
    with pytest.raises(FaultPlanError, match="cannot read"):
        load_plan_text(str(tmp_path / "link.json"))


def test_bad_neuron_sim_faults_fails_init_with_invalid(machine, monkeypatch, capfd):
    monkeypatch.setenv("NEURON_SIM_FAULTS", '[{"call": "execute", "status": "NRT_BOGUS"}]')
    assert nrt.nrt_init() == NrtStatus.INVALID
    err = capfd.readouterr().err
    assert "NEURON_SIM_FAULTS: fault #1: status 'NRT_BOGUS' cannot be injected into execute" in err
    monkeypatch.delenv("NEURON_SIM_FAULTS")
    start_flat()                               # the cores were released: a good configuration starts


# ---- every kind, flat face ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", EXECUTE_STATUSES)
def test_execute_faults_flat(machine, monkeypatch, capfd, status):
    monkeypatch.setenv("NEURON_SIM_FAULTS", json.dumps([{"call": "execute", "status": status, "nth": 2}]))
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")        # a numerical error is logged as a warning
    start_flat()
    model, ins, outs = flat_model(scale_neff())
    assert executes(model, ins, outs, 3) == [0, int(NrtStatus[status]), 0]
    err = capfd.readouterr().err
    assert "Inference completed with err: %d [neuron_sim injected fault #1: execute -> NRT_%s on call 2 one-shot]" \
        % (NrtStatus[status], status) in err


@pytest.mark.parametrize("status", LOAD_STATUSES)
def test_load_faults_flat(machine, monkeypatch, capfd, status):
    monkeypatch.setenv("NEURON_SIM_FAULTS", json.dumps([{"call": "load", "status": status}]))
    start_flat()
    assert nrt.nrt_load(scale_neff(), -1, -1) == (int(NrtStatus[status]), None)
    assert "Failed to load NN: scale, err: %d [neuron_sim injected fault #1" % NrtStatus[status] in capfd.readouterr().err
    assert nrt.nrt_load(scale_neff(), -1, -1)[0] == 0          # one-shot
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used > 0


def test_tensor_allocate_fault_flat(machine, monkeypatch, capfd):
    monkeypatch.setenv("NEURON_SIM_FAULTS", '[{"call": "tensor_allocate", "nth": 2, "sticky": true}]')
    start_flat()
    results = [nrt.nrt_tensor_allocate(0, 0, 64, f"t{i}")[0] for i in range(4)]
    assert results == [0, 4, 4, 4]
    assert "Allocation Failure\" on NC 0 [neuron_sim injected fault #1" in capfd.readouterr().err


def test_init_fault_reports_cores_busy_and_releases_them(machine, monkeypatch, capfd):
    monkeypatch.setenv("NEURON_SIM_FAULTS", '[{"call": "init"}]')
    assert nrt.nrt_init() == NrtStatus.RESOURCE
    assert "Logical Neuron Core(s) not available" in capfd.readouterr().err
    assert nrt.nrt_load(scale_neff(), -1, -1)[0] == NrtStatus.UNINITIALIZED
    start_flat()                                  # one-shot: the next init gets every core
    assert nrt.nrt_get_visible_nc_count() == (0, 12)


# ---- every kind, Pythonic face --------------------------------------------------------------------------
@pytest.mark.parametrize("status", EXECUTE_STATUSES)
def test_execute_faults_pythonic(machine, status):
    machine.faults.add("execute", status)
    with neuron_sim.Runtime() as rt:
        model = rt.load(scale_neff())
        with pytest.raises(neuron_sim.NrtError) as info:
            model(x=np.ones(4, np.float32))
        assert info.value.status is NrtStatus[status]
        assert "injected by the neuron_sim fault plan, fault #1" in info.value.message
        assert model(x=np.ones(4, np.float32))["y"].tolist() == [2.0] * 4


@pytest.mark.parametrize("status", LOAD_STATUSES)
def test_load_faults_pythonic(machine, status):
    machine.faults.add("load", status)
    with neuron_sim.Runtime() as rt:
        with pytest.raises(neuron_sim.NrtError) as info:
            rt.load(scale_neff())
        assert info.value.status is NrtStatus[status]
        rt.load(scale_neff())


def test_tensor_and_init_faults_pythonic(machine):
    machine.faults.add("init")
    machine.faults.add("tensor_allocate")
    with pytest.raises(neuron_sim.NrtError) as info:
        neuron_sim.Runtime().start()
    assert info.value.status is NrtStatus.RESOURCE
    with neuron_sim.Runtime() as rt:
        with pytest.raises(neuron_sim.NrtError) as info:
            rt.tensor(np.zeros(4, np.float32))
        assert info.value.status is NrtStatus.RESOURCE
        assert rt.tensor(np.zeros(4, np.float32)).numpy().tolist() == [0.0] * 4


# ---- triggers -----------------------------------------------------------------------------------------
def test_nth_call_one_shot_and_sticky(machine):
    machine.faults.add("execute", "NRT_TIMEOUT", nth=2)
    machine.faults.add("execute", "NRT_EXEC_HW_ERR_DMA_ABORT", nth=4, sticky=True)
    start_flat()
    model, ins, outs = flat_model(scale_neff())
    assert executes(model, ins, outs, 6) == [0, 5, 0, 1203, 1203, 1203]


def test_core_and_model_filters(machine):
    machine.faults.add("execute", "NRT_EXEC_HW_ERR_NC_UE", core=3, sticky=True)
    machine.faults.add("load", "NRT_FAILURE", model="other", sticky=True)
    start_flat()
    on0, on3 = flat_model(scale_neff(), 0), flat_model(scale_neff(), 3)
    assert executes(*on0, 2) == [0, 0]
    assert executes(*on3, 2) == [1202, 1202]
    assert nrt.nrt_load(scale_neff("other"), 5, -1)[0] == NrtStatus.FAILURE
    assert nrt.nrt_load(scale_neff("third"), 5, -1)[0] == 0


def seeded_run(machine, seed: int, sticky: bool = False) -> list[int]:
    faults.reset()
    machine.faults.clear()
    machine.faults.add("execute", "NRT_TIMEOUT", probability=0.3, seed=seed, nth=3, sticky=sticky)
    start_flat()
    try:
        return executes(*flat_model(scale_neff()), 40)
    finally:
        nrt.nrt_close()


def test_seeded_probability_gives_the_same_sequence_every_run(machine):
    first = seeded_run(machine, seed=11)
    assert seeded_run(machine, seed=11) == first
    assert first[:2] == [0, 0] and first.count(5) == 1          # one-shot: fails once, not before call 3
    sticky = seeded_run(machine, seed=11, sticky=True)
    tripped = sticky.index(5)
    assert tripped == first.index(5) and set(sticky[tripped:]) == {5}
    many = [tuple(seeded_run(machine, seed=s)) for s in range(6)]
    assert len(set(many)) > 1                                   # the seed matters


PLAN = [{"call": "execute", "status": "NRT_EXEC_HW_ERR_NC_UE", "nth": 2, "core": 1, "model": "scale"},
        {"call": "execute", "status": "NRT_TIMEOUT", "model": "other", "probability": 0.3, "seed": 5,
         "sticky": True}]


def statuses_flat(machine) -> dict[str, list[int]]:
    start_flat()
    on = {"core0": flat_model(scale_neff(), 0), "core1": flat_model(scale_neff(), 1),
          "other": flat_model(scale_neff("other"), 2)}
    try:
        return {k: executes(*v, 12) for k, v in on.items()}
    finally:
        nrt.nrt_close()


def statuses_pythonic(machine) -> dict[str, list[int]]:
    def status(model) -> int:
        try:
            model(x=np.ones(4, np.float32))
            return 0
        except neuron_sim.NrtError as exc:
            return int(exc.status)

    with neuron_sim.Runtime() as rt:
        on = {"core0": rt.load(scale_neff(), 0), "core1": rt.load(scale_neff(), 1),
              "other": rt.load(scale_neff("other"), 2)}
        return {k: [status(m) for _ in range(12)] for k, m in on.items()}


def test_every_trigger_gives_the_same_sequence_through_both_faces(machine):
    machine.faults.add_plan(PLAN)
    flat = statuses_flat(machine)
    faults.reset()                                 # a new process's counts
    pythonic = statuses_pythonic(machine)
    assert flat == pythonic
    assert flat["core0"] == [0] * 12                                       # core filter
    assert flat["core1"] == [0, 1202] + [0] * 10                           # nth, one-shot, model filter
    tripped = flat["other"].index(5)                                       # seeded probability, sticky
    assert tripped == 6 and flat["other"][tripped:] == [5] * (12 - tripped) and set(flat["other"][:tripped]) == {0}


# ---- device falling off ---------------------------------------------------------------------------------
def test_device_lost_trips_on_the_nth_call_touching_the_device(machine, capfd):
    machine.faults.add("device_lost", device=1, nth=2)
    start_flat()
    assert nrt.nrt_tensor_allocate(0, 0, 16, "on_dev0")[0] == 0     # device 0: not counted
    assert nrt.nrt_load(scale_neff(), 2, -1)[0] == 0                # device 1, call 1
    assert nrt.nrt_tensor_allocate(0, 3, 16, "t")[0] == NrtStatus.HW_ERROR   # call 2: falls off
    assert nrt.nrt_tensor_allocate(0, 2, 16, "t")[0] == NrtStatus.HW_ERROR   # and stays off
    err = capfd.readouterr().err
    assert "Neuron Device 1 is not responding (fell off the bus)" in err
    assert "nrt_tensor_allocate on NC 2: Neuron Device 1 is unavailable" in err
    assert err.count("[neuron_sim injected fault #1: device_lost") == 2


def test_device_lost_then_reset_by_reinit(machine):
    machine.faults.add("device_lost", device=1)
    start_flat()
    on_dev0 = flat_model(scale_neff(), 0)
    assert nrt.nrt_load(scale_neff(), 2, -1)[0] == NrtStatus.HW_ERROR
    assert nrt.nrt_load(scale_neff(), 3, -1)[0] == NrtStatus.HW_ERROR
    assert nrt.nrt_tensor_allocate(0, 2, 16, "t")[0] == NrtStatus.HW_ERROR
    assert executes(*on_dev0, 2) == [0, 0]                     # other devices keep working
    nrt.nrt_close()
    start_flat()                                               # NEURON_RT_RESET_CORES defaults to on
    assert executes(*flat_model(scale_neff(), 2), 2) == [0, 0]


def test_device_lost_survives_reinit_without_reset_cores(machine, monkeypatch):
    machine.faults.add("device_lost", device=0)
    start_flat()
    assert nrt.nrt_load(scale_neff(), 0, -1)[0] == NrtStatus.HW_ERROR
    nrt.nrt_close()
    monkeypatch.setenv("NEURON_RT_RESET_CORES", "0")
    assert nrt.nrt_init() == NrtStatus.HW_ERROR                # its cores include the lost device
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "2-3")
    start_flat()                                               # device 1 only: fine
    nrt.nrt_close()
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES")
    machine.faults.clear()                                     # neuron-sim faults clear resets the device
    start_flat()
    assert executes(*flat_model(scale_neff(), 1), 1) == [0]


def test_device_lost_sticky_falls_off_again_after_reset(machine):
    machine.faults.add("device_lost", device=0, sticky=True)
    start_flat()
    assert nrt.nrt_tensor_allocate(0, 0, 16, "t")[0] == NrtStatus.HW_ERROR
    nrt.nrt_close()
    start_flat()
    assert nrt.nrt_tensor_allocate(0, 0, 16, "t")[0] == NrtStatus.HW_ERROR


def test_device_lost_pythonic(machine):
    machine.faults.add("device_lost", device=0, nth=5)
    with neuron_sim.Runtime() as rt:
        model = rt.load(scale_neff(), core=1)
        assert model(x=np.ones(4, np.float32))["y"][0] == 2.0   # load, x, y, execute: 4 calls; the 5th trips
        with pytest.raises(neuron_sim.NrtError) as info:
            model(x=np.ones(4, np.float32))
        assert info.value.status is NrtStatus.HW_ERROR


# ---- async ----------------------------------------------------------------------------------------------
def test_async_fault_reported_through_the_callback(machine, monkeypatch):
    monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "4")
    machine.faults.add("execute", "NRT_EXEC_HW_ERR_HBM_UE", nth=2)
    start_flat()
    seen, done = [], threading.Event()

    def callback(params, model_id, vnc, job_id, status):
        seen.append((job_id, status))
        if len(seen) == 3:
            done.set()

    assert nrt.nrt_register_async_exec_callback(callback, None) == 0
    model, ins, outs = flat_model(scale_neff())
    assert executes(model, ins, outs, 3) == [0, 0, 0]          # enqueued
    assert done.wait(30)
    assert sorted(seen) == [(1, 0), (2, 1201), (3, 0)]


def test_async_fault_fails_the_future(machine, monkeypatch):
    monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "2")
    machine.faults.add("execute", "NRT_EXEC_UNIT_UNRECOVERABLE")
    with neuron_sim.Runtime() as rt:
        model = rt.load(scale_neff())
        first, second = model.submit(x=np.ones(4, np.float32)), model.submit(x=np.ones(4, np.float32))
        with pytest.raises(neuron_sim.NrtError) as info:
            first.result(30)
        assert info.value.status is NrtStatus.EXEC_UNIT_UNRECOVERABLE
        assert second.result(30)["y"].tolist() == [2.0] * 4


# ---- the machine plan ----------------------------------------------------------------------------------
def test_machine_plan_is_seen_by_a_running_runtime(machine):
    start_flat()
    model, ins, outs = flat_model(scale_neff())
    assert executes(model, ins, outs, 1) == [0]
    assert faults.active is None                                # nothing planned: the hot path tests one attribute
    machine.faults.add("execute", "NRT_TIMEOUT")
    assert executes(model, ins, outs, 2) == [5, 0]
    assert [f.id for f in machine.faults.clear()] == [1]
    assert faults.active is None


def test_plan_file_is_written_atomically_and_not_through_symlinks(machine, tmp_path):
    target = tmp_path / "outside.json"
    target.write_text("keep")
    mdir = machine.machine_dir
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "faults.json").symlink_to(target)
    with pytest.raises(FaultPlanError, match="cannot read the fault plan"):
        fault_store.read(mdir)
    machine.faults.add("init")
    assert target.read_text() == "keep"
    assert not (mdir / "faults.json").is_symlink()
    assert [f.call for f in machine.faults.list()] == ["init"]
    (mdir / "faults.json").write_text("garbage")
    with pytest.raises(FaultPlanError, match="damaged"):
        machine.faults.list()
    assert machine.faults.add("load", "NRT_FAILURE").id == 1   # a damaged plan is replaced by the next write


# ---- the trigger state machine, without a runtime ------------------------------------------------------
def _fake_cores(device: int = 0, core: int = 0):
    from types import SimpleNamespace
    return (SimpleNamespace(vnc=core, core=SimpleNamespace(device=device, global_id=core, local_id=core),
                            count_failure=lambda status: None),)


def _failing_calls(fault, n: int) -> list[int]:
    inj = faults.Injector()
    inj.env_faults = (fault,)
    inj._rebuild()
    failed = []
    for i in range(1, n + 1):
        try:
            inj.hit("execute", _fake_cores(), None)
        except neuron_sim.NrtError:
            failed.append(i)
    return failed


@given(nth=st.integers(1, 8), sticky=st.booleans(), p=st.sampled_from([1.0, 0.6, 0.25]),
       seed=st.integers(0, 2**32), n=st.integers(1, 25))
def test_trigger_rules(nth, sticky, p, seed, n):
    fault = parse_fault({"call": "execute", "status": "NRT_TIMEOUT", "nth": nth, "sticky": sticky,
                         "probability": p, "seed": seed})
    failed = _failing_calls(fault, n)
    assert failed == _failing_calls(fault, n)                     # same plan, same sequence
    assert all(i >= nth for i in failed)
    if failed and sticky:
        assert failed == list(range(failed[0], n + 1))            # once tripped, every later call
    if not sticky:
        assert len(failed) <= 1                                   # one-shot
    if p == 1.0:
        assert failed[:1] == ([nth] if n >= nth else [])
