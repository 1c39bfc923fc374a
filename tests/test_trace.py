"""System trace (nrt_sys_trace_*), profiles (nrt_profile_*) and the Perfetto timeline (NEURON_SIM_TRACE)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from neuron_sim import nrt
from neuron_sim.cli.main import main as cli
from neuron_sim.config.parsers import ConfigError
from neuron_sim.runtime import interface, trace
from neuron_sim.tracing import perfetto
from neuron_sim.tracing.profile import read_profile
from tests.conftest import NEFFS

MLP = (NEFFS / "mlp_trn1.neff").read_bytes()


@pytest.fixture
def runtime(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == 0
    yield
    nrt.nrt_close()


def load(vnc: int = 0, neff: bytes = MLP):
    """Load on ``vnc`` with its input and output tensor sets."""
    status, model = nrt.nrt_load(neff, vnc, -1)
    assert status == 0
    _, info = nrt.nrt_get_model_tensor_info(model)
    sets = {0: nrt.nrt_allocate_tensor_set()[1], 1: nrt.nrt_allocate_tensor_set()[1]}
    tensors = {}
    for t in info.tensor_array:
        _, tensors[t.name] = nrt.nrt_tensor_allocate(0, vnc, t.size, t.name)
        nrt.nrt_add_tensor_to_tensor_set(sets[t.usage], t.name, tensors[t.name])
    return model, sets[0], sets[1], tensors


def fetch(options=None) -> list[dict]:
    status, text = nrt.nrt_sys_trace_fetch_events(options)
    assert status == 0
    return json.loads(text)["events"]


def duration_ns(model) -> int:
    return round(model.duration_s * 1e9)


def now_ns() -> int:
    """The calling thread's simulated time (device timestamps are on the same clock)."""
    return round(interface.clock().thread_now() * 1e9)


def test_short_program_events_exactly(runtime):
    """One start/stop pair per execution whose difference is the simulated duration, sync points after each,
    the software events in call order."""
    model, inputs, outputs, t = load()
    d = duration_ns(model)
    t0 = now_ns()                                   # after nrt_init's core reset and the load
    assert nrt.nrt_sys_trace_start(None) == 0
    assert nrt.nrt_tensor_write(t["x"], bytes(256), 0, 256) == 0
    assert nrt.nrt_execute(model, inputs, outputs) == 0
    assert nrt.nrt_execute(model, inputs, outputs) == 0
    assert nrt.nrt_tensor_read(t["y"], bytearray(40), 0, 40) == 0
    assert nrt.nrt_unload(model) == 0
    events = fetch()
    got = [(e["event_type"], e["phase"], e["tracking_id"], e["lnc_idx"], e["data"]["nc_timestamp_ns"] - t0)
           for e in events]
    assert got == [
        ("nrt_tensor_write", "start", 1, 0, 0), ("nrt_tensor_write", "stop", 1, 0, 0),
        ("nrt_execute", "start", 2, 0, 0), ("nc_exec_running", "start", 2, 0, 0),
        ("nc_exec_running", "stop", 2, 0, d), ("timestamp_sync_point", "info", 2, 0, d),
        ("nrt_execute", "stop", 2, 0, d),
        ("nrt_execute", "start", 3, 0, d), ("nc_exec_running", "start", 3, 0, d),
        ("nc_exec_running", "stop", 3, 0, 2 * d), ("timestamp_sync_point", "info", 3, 0, 2 * d),
        ("nrt_execute", "stop", 3, 0, 2 * d),
        ("nrt_tensor_read", "start", 4, 0, 2 * d), ("nrt_tensor_read", "stop", 4, 0, 2 * d),
        ("nrt_unload", "start", 5, 0, 2 * d), ("nrt_unload", "stop", 5, 0, 2 * d),
    ]
    run = [e for e in events if e["event_type"] == "nc_exec_running"][0]["data"]
    assert run["model_id"] == model.id and run["model_name"] == "mlp_trn1" and run["status"] == "NRT_SUCCESS"
    sync = [e for e in events if e["event_type"] == "timestamp_sync_point"][0]["data"]
    assert sync["cpu_timestamp_ns"] > 1_600_000_000 * 10**9            # wall clock beside the device clock
    assert [e["data"]["tensor_name"] for e in events if e["event_type"].startswith("nrt_tensor")] == ["x"] * 2 + ["y"] * 2
    assert fetch() == []                                                # fetched events leave the rings


