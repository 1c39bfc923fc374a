"""The Prometheus companion: the real neuron-monitor records in, the real exporter's metric names out."""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from neuron_sim.cli.prometheus import MonitorCollector, start_exporter  # noqa: E402

from tests.conftest import SPEC_TOOLS

WITH_RUNTIME = SPEC_TOOLS / "neuron-monitor.with-runtime.trn1.2xlarge.ndjson"


def real_records():
    if not WITH_RUNTIME.exists():
        pytest.skip(f"real samples absent: {WITH_RUNTIME}")
    records = [json.loads(line) for line in WITH_RUNTIME.read_text().splitlines() if line.strip()]
    for record in records:          # the sample's monitor predates the hardware-info fields the exporter reads
        record["neuron_hardware_info"].setdefault("neuron_device_count", 1)
    return records


def samples(registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def value(found, name, **labels):
    matches = [v for (n, ls), v in found.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_real_records_become_the_exporters_metrics():
    registry = prometheus_client.CollectorRegistry()
    collector = MonitorCollector()
    registry.register(collector)
    records = real_records()
    for record in records:
        collector.update(record)
    found = samples(registry)
    tag = records[-1]["neuron_runtime_data"][0]["neuron_runtime_tag"]
    ident = {"instance_id": "i-01db7a16f4c054239", "instance_type": "trn1.2xlarge", "region": "us-west-2",
             "availability_zone": "us-west-2d", "subnet_id": "subnet-011289cb54b7c352a"}
    assert value(found, "execution_status_total", runtime_tag=tag, status_type="completed", **ident) == 2 * 260   # two records
    total = sum(value(found, "execution_status_total", runtime_tag=t, status_type="completed")
                for t in {r["neuron_runtime_data"][0]["neuron_runtime_tag"] for r in records})
    assert total == 3 * 260                                              # counters add up every record
    assert value(found, "execution_errors_total", runtime_tag=tag, error_type="generic") == 23692 + 23749
    assert value(found, "neuroncore_utilization_ratio", runtime_tag=tag, neuroncore="0") == pytest.approx(
        1.3128372400154966 / 100)
    assert value(found, "neuroncore_memory_usage_tensors", runtime_tag=tag, neuroncore="0") == 943608
    assert value(found, "neuron_runtime_memory_used_bytes", runtime_tag=tag, memory_location="neuron_device") \
        == 102298328
    assert value(found, "execution_latency_seconds", runtime_tag=tag, percentile="p50") == pytest.approx(
        9.512901306152344e-05)
    assert value(found, "system_vcpu_count") == 8
    assert value(found, "system_memory_total_bytes") == 33117732864
    assert value(found, "system_vcpu_usage_ratio", usage_type="user") == pytest.approx(0.1673)
    assert value(found, "hardware_ecc_events_total", event_type="mem_ecc_corrected", neuron_device_index="0") == 0
    assert value(found, "instance_info", **ident) == 1
    assert value(found, "neuron_hardware_info", neuron_device_count="1", neuroncore_per_device_count="2") == 1


def test_served_over_http_on_localhost():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    collector = start_exporter(port)
    collector.update(real_records()[0])
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "neuroncore_utilization_ratio{" in text and "execution_status_total{" in text
