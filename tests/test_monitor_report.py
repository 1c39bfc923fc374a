"""The Sampler's per-period arithmetic on synthetic published records, and the config parser under fuzzing."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from neuron_sim.cli.monitor import ConfigError, parse_config
from neuron_sim.cli.monitor_report import MonitorConfig, Sampler, core_memory, hardware_info
from neuron_sim.hardware.catalog import build_machine

COUNTERS = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input",
            "failed_to_queue")


def record(published_at, busy, completed, latencies, count, cpu=(0.0, 0.0), memory=None, tag="t"):
    return {
        "key": "rt-1-0123456789ab", "pid": 1, "tag": tag, "lnc": 1, "started_at": 100.0,
        "published_at": published_at, "cpu_s": {"user": cpu[0], "system": cpu[1]}, "host_memory": 4096,
        "cores": [{"core": 0, "device": 0, "physical": [0], "busy_s": busy,
                   "counters": dict(dict.fromkeys(COUNTERS, 0), completed=completed, timed_out=1),
                   "memory": memory or {"runtime": 100, "dma_rings": 10, "tensors": 5, "async_reservations": 1,
                                        "shared_scratchpad": 7, "model_code": 3, "constants": 2}}],
        "models": [{"id": 1001, "name": "m", "uuid": "ab" * 16, "cores": [0], "running": True,
                    "memory": {"0": {"model_code": 3, "constants": 2, "dma_rings": 10}}}],
        "latency": {"count": count, "recent": [[t, t / 2] for t in latencies]},
    }


def test_periods_report_what_happened_in_them():
    sampler = Sampler(build_machine("trn1.2xlarge"), MonitorConfig(period_s=1.0), last_time=0.0)
    first = sampler.sample([record(101.0, 0.25, 10, [1.0, 2.0, 3.0], 3, cpu=(0.5, 0.1))], now=0.5)
    entry = first["neuron_runtime_data"][0]["report"]
    assert entry["execution_stats"]["execution_summary"]["completed"] == 10      # everything since nrt_init
    assert entry["execution_stats"]["error_summary"]["transient"] == 1            # timed_out
    assert entry["execution_stats"]["latency_stats"]["total_latency"]["p100"] == 3.0
    assert entry["execution_stats"]["period"] == 0.5
    assert entry["neuroncore_counters"]["neuroncores_in_use"]["0"]["neuroncore_utilization"] == 25.0
    assert entry["neuron_runtime_vcpu_usage"]["vcpu_usage"] == {"user": 50.0, "system": 10.0}
    second = sampler.sample([record(103.0, 1.25, 14, [1.0, 2.0, 3.0, 9.0, 8.0], 5, cpu=(1.5, 0.1))], now=1.5)
    entry = second["neuron_runtime_data"][0]["report"]
    assert entry["execution_stats"]["execution_summary"]["completed"] == 4
    assert entry["execution_stats"]["execution_summary"]["timed_out"] == 0
    assert entry["execution_stats"]["latency_stats"]["total_latency"]["p0"] == 8.0   # only the 2 new ones
    assert entry["execution_stats"]["latency_stats"]["device_latency"]["p100"] == 4.5
    assert entry["neuroncore_counters"]["neuroncores_in_use"]["0"]["neuroncore_utilization"] == 50.0
    assert entry["neuron_runtime_vcpu_usage"]["vcpu_usage"]["user"] == 50.0
    third = sampler.sample([record(103.0, 1.25, 14, [], 5)], now=2.5)                 # not republished
    stats = third["neuron_runtime_data"][0]["report"]["execution_stats"]
    assert stats["execution_summary"]["completed"] == 0
    assert stats["latency_stats"] == {"total_latency": None, "device_latency": None}


def test_memory_categories_add_up_to_the_core_total():
    sampler = Sampler(build_machine("trn1.2xlarge"))
    used = sampler.sample([record(101.0, 0, 0, [], 0)])["neuron_runtime_data"][0]["report"]["memory_used"]
    per_core = used["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]["0"]
    assert per_core == {"constants": 2, "model_code": 3, "model_shared_scratchpad": 7, "runtime_memory": 110,
                        "tensors": 6}
    assert used["neuron_runtime_used_bytes"]["neuron_device"] == 128
    [model] = used["loaded_models"]
    assert model["is_running"] is True and model["model_id"] == 1001
    assert model["subgraphs"]["sg_00"]["memory_used_bytes"]["neuron_device"] == 15
    assert core_memory({"some_future_category": 4}) == dict(core_memory({}), runtime_memory=4)


def test_tag_filters_and_group_selection():
    config = parse_config({"neuron_runtimes": [{"tag_filter": "keep.*", "metrics": [{"type": "memory_used"}]}],
                           "system_metrics": []})
    sampler = Sampler(build_machine("trn1.2xlarge"), config)
    doc = sampler.sample([record(101.0, 0, 0, [], 0, tag="keep-1"), dict(record(101.0, 0, 0, [], 0, tag="drop"),
                                                                          key="rt-2-0123456789ab", pid=2)])
    assert [e["neuron_runtime_tag"] for e in doc["neuron_runtime_data"]] == ["keep-1"]
    assert list(doc["neuron_runtime_data"][0]["report"]) == ["memory_used"]
    assert doc["system_data"] == {}


@pytest.mark.parametrize("instance_type,lnc,expected", [
    ("trn1.2xlarge", None, ("trainium", "v2", "v2")), ("inf1.xlarge", None, ("inferentia", "v1", "v1")),
    ("inf2.xlarge", None, ("inferentia2", "v3", "v2")), ("trn2.48xlarge", None, ("trainium2", "v4", "v3d")),
    ("trn2.48xlarge", 1, ("trainium2", "v4", "v3")),
])
def test_hardware_info(instance_type, lnc, expected):
    info = hardware_info(build_machine(instance_type, lnc))
    assert (info["neuron_device_type"], info["neuron_device_version"], info["neuroncore_version"]) == expected


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=10)
FIELDS = st.sampled_from(["period", "neuron_runtimes", "system_metrics", "tag_filter", "metrics", "type"])


@settings(max_examples=150)
@given(st.dictionaries(FIELDS, JSON, max_size=3) | JSON)
def test_config_parser_accepts_or_names_the_problem(document):
    try:
        config = parse_config(document)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert config.period_s >= 0.01
        json.dumps([s.metrics for s in config.neuron_runtimes])


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["execution_stats", "memory_used", "neuroncore_counters",
                                 "neuron_runtime_vcpu_usage"]), max_size=6), st.sampled_from(["1s", "250ms", "2m"]))
def test_valid_configs_round_trip(metrics, period):
    config = parse_config({"period": period, "neuron_runtimes": [
        {"tag_filter": ".*", "metrics": [{"type": m} for m in metrics]}]})
    assert config.neuron_runtimes[0].metrics == tuple(dict.fromkeys(metrics))


def test_injected_faults_count_once_per_period_in_their_category():
    """Execute faults with a hardware status are in completed_with_err and move from generic to hardware;
    a failed load or allocation is a runtime error; a second record reports only the period's new faults."""
    sampler = Sampler(build_machine("trn1.2xlarge"), MonitorConfig(period_s=1.0), last_time=0.0)

    def faulty(published_at, with_err, injected):
        r = record(published_at, 0.0, 5, [], 0)
        r["cores"][0]["counters"]["completed_with_err"] = with_err          # 1 OOB + the hardware faults
        r["injected_faults"] = [{"call": c, "status": s, "count": n} for c, s, n in injected]
        return r

    first = sampler.sample([faulty(101.0, 3, [("execute", "NRT_EXEC_HW_ERR_NC_UE", 2),
                                              ("load", "NRT_RESOURCE", 1)])], now=0.5)
    errors = first["neuron_runtime_data"][0]["report"]["execution_stats"]["error_summary"]
    assert errors == {"generic": 1, "numerical": 0, "transient": 1, "model": 0, "runtime": 1, "hardware": 2}
    second = sampler.sample([faulty(102.0, 4, [("execute", "NRT_EXEC_HW_ERR_NC_UE", 2), ("load", "NRT_RESOURCE", 1),
                                               ("tensor_allocate", "NRT_HW_ERROR", 1)])], now=1.5)
    stats = second["neuron_runtime_data"][0]["report"]["execution_stats"]
    assert stats["error_summary"] == {"generic": 1, "numerical": 0, "transient": 0, "model": 0, "runtime": 0,
                                      "hardware": 1}
    assert stats["execution_summary"]["completed_with_err"] == 1
