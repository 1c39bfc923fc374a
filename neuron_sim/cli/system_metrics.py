"""Host figures neuron-monitor reports in ``system_data``: CPU time per vCPU and memory, read from /proc."""
from __future__ import annotations

from typing import Any

CPU_FIELDS = ("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq")


def read_cpu_times() -> tuple[dict[str, list[int]], int]:
    """Cumulative jiffies per cpu (``"cpu"`` is the total) in CPU_FIELDS order, and the context switch count."""
    cpus: dict[str, list[int]] = {}
    switches = 0
    try:
        with open("/proc/stat", "rb") as f:
            for raw in f:
                parts = raw.decode("ascii", "replace").split()
                if parts and parts[0].startswith("cpu"):
                    cpus[parts[0]] = [int(x) for x in parts[1:1 + len(CPU_FIELDS)]]
                elif parts and parts[0] == "ctxt":
                    switches = int(parts[1])
    except (OSError, ValueError):
        pass
    return cpus, switches


def _percentages(now: list[int], before: list[int] | None) -> dict[str, float]:
    delta = [a - b for a, b in zip(now, before or [0] * len(now))]
    total = sum(delta) or 1
    return {name: _number(100.0 * d / total) for name, d in zip(CPU_FIELDS, delta)}


def _number(value: float) -> float | int:
    """Two decimals, whole values as integers (the real monitor prints ``17`` and ``0``, not ``17.0``)."""
    value = round(value, 2)
    return int(value) if value.is_integer() else value


def vcpu_usage(now: tuple[dict[str, list[int]], int], before: tuple[dict[str, list[int]], int] | None
               ) -> dict[str, Any]:
    """The ``vcpu_usage`` group body (without period/error) between two read_cpu_times() results."""
    cpus, switches = now
    prev_cpus, prev_switches = before if before is not None else ({}, 0)
    usage = {name[3:]: _percentages(v, prev_cpus.get(name)) for name, v in cpus.items() if name != "cpu"}
    return {
        "average_usage": _percentages(cpus.get("cpu", [0] * len(CPU_FIELDS)), prev_cpus.get("cpu")),
        "usage_data": usage,
        "context_switch_count": switches - prev_switches if before is not None else switches,
    }


def memory_info() -> dict[str, int]:
    """The ``memory_info`` group body: host memory and swap totals and use, in bytes."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/meminfo", "rb") as f:
            for raw in f:
                key, _, rest = raw.decode("ascii", "replace").partition(":")
                parts = rest.split()
                if parts:
                    fields[key] = int(parts[0]) * 1024
    except (OSError, ValueError):
        pass
    total = fields.get("MemTotal", 0)
    swap = fields.get("SwapTotal", 0)
    return {
        "memory_total_bytes": total,
        "memory_used_bytes": total - fields.get("MemAvailable", fields.get("MemFree", 0)),
        "swap_total_bytes": swap,
        "swap_used_bytes": swap - fields.get("SwapFree", 0),
    }