def test_load_numerical_error_and_timeout_events(runtime, monkeypatch):
    assert nrt.nrt_sys_trace_start(None) == 0
    nan_model, i, o, _ = load(0, (NEFFS / "nan_output.neff").read_bytes())
    assert nrt.nrt_execute(nan_model, i, o) == nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR
    events = fetch()
    assert [e["event_type"] for e in events if e["phase"] != "stop"][:1] == ["nrt_load"]
    assert [e["event_type"] for e in events][-3:] == ["numerical_err", "timestamp_sync_point", "nrt_execute"]
    assert {e["data"]["status"] for e in events if e["event_type"] == "nc_exec_running"} == {
        "NRT_EXEC_COMPLETED_WITH_NUM_ERR"}


def test_event_types_and_enabled_types():
    status, types = nrt.nrt_sys_trace_get_event_types()
    assert status == 0 and types[:7] == list(trace.HARDWARE_EVENTS) and "nrt_execute" in types
    _, config = nrt.nrt_sys_trace_config_allocate()
    assert nrt.nrt_sys_trace_config_set_capture_enabled_for_event_type(config, "cc_running", False) == 0
    assert nrt.nrt_sys_trace_config_set_capture_enabled_for_event_type(config, "bogus", True) == nrt.NRT_INVALID
    assert "cc_running" not in nrt.nrt_sys_trace_config_get_enabled_event_types(config)[1]
    nrt.nrt_sys_trace_config_set_defaults(config)
    assert nrt.nrt_sys_trace_config_get_enabled_event_types(config)[1] == types
    nrt.nrt_sys_trace_config_free(config)
    assert nrt.nrt_sys_trace_config_get_enabled_event_types(config)[0] == nrt.NRT_INVALID
    assert nrt.nrt_sys_trace_config_get_enabled_event_types("config")[0] == nrt.NRT_INVALID
    assert nrt.nrt_sys_trace_start(None) == nrt.NRT_UNINITIALIZED


def two_cores_traced(config=None):
    m0, i0, o0, _ = load(0)
    m1, i1, o1, _ = load(1)
    assert nrt.nrt_sys_trace_start(config) == 0
    for m, i, o in ((m0, i0, o0), (m1, i1, o1)):
        assert nrt.nrt_execute(m, i, o) == 0
    return fetch()


def test_config_filters_per_nc_and_type(runtime):
    _, config = nrt.nrt_sys_trace_config_allocate()
    nrt.nrt_sys_trace_config_set_capture_enabled_for_nc(config, 0, False)
    nrt.nrt_sys_trace_config_set_capture_enabled_for_event_type(config, "nrt_execute", False)
    events = two_cores_traced(config)
    assert {e["lnc_idx"] for e in events} == {1}
    assert [e["event_type"] for e in events] == ["nc_exec_running", "nc_exec_running", "timestamp_sync_point"]


@pytest.mark.parametrize("nc, types, expected", [
    ("1", "", {(1, "nc_exec_running"), (1, "timestamp_sync_point"), (1, "nrt_execute")}),
    ("0-1", "hardware,^timestamp_sync_point", {(0, "nc_exec_running"), (1, "nc_exec_running")}),
    ("0,5", "software", {(0, "nrt_execute")}),
    ("", "^nrt_execute,^timestamp_sync_point", {(0, "nc_exec_running"), (1, "nc_exec_running")}),
    ("", "nrt_execute,nc_exec_running,^nc_exec_running", {(0, "nrt_execute"), (1, "nrt_execute")}),
])
def test_environment_filters(runtime, monkeypatch, nc, types, expected):
    monkeypatch.setenv("NEURON_RT_INSPECT_EVENT_FILTER_NC", nc)
    monkeypatch.setenv("NEURON_RT_INSPECT_EVENT_FILTER_TYPE", types)
    assert {(e["lnc_idx"], e["event_type"]) for e in two_cores_traced()} == expected


