"""neuron-monitor against real runtime processes: schema of the real samples, tags, pids, counts, memory, death."""
from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from neuron_sim.cli.monitor import ConfigError, load_config, parse_config, parse_period
from neuron_sim.cli.monitor_report import percentiles

TESTS = Path(__file__).resolve().parent
SPEC_TOOLS = Path("/work/shared/spec/tools")
if not SPEC_TOOLS.exists():
    SPEC_TOOLS = TESTS.parent.parent / "shared" / "spec" / "tools"
WITH_RUNTIME = SPEC_TOOLS / "neuron-monitor.with-runtime.trn1.2xlarge.ndjson"
NO_RUNTIME = SPEC_TOOLS / "neuron-monitor.no-runtime.trn1.2xlarge.ndjson"
CONFIG = {
    "period": "1s",
    "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
        {"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "neuron_runtime_vcpu_usage"},
        {"type": "execution_stats"}]}],
    "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "neuron_hw_counters"}],
}


def key_tree(value, path=""):
    """Every key path of a JSON value; list items and the per-core / per-cpu maps collapse to one shape."""
    keys = set()
    if isinstance(value, dict):
        for k, v in value.items():
            k = "<n>" if re.fullmatch(r"\d+", k) else k
            keys.add(f"{path}/{k}")
            keys |= key_tree(v, f"{path}/{k}")
    elif isinstance(value, list):
        for item in value:
            keys |= key_tree(item, f"{path}[]")
    return keys


