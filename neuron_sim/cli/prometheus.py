"""``neuron-monitor --prometheus PORT``: neuron-monitor's records as Prometheus metrics on 127.0.0.1:PORT.

The metric and label names are those of the Neuron SDK's exporter companion (neuron-monitor-prometheus.py):
``neuroncore_utilization_ratio``, ``neuron_runtime_vcpu_usage_ratio``, ``neuron_runtime_memory_used_bytes``,
``neuroncore_memory_usage_<category>``, ``execution_errors_total``, ``execution_status_total``,
``execution_latency_seconds``, ``hardware_ecc_events_total``, ``system_vcpu_count``,
``system_vcpu_usage_ratio``, ``system_memory_{total,used}_bytes``, ``system_swap_{total,used}_bytes``, the
``instance_info`` and ``neuron_hardware_info`` infos; labels instance_name, instance_id, instance_type,
availability_zone, region, subnet_id, plus runtime_tag for a runtime's metrics. Gauges show the latest record
(a runtime that ended disappears); counters add up every record's per-period counts.
Needs the ``prometheus`` extra (prometheus-client, the reference client library).
"""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Iterator

from neuron_sim.cli.monitor_report import CORE_CATEGORIES

INSTANCE_LABELS = ("instance_name", "instance_id", "instance_type", "availability_zone", "region", "subnet_id")
ECC_EVENTS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")
_CPU_AGGREGATES = {"user": ("user", "nice"), "system": ("system", "io_wait", "irq", "soft_irq")}


def instance_labels(info: dict[str, Any]) -> dict[str, str]:
    """The exporter's instance labels from a record's ``instance_info``."""
    return {"instance_name": info["instance_name"], "instance_id": info["instance_id"],
            "instance_type": info["instance_type"], "availability_zone": info["instance_availability_zone"],
            "region": info["instance_region"], "subnet_id": info["subnet_id"]}


class MonitorCollector:
    """A prometheus_client collector fed with neuron-monitor records through ``update``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None
        self._totals: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)

    def update(self, record: dict[str, Any]) -> None:
        """Take the next record: gauges now show it, counters add its per-period counts."""
        base = tuple(instance_labels(record["instance_info"]).values())
        with self._lock:
            for runtime in record["neuron_runtime_data"]:
                stats = runtime["report"].get("execution_stats")
                if runtime["error"] or not stats or stats["error"]:
                    continue
                labels = base + (runtime["neuron_runtime_tag"],)
                for kind, count in stats["error_summary"].items():
                    self._totals[("execution_errors_total", labels + (kind,))] += count
                for kind, count in stats["execution_summary"].items():
                    self._totals[("execution_status_total", labels + (kind,))] += count
            hw = record["system_data"].get("neuron_hw_counters")
            if hw and not hw["error"]:
                for device in hw["neuron_devices"]:
                    for event in ECC_EVENTS:
                        key = base + (event, str(device["neuron_device_index"]))
                        self._totals[("hardware_ecc_events_total", key)] += device[event]
            self._latest = record

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
        with self._lock:
            record, totals = self._latest, dict(self._totals)
        if record is None:
            return
        inst = instance_labels(record["instance_info"])
        names = list(INSTANCE_LABELS)
        rt_names = names + ["runtime_tag"]
        gauges: dict[str, GaugeMetricFamily] = {}

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            if name not in gauges:
                gauges[name] = GaugeMetricFamily(name, doc, labels=labels)
            return gauges[name]

        base = list(inst.values())
        for runtime in record["neuron_runtime_data"]:
            if runtime["error"]:
                continue
            labels = base + [runtime["neuron_runtime_tag"]]
            report = runtime["report"]
            group = report.get("neuroncore_counters")
            if group and not group["error"]:
                g = gauge("neuroncore_utilization_ratio", "NeuronCore utilization ratio", rt_names + ["neuroncore"])
                for core, data in group["neuroncores_in_use"].items():
                    g.add_metric(labels + [core], data["neuroncore_utilization"] / 100.0)
            group = report.get("neuron_runtime_vcpu_usage")
            if group and not group["error"]:
                g = gauge("neuron_runtime_vcpu_usage_ratio", "Runtime vCPU utilization ratio",
                          rt_names + ["usage_type"])
                for kind in ("user", "system"):
                    g.add_metric(labels + [kind], group["vcpu_usage"][kind] / 100.0)
            group = report.get("memory_used")
            if group and not group["error"]:
                used = group["neuron_runtime_used_bytes"]
                g = gauge("neuron_runtime_memory_used_bytes", "Runtime memory used bytes",
                          rt_names + ["memory_location"])
                for location in ("host", "neuron_device"):
                    g.add_metric(labels + [location], used[location])
                for category in CORE_CATEGORIES:
                    g = gauge(f"neuroncore_memory_usage_{category}", f"NeuronCore memory utilization for {category}",
                              rt_names + ["neuroncore"])
                    for core, data in used["usage_breakdown"]["neuroncore_memory_usage"].items():
                        g.add_metric(labels + [core], data[category])
            group = report.get("execution_stats")
            if group and not group["error"] and group["latency_stats"]["total_latency"] is not None:
                g = gauge("execution_latency_seconds", "Execution latency in seconds", rt_names + ["percentile"])
                for percentile, value in group["latency_stats"]["total_latency"].items():
                    g.add_metric(labels + [percentile], value)
        system = record["system_data"]
        group = system.get("vcpu_usage")
        if group and not group["error"]:
            gauge("system_vcpu_count", "System vCPU count", names).add_metric(base, len(group["usage_data"]))
            g = gauge("system_vcpu_usage_ratio", "System CPU utilization ratio", names + ["usage_type"])
            for kind, parts in _CPU_AGGREGATES.items():
                g.add_metric(base + [kind], min(100.0, sum(group["average_usage"][p] for p in parts)) / 100.0)
        group = system.get("memory_info")
        if group and not group["error"]:
            for source, target in (("memory", "system_memory"), ("swap", "system_swap")):
                for stat in ("total_bytes", "used_bytes"):
                    gauge(f"{target}_{stat}", f"System {source} {stat} bytes", names).add_metric(
                        base, group[f"{source}_{stat}"])
        yield from gauges.values()
        counters = {
            "execution_errors_total": ("Execution errors total", rt_names + ["error_type"]),
            "execution_status_total": ("Execution status total", rt_names + ["status_type"]),
            "hardware_ecc_events_total": ("Hardware ecc events total", names + ["event_type", "neuron_device_index"]),
        }
        for name, (doc, labels) in counters.items():
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            for (metric, values), total in sorted(totals.items()):
                if metric == name:
                    family.add_metric(list(values), total)
            yield family
        yield InfoMetricFamily("instance", "EC2 instance information", value=inst)
        hw = record["neuron_hardware_info"]
        yield InfoMetricFamily("neuron_hardware", "Neuron Hardware Information", value={
            "neuron_device_count": str(hw["neuron_device_count"]),
            "neuroncore_per_device_count": str(hw["neuroncore_per_device_count"]), **inst})


def start_exporter(port: int) -> MonitorCollector:
    """Serve the collector's metrics over HTTP on 127.0.0.1:``port``; returns the collector to feed."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = CollectorRegistry()
    collector = MonitorCollector()
    registry.register(collector)
    start_http_server(port, addr="127.0.0.1", registry=registry)
    return collector