@pytest.mark.parametrize("variable, value", [("NEURON_RT_INSPECT_EVENT_FILTER_NC", "a-b"),
                                             ("NEURON_RT_INSPECT_EVENT_FILTER_TYPE", "hardware,^bogus"),
                                             ("NEURON_RT_INSPECT_EVENT_FILTER_TYPE", ",")])
def test_bad_environment_filter_is_invalid_with_a_log_line(runtime, monkeypatch, capfd, variable, value):
    monkeypatch.setenv(variable, value)
    assert nrt.nrt_sys_trace_start(None) == nrt.NRT_INVALID
    err = capfd.readouterr().err
    assert "ERROR   NRT:nrt_sys_trace_start" in err and variable in err and "expected" in err


@given(st.sets(st.sampled_from(trace.EVENT_TYPES)), st.sets(st.sampled_from(trace.EVENT_TYPES + ("hardware", "software"))))
def test_type_filter_parser_includes_then_excludes(included, excluded):
    text = ",".join(sorted(included) + ["^" + x for x in sorted(excluded)])
    if not text:
        with pytest.raises(ConfigError):
            trace.parse_type_filter(text)
        return
    expand = lambda names: {t for n in names for t in trace.CATEGORIES.get(n, (n,))}  # noqa: E731
    assert trace.parse_type_filter(text) == (expand(included) or set(trace.EVENT_TYPES)) - expand(excluded)


def test_ring_size_and_fetch_options(runtime):
    model, i, o, _ = load(0)
    _, config = nrt.nrt_sys_trace_config_allocate()
    nrt.nrt_sys_trace_config_set_max_events_per_nc(config, 4)
    assert nrt.nrt_sys_trace_start(config) == 0
    for _ in range(3):
        nrt.nrt_execute(model, i, o)
    events = fetch()
    assert len(events) == 4 and events[-1]["tracking_id"] == 3      # the oldest were dropped
    for _ in range(2):
        nrt.nrt_execute(model, i, o)
    _, options = nrt.nrt_sys_trace_fetch_options_allocate()
    nrt.nrt_sys_trace_fetch_options_set_nc_idx(options, 1)
    assert fetch(options) == []
    nrt.nrt_sys_trace_fetch_options_set_defaults(options)
    nrt.nrt_sys_trace_fetch_options_set_max_events_per_nc(options, 2)
    assert [(e["event_type"], e["tracking_id"]) for e in fetch(options)] == [("timestamp_sync_point", 5),
                                                                              ("nrt_execute", 5)]
    nrt.nrt_sys_trace_config_set_max_events_per_nc(config, -1)                  # logged, ignored
    assert nrt.nrt_sys_trace_stop() == 0
    nrt.nrt_execute(model, i, o)
    assert fetch() == []


def test_async_pipelining_overlaps_host_work_and_device_time():
    """Each request runs on the device while the host works on the next one: nrt_execute returns at once
    (zero-length call), request n's device slot lies between its enqueue and the next enqueue, and the run
    ends one device time after the last enqueue instead of after requests x (host + device)."""
    from neuron_sim.tracing.timeline import DEVICE_S, HOST_WORK_S, pipelining_trace
    events, summary = pipelining_trace(requests=6, depth=3)
    ms = 1_000_000
    runs = [e for e in events if e["event_type"] == "nc_exec_running"]
    starts = {e["data"]["job_id"]: e["data"]["nc_timestamp_ns"] for e in runs if e["phase"] == "start"}
    stops = {e["data"]["job_id"]: e["data"]["nc_timestamp_ns"] for e in runs if e["phase"] == "stop"}
    enqueued = {e["data"]["job_id"]: e["data"]["nc_timestamp_ns"] for e in events
                if e["event_type"] == "async_exec_queue" and e["phase"] == "start"}
    calls = [e for e in events if e["event_type"] == "nrt_execute"]
    jobs = sorted(starts)
    assert len(jobs) == 6 and len(calls) == 12
    assert {e["data"]["nc_timestamp_ns"] for e in calls if e["phase"] == "start"} == set(enqueued.values())
    for n, job in enumerate(jobs):
        assert enqueued[job] == (n + 1) * HOST_WORK_S * 1e9                  # the host never waited
        assert stops[job] - starts[job] == DEVICE_S * 1e9
        if n + 1 < len(jobs):
            assert enqueued[job] <= starts[job] < stops[job] <= enqueued[jobs[n + 1]]   # under the next host work
    assert stops[jobs[-1]] == 14 * ms                                      # not 6 x (2 + 2) = 24 ms
    assert summary["host_work_ms"][1] == [2.0, 4.0] and summary["device_ms"][0] == [2.0, 4.0]
    depths = [e["data"]["queue_depth"] for e in events if e["event_type"] == "async_exec_queue"]
    assert depths[0] == 1 and depths[-1] == 0