class Lines:
    """Read whole lines from a child's stdout with a deadline (never hangs the suite)."""

    def __init__(self, proc):
        self.proc = proc
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)

    def next(self, timeout=15.0):
        while b"\n" not in self.buffer:
            if not self.selector.select(timeout):
                raise AssertionError(f"no line from pid {self.proc.pid} in {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise AssertionError(f"pid {self.proc.pid} closed its stdout")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def completed_by_tag(records):
    totals = {}
    for record in records:
        for entry in record["neuron_runtime_data"]:
            done = entry["report"]["execution_stats"]["execution_summary"]["completed"]
            totals[entry["neuron_runtime_tag"]] = totals.get(entry["neuron_runtime_tag"], 0) + done
    return totals


def spawn(argv, env):
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


@pytest.fixture
def machine_env():
    env = dict(os.environ, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_NUM_CORES="1")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_two_tagged_runtimes_then_one_killed(tmp_path, machine_env):
    if not WITH_RUNTIME.exists():
        pytest.skip(f"real samples absent: {WITH_RUNTIME}")
    real = json.loads(WITH_RUNTIME.read_text().splitlines()[0])
    real_idle = json.loads(NO_RUNTIME.read_text().splitlines()[0])
    config = tmp_path / "monitor.json"
    config.write_text(json.dumps(CONFIG))
    counts = {"alpha": 7, "beta": 3}
    workers, reports = {}, {}
    try:
        for tag, n in counts.items():
            workers[tag] = spawn([sys.executable, str(TESTS / "tools_worker.py"), str(n)],
                                 dict(machine_env, NEURON_PROCESS_TAG=tag))
            reports[tag] = Lines(workers[tag]).next()
        monitor = spawn([sys.executable, "-m", "neuron_sim.cli.monitor", "-c", str(config)], machine_env)
        lines = Lines(monitor)
        records = [lines.next()]
        while len(records) < 10 and completed_by_tag(records) != counts:   # publishers catch up within 1 s
            records.append(lines.next())
        records.append(lines.next())
        workers["beta"].kill()
        workers["beta"].wait(10)
        after = [lines.next()]
        while len(after) < 6 and len(after[-1]["neuron_runtime_data"]) != 1:
            after.append(lines.next())
    finally:
        for proc in list(workers.values()) + ([monitor] if "monitor" in locals() else []):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    for record in records + after:
        assert list(record) == list(real)                                  # same sections, same order
        assert key_tree(record["system_data"]) == key_tree(real["system_data"])
        assert list(record["instance_info"]) == list(real["instance_info"])
        assert list(record["neuron_hardware_info"]) == list(real_idle["neuron_hardware_info"])
        for group in list(record["system_data"].values()):
            assert isinstance(group["period"], float) and group["error"] == ""
        for entry in record["neuron_runtime_data"]:
            assert list(entry) == list(real["neuron_runtime_data"][0])
            assert list(entry["report"]) == list(real["neuron_runtime_data"][0]["report"])
            for group in entry["report"].values():
                assert isinstance(group["period"], float) and group["error"] == ""
            real_keys, ours = key_tree(real["neuron_runtime_data"][0]), key_tree(entry)
            assert ours <= real_keys                                       # nothing the real one lacks
            stats, memory = entry["report"]["execution_stats"], entry["report"]["memory_used"]
            for missing in real_keys - ours:                               # only what a quiet period omits
                assert (("/latency_stats/" in missing and stats["latency_stats"]["total_latency"] is None)
                        or ("/loaded_models[]/" in missing and memory["loaded_models"] == [])), missing
    assert records[0]["neuron_hardware_info"]["neuron_device_type"] == "trainium"

    by_tag = {}
    for record in records:
        for entry in record["neuron_runtime_data"]:
            by_tag.setdefault(entry["neuron_runtime_tag"], []).append(entry)
    assert set(by_tag) == {"alpha", "beta"}
    for tag, entries in by_tag.items():
        assert {e["pid"] for e in entries} == {workers[tag].pid}
        completed = sum(e["report"]["execution_stats"]["execution_summary"]["completed"] for e in entries)
        assert completed == counts[tag]
        memory = entries[-1]["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]
        published = {core: sum(cats.values()) for core, cats in memory["neuroncore_memory_usage"].items()}
        assert published == reports[tag]["cores"]                        # nrt_get_vnc_memory_stats figures
        models = entries[-1]["report"]["memory_used"]["loaded_models"]
        assert [m["name"] for m in models] == ["mlp_trn1"]
        assert re.fullmatch(r"[0-9a-f]{32}", models[0]["uuid"])
    assert len(records) >= 2 and completed_by_tag(records) == counts
    assert {e["neuron_runtime_tag"] for e in after[-1]["neuron_runtime_data"]} == {"alpha"}
    assert all({e["neuron_runtime_tag"] for e in r["neuron_runtime_data"]} >= {"alpha"} for r in after)


@pytest.mark.parametrize("text,seconds", [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), (" 1.5s ", 1.5)])
def test_periods(text, seconds):
    assert parse_period(text, "period") == seconds


@pytest.mark.parametrize("document,fragment", [
    ({"period": "fast"}, 'period: expected a duration such as "1s"'),
    ({"period": "1ms"}, "at least 10ms"),
    ({"neuron_runtimes": [{"tag_filter": "(", "metrics": []}]}, "neuron_runtimes[0].tag_filter: invalid"),
    ({"neuron_runtimes": [{"metrics": [{"type": "gpu"}]}]}, "neuron_runtimes[0].metrics[0].type: expected one of"),
    ({"system_metrics": [{"type": "vcpu_usage", "period": 5}]}, "system_metrics[0].period"),
    ({"periods": "1s"}, "unknown field(s) periods"),
    ([], "must be a JSON object"),
])
def test_bad_configurations_name_the_field(document, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    assert fragment in str(info.value)


def test_tag_filters_pick_the_first_matching_group():
    config = parse_config({"neuron_runtimes": [
        {"tag_filter": "train.*", "metrics": [{"type": "execution_stats"}]},
        {"tag_filter": ".*", "metrics": [{"type": "memory_used"}]}]})
    assert config.metrics_for("trainer") == ("execution_stats",)
    assert config.metrics_for("serve") == ("memory_used",)
    assert config.metrics_for("xtrain") == ("memory_used",)                # a full match, not a search
    assert parse_config({"neuron_runtimes": []}).metrics_for("x") is None


def test_unreadable_config_exits_1_with_a_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{period")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config(str(bad))
    proc = subprocess.run([sys.executable, "-m", "neuron_sim.cli.monitor", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "neuron-monitor: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_percentiles_nearest_rank():
    assert percentiles([]) is None
    p = percentiles([float(i) for i in range(1, 101)])
    assert list(p) == ["p0", "p1", "p100", "p25", "p50", "p75", "p99"]
    assert (p["p0"], p["p1"], p["p25"], p["p50"], p["p99"], p["p100"]) == (1.0, 1.0, 25.0, 50.0, 99.0, 100.0)


FAULTY_WORKER = """
import json, os, sys
import numpy as np
from neuron_sim import nrt
assert nrt.nrt_init() == 0
model = nrt.nrt_load(open(sys.argv[1], "rb").read(), 0, -1)[1]
first = nrt.nrt_tensor_allocate(0, 0, 256, "x")[0]                 # the plan fails the first allocation
x, y = nrt.nrt_tensor_allocate(0, 0, 256, "x")[1], nrt.nrt_tensor_allocate(0, 0, 40, "y")[1]
nrt.nrt_tensor_write(x, np.ones((1, 64), np.float32), 0, 256)
_, ins = nrt.nrt_allocate_tensor_set(); _, outs = nrt.nrt_allocate_tensor_set()
nrt.nrt_add_tensor_to_tensor_set(ins, "x", x); nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
statuses = [first] + [nrt.nrt_execute(model, ins, outs) for _ in range(6)]
os.write(1, (json.dumps(statuses) + "\\n").encode())
while os.read(0, 4096):
    pass
"""
FAULT_PLAN = [{"call": "tensor_allocate", "nth": 1}, {"call": "execute", "status": "NRT_EXEC_HW_ERR_HBM_UE", "nth": 2},
              {"call": "execute", "status": "NRT_TIMEOUT", "nth": 4},
              {"call": "execute", "status": "NRT_EXEC_COMPLETED_WITH_NUM_ERR", "nth": 5}]


def test_injected_faults_in_the_error_and_execution_summaries(tmp_path, machine_env):
    """A real process with a fault plan: neuron-monitor counts each failed call once, in the right category."""
    config = tmp_path / "monitor.json"
    config.write_text(json.dumps(CONFIG))
    env = dict(machine_env, NEURON_SIM_FAULTS=json.dumps(FAULT_PLAN), NEURON_PROCESS_TAG="faulty")
    worker = spawn([sys.executable, "-c", FAULTY_WORKER, str(TESTS.parent / "neffs" / "mlp_trn1.neff")], env)
    monitor = None
    try:
        statuses = Lines(worker).next()
        assert statuses == [4, 0, 1201, 0, 5, 1003, 0]   # RESOURCE; HBM UE, TIMEOUT, NUM_ERR on executes 2, 4, 5
        monitor = spawn([sys.executable, "-m", "neuron_sim.cli.monitor", "-c", str(config)], machine_env)
        lines = Lines(monitor)
        summary, errors = {}, {}
        for _ in range(10):
            for entry in lines.next()["neuron_runtime_data"]:
                assert entry["neuron_runtime_tag"] == "faulty" and entry["pid"] == worker.pid
                stats = entry["report"]["execution_stats"]
                for name, n in stats["execution_summary"].items():
                    summary[name] = summary.get(name, 0) + n
                for name, n in stats["error_summary"].items():
                    errors[name] = errors.get(name, 0) + n
            if summary.get("completed") == 3:
                break
    finally:
        for proc in (worker, monitor):
            if proc is not None:
                proc.kill()
                proc.wait(10)
    assert summary == {"completed": 3, "completed_with_err": 1, "completed_with_num_err": 1, "timed_out": 1,
                       "incorrect_input": 0, "failed_to_queue": 0}
    assert errors == {"generic": 0, "numerical": 1, "transient": 1, "model": 0, "runtime": 1, "hardware": 1}
