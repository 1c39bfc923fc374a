"""The profile file of ``nrt_profile_start/stop``: neuron_sim's own JSON format (not the profiler's NTFF).

Format ``neuron_sim.profile/1`` (docs/tracing.md): ``format``, ``note``, ``runtime`` (pid, instance type,
clock), ``model`` (id, name, uuid, start_nc, nc_count), ``started_ns``/``stopped_ns`` (device clock),
``executions`` (one per nc_exec_running pair of the model's first core: tracking_id, lnc_idx, start_ns,
stop_ns, duration_ns, status) and ``events`` (every system-trace event of the model in the window).
"""
from __future__ import annotations

import json
import os
import statistics
from typing import Any

from neuron_sim.nrtlog import fail
from neuron_sim.tracing import read_json_file
from neuron_sim.status import NrtStatus

PROFILE_FORMAT = "neuron_sim.profile/1"
NOTE = "neuron_sim's own profile format (JSON), not the Neuron profiler's NTFF; render with: neuron-sim profile show"


def truncate(path: Any) -> None:
    """Create or empty the profile file now (nrt_profile_start); NRT_INVALID when it cannot be written."""
    _write(path, b"", "nrt_profile_start")


def _write(path: Any, data: bytes, function: str) -> None:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid profile file {path!r}: expected a file path")
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise fail(NrtStatus.INVALID, "NRT", function,
                   f"Cannot write profile file {path}: {exc.strerror or exc}") from None


def executions(events: list[dict[str, Any]], lnc: int) -> list[dict[str, Any]]:
    """nc_exec_running start/stop pairs of one core, paired by tracking id, as execution records."""
    starts: dict[int, dict[str, Any]] = {}
    out = []
    for e in events:
        if e["event_type"] != "nc_exec_running" or e["lnc_idx"] != lnc:
            continue
        if e["phase"] == "start":
            starts[e["tracking_id"]] = e
        elif e["tracking_id"] in starts:
            s = starts.pop(e["tracking_id"])
            begin, end = s["data"]["nc_timestamp_ns"], e["data"]["nc_timestamp_ns"]
            out.append({"tracking_id": e["tracking_id"], "lnc_idx": lnc, "start_ns": begin, "stop_ns": end,
                        "duration_ns": end - begin, "status": e["data"].get("status", "NRT_SUCCESS")})
    return out


def write_profile(path: str, capture: Any, rt: Any, stopped_ns: int) -> None:
    """Write the finished capture (nrt_profile_stop)."""
    doc = {
        "format": PROFILE_FORMAT, "note": NOTE,
        "runtime": {"pid": os.getpid(), "instance_type": rt.machine.instance_type, "clock": rt.clock.kind},
        "model": capture.model, "started_ns": capture.started_ns, "stopped_ns": stopped_ns,
        "executions": executions(capture.events, capture.model["start_nc"]),
        "events": capture.events,
    }
    _write(path, json.dumps(doc, indent=1).encode(), "nrt_profile_stop")


def read_profile(path: str) -> dict[str, Any]:
    """Load a profile file; ValueError naming the problem when it is not one."""
    doc = read_json_file(path, "a neuron_sim profile")
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise ValueError(f"{path} is not a neuron_sim profile (expected \"format\": \"{PROFILE_FORMAT}\")")
    return doc


def render(doc: dict[str, Any]) -> str:
    """A profile as text: the model, one line per execution with a bar on the device timeline, a summary."""
    model, runs = doc["model"], doc["executions"]
    lines = [f"profile of model {model['id']} {model['name']} on NC {model['start_nc']}"
             f"{'-' + str(model['start_nc'] + model['nc_count'] - 1) if model['nc_count'] > 1 else ''}"
             f" ({doc['runtime']['instance_type']}, {doc['runtime']['clock']} clock, pid {doc['runtime']['pid']})",
             f"window {doc['started_ns'] / 1e6:.3f} ms .. {doc['stopped_ns'] / 1e6:.3f} ms of device time",
             f"{'id':>6} {'start ms':>11} {'device ms':>10}  status"]
    span = max(1, doc["stopped_ns"] - doc["started_ns"])
    for r in runs:
        col = int(40 * (r["start_ns"] - doc["started_ns"]) / span)
        width = max(1, int(40 * r["duration_ns"] / span))
        bar = " " * col + "#" * min(width, 40 - col if col < 40 else 1)
        lines.append(f"{r['tracking_id']:>6} {r['start_ns'] / 1e6:>11.3f} {r['duration_ns'] / 1e6:>10.3f}  "
                     f"{r['status']:<30} |{bar:<40}|")
    if runs:
        d = [r["duration_ns"] / 1e6 for r in runs]
        lines.append(f"{len(runs)} execution(s): total {sum(d):.3f} ms, mean {statistics.fmean(d):.3f} ms, "
                     f"min {min(d):.3f} ms, median {statistics.median(d):.3f} ms, max {max(d):.3f} ms")
    else:
        lines.append("no executions of the model in the window")
    return "\n".join(lines)