def test_profile_file_and_cli(runtime, tmp_path, capsys):
    model, i, o, _ = load(0)
    other, i1, o1, _ = load(1)
    path = tmp_path / "model.ntff"
    path.write_text("old contents")
    assert nrt.nrt_profile_start(model, str(path)) == 0
    assert path.read_bytes() == b""                                # truncated at start
    for _ in range(3):
        assert nrt.nrt_execute(model, i, o) == 0
    assert nrt.nrt_execute(other, i1, o1) == 0                      # another model: not in the profile
    assert nrt.nrt_profile_stop(str(path)) == 0
    doc = read_profile(str(path))
    d = duration_ns(model)
    assert doc["format"] == "neuron_sim.profile/1" and "not the Neuron profiler" in doc["note"]
    assert doc["model"]["id"] == model.id
    s0 = doc["executions"][0]["start_ns"]
    assert s0 >= doc["started_ns"]
    assert [(r["start_ns"] - s0, r["duration_ns"], r["status"]) for r in doc["executions"]] == [
        (0, d, "NRT_SUCCESS"), (d, d, "NRT_SUCCESS"), (2 * d, d, "NRT_SUCCESS")]
    assert {e["data"]["model_id"] for e in doc["events"] if "model_id" in e["data"]} == {model.id}
    assert cli(["profile", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"profile of model {model.id} mlp_trn1 on NC 0" in out and "3 execution(s)" in out
    assert out.count("NRT_SUCCESS") == 3
    assert nrt.nrt_profile_stop(str(path)) == nrt.NRT_INVALID                    # not started again
    assert nrt.nrt_profile_start(model, str(tmp_path / "no" / "dir.ntff")) == nrt.NRT_INVALID
    assert nrt.nrt_profile_start("model", str(path)) == nrt.NRT_INVALID
    assert cli(["profile", "show", str(tmp_path / "missing")]) == 2


def perfetto_program(tmp_path, name="trace.json"):
    """A traced process: loads, executions, a timeout, a numerical error, on the virtual clock."""
    os.environ["NEURON_SIM_TRACE"] = str(tmp_path / name)
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.2xlarge"
    os.environ["NEURON_RT_EXEC_TIMEOUT"] = "5"
    try:
        assert nrt.nrt_init() == 0
        model, i, o, _ = load(0)
        for _ in range(2):
            assert nrt.nrt_execute(model, i, o) == 0
        slow, i1, o1, _ = load(1, (NEFFS / "slow_40s.neff").read_bytes())
        assert nrt.nrt_execute(slow, i1, o1) == nrt.NRT_TIMEOUT
        oob, i2, o2, _ = load(1, (NEFFS / "gather_oob.neff").read_bytes())
        assert nrt.nrt_execute(oob, i2, o2) == nrt.NRT_EXEC_OOB
        nrt.nrt_close()
    finally:
        for var in ("NEURON_SIM_TRACE", "NEURON_RT_EXEC_TIMEOUT"):
            os.environ.pop(var, None)
    return model, slow, oob


def test_perfetto_trace_of_a_process(tmp_path):
    model, slow, oob = perfetto_program(tmp_path)
    g = round(oob.duration_s * 1e9) / 1000
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert perfetto.validate(doc) == []
    ev = doc["traceEvents"]
    pid = os.getpid()
    names = {(e["tid"], e["args"]["name"]) for e in ev if e["name"] == "thread_name"}
    assert names == {(1, "host: runtime calls"), (1000, "NC 0 (nc0, nd0)"), (1001, "NC 1 (nc1, nd0)")}
    assert {e["pid"] for e in ev} == {pid}
    slices = [(e["tid"], e["name"], e["cat"], e["ts"], e["dur"]) for e in ev if e["ph"] == "X" and e["tid"] >= 1000]
    d = round(model.duration_s * 1e9) / 1000
    assert [(tid, name, cat) for tid, name, cat, _, _ in slices] == [
        (1000, "load mlp_trn1", "load"), (1000, "mlp_trn1", "execution"), (1000, "mlp_trn1", "execution"),
        (1001, "load slow_40s", "load"), (1001, "timeout: slow_40s", "timeout"), (1001, "load gather_oob", "load"),
        (1001, "gather_oob NRT_EXEC_OOB", "error"), (1000, "unload mlp_trn1", "load"),
        (1001, "unload slow_40s", "load"), (1001, "unload gather_oob", "load")]
    ts = {name: (t, dur) for _, name, _, t, dur in slices if name != "mlp_trn1"}
    runs = [(t, dur) for _, name, _, t, dur in slices if name == "mlp_trn1"]
    load_end = ts["load mlp_trn1"][0] + ts["load mlp_trn1"][1]
    assert ts["load mlp_trn1"][1] == round(model.load_time_s * 1e9) / 1000 > 0   # loads take simulated time
    assert runs == [(load_end, d), (pytest.approx(load_end + d), d)]             # back to back after it
    assert ts["load slow_40s"][0] == pytest.approx(load_end + 2 * d)               # the host waited for both
    assert ts["timeout: slow_40s"] == (ts["load slow_40s"][0] + ts["load slow_40s"][1], 5e6)
    assert ts["gather_oob NRT_EXEC_OOB"][1] == g
    assert ts["unload mlp_trn1"][1] == 0.0
    hbm = [e for e in ev if e["ph"] == "C" and e["name"] == "HBM nd0 bank0"]
    assert hbm[0]["ts"] <= ts["load mlp_trn1"][0] and hbm[0]["args"]["bytes"] > 0     # from nrt_init on
    assert hbm[-1]["args"]["bytes"] < hbm[0]["args"]["bytes"] // 100   # at close: the tensors left unfreed
    assert max(e["args"]["bytes"] for e in hbm) > hbm[0]["args"]["bytes"]
    assert doc["otherData"]["format"] == "neuron_sim.trace/1" and doc["otherData"]["clock"] == "virtual"


def test_perfetto_async_queue_counter(tmp_path):
    os.environ["NEURON_SIM_TRACE"] = str(tmp_path / "t.json")
    os.environ["NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"] = "2"
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.2xlarge"
    try:
        assert nrt.nrt_init() == 0
        model, i, o, _ = load(0)
        for _ in range(2):
            assert nrt.nrt_execute(model, i, o) == 0
        nrt.nrt_async_drain_queued_execs(0)
        nrt.nrt_close()
    finally:
        os.environ.pop("NEURON_SIM_TRACE")
        os.environ.pop("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS")
    doc = perfetto.read_trace(str(tmp_path / "t.json"))
    depth = [e["args"]["depth"] for e in doc["traceEvents"] if e["name"] == "async queue depth NC 0"]
    assert depth[0] == 1 and max(depth) == 2 and depth[-1] == 0 and len(depth) == 4
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "execution") == 2


WORKER = """
import os, sys
from neuron_sim import nrt
nrt.nrt_init()
_, m = nrt.nrt_load(open(sys.argv[1], "rb").read(), -1, -1)
nrt.nrt_close()
"""


def test_processes_write_their_own_trace_and_merge(tmp_path, capsys):
    env = {**os.environ, "NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge", "NEURON_RT_NUM_CORES": "1",
           "NEURON_SIM_TRACE": str(tmp_path / "trace-{pid}.json")}
    pids = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(NEFFS / "mlp_trn1.neff")], env=env)
        assert proc.wait(timeout=60) == 0
        pids.append(proc.pid)
    files = sorted(str(tmp_path / f"trace-{pid}.json") for pid in pids)
    assert all(os.path.exists(f) for f in files)
    assert cli(["trace", "merge", "-o", str(tmp_path / "all.json"), *files]) == 0
    assert "from 2 process(es)" in capsys.readouterr().out
    merged = perfetto.read_trace(str(tmp_path / "all.json"))
    assert {e["pid"] for e in merged["traceEvents"]} == set(pids)
    loads = [e for e in merged["traceEvents"] if e["ph"] == "X" and e["name"] == "load mlp_trn1"]
    assert sorted(e["pid"] for e in loads) == sorted(pids)
    assert cli(["trace", "check", str(tmp_path / "all.json")]) == 0
    (tmp_path / "bad.json").write_text('{"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0}]}')
    assert cli(["trace", "check", str(tmp_path / "bad.json")]) == 2
    assert "dur >= 0" in capsys.readouterr().err


