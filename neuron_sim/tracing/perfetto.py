"""Chrome/Perfetto trace-event JSON (``{"traceEvents": [...]}``) from the recorder's events, merging, checking.

One process per simulated runtime process (its pid), one thread track per NeuronCore (``tid`` 1000 + the
machine-wide core id, named ``NC <vnc> (nc<global>, nd<device>)``) holding executions, loads, unloads,
timeouts and errors as complete (``X``) slices, and a host track (``tid`` 1) with the runtime calls
(nrt_execute, tensor reads and writes). Counter (``C``) tracks: the async queue depth of each NC and this
process's HBM bytes per bank. Timestamps are simulated microseconds; ``otherData`` carries neuron_sim's
metadata (format, pid, instance type, clock, wall time of simulated zero) used by ``merge``.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.tracing import read_json_file

TRACE_FORMAT = "neuron_sim.trace/1"
HOST_TID = 1
NC_TID_BASE = 1000
PHASES = {"X", "B", "E", "i", "I", "C", "M", "b", "e", "n", "s", "t", "f"}
_NC_SLICES = {"nc_exec_running", "nrt_load", "nrt_unload"}


def trace_path(template: str, pid: int | None = None) -> str:
    """NEURON_SIM_TRACE with ``{pid}`` replaced by the process id (several processes, one template)."""
    return template.replace("{pid}", str(os.getpid() if pid is None else pid))


def _us(nc_ns: int) -> float:
    return nc_ns / 1000.0


def process_trace(rt: Any, events: Iterable[dict[str, Any]], samples: Iterable[tuple[int, int, int, int]],
                  pid: int | None = None) -> dict[str, Any]:
    """The trace-event document of one runtime process."""
    pid = os.getpid() if pid is None else pid
    tag = rt.config.process_tag or str(pid)
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": f"neuron_sim runtime {tag} (pid {pid})"}},
        {"ph": "M", "pid": pid, "tid": HOST_TID, "name": "thread_name", "args": {"name": "host: runtime calls"}},
        {"ph": "M", "pid": pid, "tid": HOST_TID, "name": "thread_sort_index", "args": {"sort_index": -1}},
    ]
    tids = {}
    for cs in rt.cores:
        core = cs.core
        tid = tids[cs.vnc] = NC_TID_BASE + core.global_id
        out.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                    "args": {"name": f"NC {cs.vnc} (nc{core.global_id}, nd{core.device})"}})
        out.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": core.global_id}})
    open_spans: dict[tuple[str, int, int], dict[str, Any]] = {}
    for e in events:
        kind, lnc, data = e["event_type"], e["lnc_idx"], e["data"]
        ts = _us(data["nc_timestamp_ns"])
        if kind == "async_exec_queue":
            out.append({"ph": "C", "pid": pid, "tid": tids.get(lnc, HOST_TID), "ts": ts,
                        "name": f"async queue depth NC {lnc}", "args": {"depth": data["queue_depth"]}})
            continue
        if kind == "numerical_err":
            out.append({"ph": "i", "s": "t", "pid": pid, "tid": tids.get(lnc, HOST_TID), "ts": ts, "cat": "error",
                        "name": f"numerical error: {data.get('model_name', '')}", "args": dict(data)})
            continue
        if e["phase"] == "start":
            open_spans[(kind, e["tracking_id"], lnc)] = e
            continue
        if e["phase"] != "stop":
            continue
        start = open_spans.pop((kind, e["tracking_id"], lnc), None)
        if start is None:
            continue
        begin = _us(start["data"]["nc_timestamp_ns"])
        status = data.get("status", "NRT_SUCCESS")
        model = data.get("model_name", "")
        if kind in _NC_SLICES:
            tid = tids.get(lnc, HOST_TID)
            if kind == "nc_exec_running":
                name = model if status == "NRT_SUCCESS" else (
                    f"timeout: {model}" if status == "NRT_TIMEOUT" else f"{model} {status}")
                cat = "execution" if status == "NRT_SUCCESS" else ("timeout" if status == "NRT_TIMEOUT" else "error")
            else:
                name, cat = f"{'load' if kind == 'nrt_load' else 'unload'} {model}", "load"
        else:
            tid, cat = HOST_TID, "runtime_call"
            name = kind if status == "NRT_SUCCESS" else f"{kind} {status}"
        args = {k: v for k, v in data.items() if k not in ("nc_timestamp_ns", "thread_id")}
        args["tracking_id"] = e["tracking_id"]
        dur = _us(data["nc_timestamp_ns"] - start["data"]["nc_timestamp_ns"])
        out.append({"ph": "X", "pid": pid, "tid": tid, "ts": begin, "dur": dur, "name": name, "cat": cat,
                    "args": args})
    for nc_ns, device, bank, used in samples:
        out.append({"ph": "C", "pid": pid, "tid": 0, "ts": _us(nc_ns), "name": f"HBM nd{device} bank{bank}",
                    "args": {"bytes": used}})
    now_ns = int(round(rt.clock.now() * 1e9))
    meta = {"format": TRACE_FORMAT, "pid": pid, "tag": tag, "instance_type": rt.machine.instance_type,
            "clock": rt.clock.kind, "wall_ns_at_zero": time.time_ns() - now_ns}
    out.sort(key=lambda r: (r["ph"] != "M", r.get("ts", 0.0)))
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": meta}


def write_process_trace(template: str, rt: Any, events: list[dict[str, Any]],
                        samples: list[tuple[int, int, int, int]]) -> str | None:
    """Write this process's trace to NEURON_SIM_TRACE (``{pid}`` expanded); a failure is an error line, never an exception."""
    path = trace_path(template)
    try:
        write_json(path, process_trace(rt, events, samples))
    except OSError as exc:
        nrtlog.error("NRT", "nrt_close", f"Cannot write NEURON_SIM_TRACE={template}: {exc.strerror or exc}")
        return None
    return path


