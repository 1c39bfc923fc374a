"""neuron-monitor's records, computed from the runtimes' published state (neuron_sim.runtime.publish).

A ``Sampler`` remembers the previous read of each runtime, so every record reports what happened over its
period, as the real monitor does: execution counts and latencies of the executions finished in the period,
NeuronCore utilisation as simulated busy time over wall time (capped at 100), the runtime's CPU use in percent
of one vCPU. A runtime seen for the first time reports everything since its nrt_init, so the counts of all
records of one runtime add up to what it did. Memory is the current figure, by the monitor's categories.

Decisions where the spec is silent:
- device memory categories map as: model code → model_code, constants → constants, shared and private
  scratchpad → model_shared_scratchpad, runtime microcode and DMA rings → runtime_memory, tensors and async
  output reservations → tensors, so the categories of a core add up to ``nrt_get_vnc_memory_stats``'s use;
- ``error_summary``: completed_with_num_err → numerical, timed_out and failed_to_queue → transient,
  incorrect_input → model, completed_with_err → generic; calls the fault plan failed with a hardware status
  (HBM/NC UE, DMA abort, unrecoverable unit, a device off the bus) → hardware, its failed loads, tensor
  allocations and other non-execute calls → runtime; a failed execution counts in one category only;
- host memory: the process's resident set as application_memory (host tensors are not accounted);
- a latency group with no execution in the period is ``null``; percentiles are nearest-rank.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from neuron_sim.cli import system_metrics
from neuron_sim.hardware.model import Machine

RUNTIME_GROUPS = ("execution_stats", "memory_used", "neuron_runtime_vcpu_usage", "neuroncore_counters")
SYSTEM_GROUPS = ("memory_info", "neuron_hw_counters", "vcpu_usage")
COUNTERS = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input",
            "failed_to_queue")
PERCENTILES = (("p0", 0), ("p1", 1), ("p100", 100), ("p25", 25), ("p50", 50), ("p75", 75), ("p99", 99))
CORE_CATEGORIES = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
_CATEGORY = {"constants": "constants", "model_code": "model_code", "shared_scratchpad": "model_shared_scratchpad",
             "scratchpad": "model_shared_scratchpad", "runtime": "runtime_memory", "dma_rings": "runtime_memory",
             "tensors": "tensors", "async_reservations": "tensors"}
_HARDWARE = {"INF1": ("inferentia", "v1", "v1"), "INF2": ("inferentia2", "v3", "v2"),
             "TRN1": ("trainium", "v2", "v2"), "TRN1N": ("trainium", "v2", "v2"), "TRN2": ("trainium2", "v4", "v3")}


@dataclass(frozen=True)
class RuntimeGroupSpec:
    """One ``neuron_runtimes`` entry: runtimes whose tag fully matches ``tag_filter`` report ``metrics``."""

    tag_filter: re.Pattern
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class MonitorConfig:
    """A parsed neuron-monitor configuration (periods in seconds)."""

    period_s: float = 5.0
    neuron_runtimes: tuple[RuntimeGroupSpec, ...] = (RuntimeGroupSpec(re.compile(".*"), RUNTIME_GROUPS),)
    system_metrics: tuple[tuple[str, float | None], ...] = tuple((g, None) for g in SYSTEM_GROUPS)

    def metrics_for(self, tag: str) -> tuple[str, ...] | None:
        """The groups reported for a runtime with this tag (the first matching entry), None when none matches."""
        for spec in self.neuron_runtimes:
            if spec.tag_filter.fullmatch(tag):
                return spec.metrics
        return None


def percentiles(samples: list[float]) -> dict[str, float] | None:
    """Nearest-rank percentiles in the real key order, or None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {key: ordered[min(last, max(0, -(-p * len(ordered) // 100) - 1))] for key, p in PERCENTILES}


def core_memory(raw: dict[str, int]) -> dict[str, int]:
    """A core's device bytes by the monitor's categories (unknown categories count as runtime_memory)."""
    out = dict.fromkeys(CORE_CATEGORIES, 0)
    for category, nbytes in raw.items():
        out[_CATEGORY.get(category, "runtime_memory")] += int(nbytes)
    return out


def hardware_info(machine: Machine) -> dict[str, Any]:
    """The ``neuron_hardware_info`` section for the simulated machine."""
    device_type, device_version, core_version = _HARDWARE.get(machine.family, ("unknown", "", ""))
    if machine.family == "TRN2" and machine.lnc == 2:
        core_version = "v3d"
    return {
        "neuron_device_type": device_type, "neuron_device_version": device_version,
        "neuroncore_version": core_version, "neuron_device_count": len(machine.devices),
        "neuron_device_memory_size": machine.devices[0].memory_bytes if machine.devices else 0,
        "neuroncore_per_device_count": machine.cores_per_device, "logical_neuroncore_config": machine.lnc,
        "error": "",
    }


def instance_info(machine: Machine) -> dict[str, Any]:
    """The ``instance_info`` section: the simulated instance has an id and a type, no region or network."""
    return {
        "instance_name": "", "instance_id": machine.instance_id, "instance_type": machine.instance_type,
        "instance_availability_zone": "", "instance_availability_zone_id": "", "instance_region": "",
        "ami_id": "", "subnet_id": "", "error": "",
    }


def _group(period: float, body: dict[str, Any]) -> dict[str, Any]:
    return {"period": round(period, 9), **body, "error": ""}


HARDWARE_STATUSES = frozenset({"NRT_EXEC_HW_ERR_HBM_UE", "NRT_EXEC_HW_ERR_NC_UE", "NRT_EXEC_HW_ERR_DMA_ABORT",
                               "NRT_EXEC_UNIT_UNRECOVERABLE", "NRT_HW_ERROR"})


def _injected(record: dict, prev: dict | None) -> dict[tuple[str, str], int]:
    """Calls the fault plan failed in the period, by (call, status)."""
    def totals(r: dict | None) -> dict[tuple[str, str], int]:
        return {(e["call"], e["status"]): int(e["count"]) for e in (r or {}).get("injected_faults", [])}
    before = totals(prev)
    return {k: n - before.get(k, 0) for k, n in totals(record).items() if n > before.get(k, 0)}


def _execution_stats(record: dict, prev: dict | None, period: float) -> dict[str, Any]:
    counts = dict.fromkeys(COUNTERS, 0)
    before = {c["core"]: c["counters"] for c in prev["cores"]} if prev else {}
    for core in record["cores"]:
        old = before.get(core["core"], {})
        for name in COUNTERS:
            counts[name] += int(core["counters"].get(name, 0)) - int(old.get(name, 0))
    latency = record.get("latency", {})
    fresh = int(latency.get("count", 0)) - (int(prev.get("latency", {}).get("count", 0)) if prev else 0)
    recent = latency.get("recent", [])[-fresh:] if fresh > 0 else []
    hardware = execute_hardware = runtime = 0
    for (call, status), n in _injected(record, prev).items():
        if status in HARDWARE_STATUSES:
            hardware += n
            execute_hardware += n if call == "execute" else 0
        elif call != "execute":         # injected execute timeouts and numerical errors are in the counters
            runtime += n
    return _group(period, {
        "error_summary": {
            "generic": counts["completed_with_err"] - execute_hardware, "numerical": counts["completed_with_num_err"],
            "transient": counts["timed_out"] + counts["failed_to_queue"], "model": counts["incorrect_input"],
            "runtime": runtime, "hardware": hardware,
        },
        "execution_summary": counts,
        "latency_stats": {
            "total_latency": percentiles([s[0] for s in recent]),
            "device_latency": percentiles([s[1] for s in recent]),
        },
    })


def _model_entry(model: dict, devices: dict[int, int]) -> dict[str, Any]:
    subgraphs = {}
    for i, core in enumerate(model["cores"]):
        mem = core_memory(model.get("memory", {}).get(str(core), {}))
        device = {k: mem[k] for k in ("constants", "model_code", "runtime_memory", "tensors")}
        total = sum(device.values())
        subgraphs[f"sg_{i:02d}"] = {
            "memory_used_bytes": {
                "host": 0, "neuron_device": total,
                "usage_breakdown": {
                    "host": {"application_memory": 0, "constants": 0, "dma_buffers": 0, "tensors": 0},
                    "neuron_device": device,
                },
            },
            "neuroncore_index": core, "neuron_device_index": devices.get(core, 0),
        }
    return {"name": model["name"], "uuid": model["uuid"], "model_id": model["id"],
            "is_running": bool(model.get("running")), "subgraphs": subgraphs}


def _memory_used(record: dict, period: float) -> dict[str, Any]:
    per_core = {str(c["core"]): core_memory(c.get("memory", {})) for c in record["cores"]}
    host = {"application_memory": int(record.get("host_memory", 0)), "constants": 0, "dma_buffers": 0,
            "tensors": 0}
    devices = {c["core"]: c["device"] for c in record["cores"]}
    return _group(period, {
        "neuron_runtime_used_bytes": {
            "host": sum(host.values()),
            "neuron_device": sum(sum(m.values()) for m in per_core.values()),
            "usage_breakdown": {"host": host, "neuroncore_memory_usage": per_core},
        },
        "loaded_models": [_model_entry(m, devices) for m in record["models"]],
    })


def _elapsed(record: dict, prev: dict | None) -> float:
    since = prev["published_at"] if prev else record.get("started_at", record["published_at"])
    return max(0.0, float(record["published_at"]) - float(since))


def _vcpu(record: dict, prev: dict | None, period: float) -> dict[str, Any]:
    wall = _elapsed(record, prev)
    before = prev["cpu_s"] if prev else {"user": 0.0, "system": 0.0}
    usage = {k: round(100.0 * (record["cpu_s"][k] - before[k]) / wall, 2) if wall > 0 else 0.0
             for k in ("user", "system")}
    return _group(period, {"vcpu_usage": usage})


def core_utilisation(record: dict, prev: dict | None) -> dict[int, float]:
    """Percent of wall time each core of the runtime was busy (simulated) between two records."""
    wall = _elapsed(record, prev)
    before = {c["core"]: c["busy_s"] for c in prev["cores"]} if prev else {}
    out = {}
    for core in record["cores"]:
        busy = float(core["busy_s"]) - float(before.get(core["core"], 0.0))
        out[core["core"]] = min(100.0, 100.0 * busy / wall) if wall > 0 else 0.0
    return out


def _neuroncore_counters(record: dict, prev: dict | None, period: float, lnc: int) -> dict[str, Any]:
    in_use = {}
    physical = {c["core"]: c.get("physical", []) for c in record["cores"]}
    for core, value in core_utilisation(record, prev).items():
        entry: dict[str, Any] = {"neuroncore_utilization": value}
        if lnc > 1:
            entry["v3d"] = {f"nc_v3.{p}": {"neuroncore_utilization": value} for p in physical[core]}
        in_use[str(core)] = entry
    return _group(period, {"neuroncores_in_use": in_use})


@dataclass
class Sampler:
    """Turns successive reads of the published records into neuron-monitor records."""

    machine: Machine
    config: MonitorConfig = field(default_factory=MonitorConfig)
    previous: dict[str, dict] = field(default_factory=dict)
    last_time: float = field(default_factory=time.monotonic)
    cpu_before: Any = None
    system_due: dict[str, float] = field(default_factory=dict)

    def runtime_entry(self, record: dict, metrics: tuple[str, ...], period: float) -> dict[str, Any]:
        """One ``neuron_runtime_data`` item, with the groups asked for, in the real key order."""
        prev = self.previous.get(record["key"])
        report: dict[str, Any] = {}
        for name in sorted(metrics):
            if name == "execution_stats":
                report[name] = _execution_stats(record, prev, period)
            elif name == "memory_used":
                report[name] = _memory_used(record, period)
            elif name == "neuron_runtime_vcpu_usage":
                report[name] = _vcpu(record, prev, period)
            elif name == "neuroncore_counters":
                report[name] = _neuroncore_counters(record, prev, period, int(record.get("lnc", 1)))
        return {"pid": record["pid"], "neuron_runtime_tag": record["tag"], "error": "", "report": report}

    def _system(self, now: float, period: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, own_period in sorted(self.config.system_metrics):
            due = self.system_due.get(name, now)
            if now < due:
                continue
            self.system_due[name] = now + (own_period or self.config.period_s) - 0.05
            if name == "memory_info":
                out[name] = _group(period, system_metrics.memory_info())
            elif name == "neuron_hw_counters":
                out[name] = _group(period, {"neuron_devices": [
                    {"neuron_device_index": d.index, "mem_ecc_corrected": 0, "mem_ecc_uncorrected": 0,
                     "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0} for d in self.machine.devices]})
            elif name == "vcpu_usage":
                times = system_metrics.read_cpu_times()
                out[name] = _group(period, system_metrics.vcpu_usage(times, self.cpu_before))
                self.cpu_before = times
        return out

    def sample(self, records: list[dict], now: float | None = None) -> dict[str, Any]:
        """The next record; ``records`` are the live runtimes (publish.read_runtimes)."""
        now = time.monotonic() if now is None else now
        period = max(0.0, now - self.last_time)
        self.last_time = now
        entries = []
        for record in records:
            metrics = self.config.metrics_for(record["tag"])
            if metrics is not None:
                entries.append(self.runtime_entry(record, metrics, period))
        self.previous = {r["key"]: r for r in records}
        return {
            "neuron_runtime_data": entries,
            "system_data": self._system(now, period),
            "instance_info": instance_info(self.machine),
            "neuron_hardware_info": hardware_info(self.machine),
        }