def test_merge_keeps_colliding_pids_apart():
    doc = {"traceEvents": [{"ph": "X", "name": "a", "pid": 7, "tid": 1, "ts": 1.0, "dur": 1.0}],
           "otherData": {"clock": "virtual"}}
    merged = perfetto.merge([doc, json.loads(json.dumps(doc))])
    assert len({e["pid"] for e in merged["traceEvents"]}) == 2 and perfetto.validate(merged) == []


def test_tracing_off_leaves_no_recorder(runtime):
    model, i, o, _ = load(0)
    assert trace.recorder is None
    nrt.nrt_sys_trace_start(None)
    assert trace.recorder is not None
    nrt.nrt_sys_trace_stop()
    assert trace.recorder is None


@given(st.lists(st.integers(0, 511), min_size=1, max_size=6))
def test_nc_filter_parser_reads_lists_and_ranges(cores):
    text = ",".join(str(c) for c in cores)
    assert trace.parse_nc_filter(text) == set(cores)
    first, last = min(cores), max(cores)
    assert trace.parse_nc_filter(f"{first}-{last}") == set(range(first, last + 1))


def test_unwritable_trace_file_is_an_error_line_at_close(tmp_path, capfd):
    os.environ["NEURON_SIM_TRACE"] = str(tmp_path / "no" / "such" / "dir" / "t.json")
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.2xlarge"
    try:
        assert nrt.nrt_init() == 0
        load(0)
        nrt.nrt_close()
    finally:
        os.environ.pop("NEURON_SIM_TRACE")
    err = capfd.readouterr().err
    assert "ERROR   NRT:nrt_close" in err and "Cannot write NEURON_SIM_TRACE=" in err and "Traceback" not in err
    assert trace.recorder is None


def test_explicit_async_executions_are_traced(runtime):
    """nrta_execute_schedule: one nc_exec_running pair per scheduled execution, tagged with its sequence id."""
    model, i, o, _ = load(0)
    d = duration_ns(model)
    t0 = now_ns()
    assert nrt.nrt_sys_trace_start(None) == 0
    rets = [nrt.nrta_status_t() for _ in range(2)]
    seqs = []
    for ret in rets:
        status, seq = nrt.nrta_execute_schedule(model, i, o, 0, ret)
        assert status == 0
        seqs.append(seq)
    for ret in rets:
        ret.wait()
    runs = [e for e in fetch() if e["event_type"] == "nc_exec_running"]
    assert [(e["phase"], e["data"]["job_id"], e["data"]["nc_timestamp_ns"] - t0) for e in runs] == [
        ("start", seqs[0], 0), ("stop", seqs[0], d), ("start", seqs[1], d), ("stop", seqs[1], 2 * d)]