def write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, path)


def read_trace(path: str) -> dict[str, Any]:
    """Load a trace-event file; ValueError naming the problem when it is not one."""
    doc = read_json_file(path, "a trace-event JSON file")
    problems = validate(doc)
    if problems:
        raise ValueError(f"{path} is not a trace-event JSON file: {problems[0]}")
    return doc


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One trace of several processes: pids kept distinct; real-clock traces aligned on wall time."""
    metas = [d.get("otherData") or {} for d in docs]
    real = all(m.get("clock") == "real" and isinstance(m.get("wall_ns_at_zero"), int) for m in metas)
    origin = min((m["wall_ns_at_zero"] for m in metas), default=0) if real else 0
    used: set[int] = set()
    events: list[dict[str, Any]] = []
    for n, (doc, meta) in enumerate(zip(docs, metas)):
        pids = {e.get("pid") for e in doc["traceEvents"]}
        remap = {}
        for pid in sorted(p for p in pids if isinstance(p, int)):
            new = pid
            while new in used:
                new += 1 << 22
            used.add(new)
            remap[pid] = new
        shift = (meta["wall_ns_at_zero"] - origin) / 1000.0 if real else 0.0
        for e in doc["traceEvents"]:
            e = dict(e, pid=remap.get(e.get("pid"), e.get("pid")))
            if "ts" in e and e["ph"] != "M":
                e["ts"] = e["ts"] + shift
            events.append(e)
    events.sort(key=lambda r: (r["ph"] != "M", r.get("ts", 0.0)))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"format": TRACE_FORMAT, "merged": metas, "aligned_on": "wall time" if real else "simulated zero"}}


def validate(doc: Any) -> list[str]:
    """Problems that keep a document from loading as trace-event JSON (empty when it is fine)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["expected an object with a \"traceEvents\" list"]
    problems = []
    for n, e in enumerate(doc["traceEvents"]):
        where = f"traceEvents[{n}]"
        if not isinstance(e, dict):
            problems.append(f"{where} is not an object")
            continue
        ph = e.get("ph")
        if ph not in PHASES:
            problems.append(f"{where}: unknown phase {ph!r}")
        if not isinstance(e.get("name"), str):
            problems.append(f"{where}: name must be a string")
        for key in ("pid", "tid"):
            if not isinstance(e.get(key), int) or isinstance(e.get(key), bool):
                problems.append(f"{where}: {key} must be an integer")
        if ph != "M" and not isinstance(e.get("ts"), (int, float)):
            problems.append(f"{where}: ts must be a number of microseconds")
        if ph == "X" and not (isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0):
            problems.append(f"{where}: a complete event needs dur >= 0")
        if ph == "C" and not (isinstance(e.get("args"), dict) and e["args"]
                              and all(isinstance(v, (int, float)) for v in e["args"].values())):
            problems.append(f"{where}: a counter event needs numeric args")
        if "args" in e and not isinstance(e["args"], dict):
            problems.append(f"{where}: args must be an object")
    return problems
