"""``neuron-sim trace merge|check`` (Perfetto trace-event files) and ``neuron-sim profile show`` (profiles)."""
from __future__ import annotations

import argparse
import json

from neuron_sim.tracing import perfetto, profile


def register(subparsers: argparse._SubParsersAction) -> None:
    t = subparsers.add_parser("trace", help="Perfetto/Chrome trace files of NEURON_SIM_TRACE: merge, check")
    actions = t.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    m = actions.add_parser("merge", help="merge the traces of several runtime processes into one file")
    m.add_argument("-o", "--output", required=True, help="the merged trace to write")
    m.add_argument("inputs", nargs="+", help="trace files written by NEURON_SIM_TRACE")
    m.set_defaults(func=_merge)
    c = actions.add_parser("check", help="check a file is trace-event JSON Perfetto and chrome://tracing load")
    c.add_argument("file")
    c.set_defaults(func=_check)

    p = subparsers.add_parser("profile", help="profile files written by nrt_profile_stop")
    pa = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    s = pa.add_parser("show", help="render a profile: executions on the device timeline and a summary")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print the execution records as JSON")
    s.set_defaults(func=_show)


def _merge(args: argparse.Namespace) -> int:
    merged = perfetto.merge([perfetto.read_trace(p) for p in args.inputs])
    perfetto.write_json(args.output, merged)
    pids = {e["pid"] for e in merged["traceEvents"]}
    print(f"{args.output}: {len(merged['traceEvents'])} events from {len(pids)} process(es)")
    return 0


def _check(args: argparse.Namespace) -> int:
    doc = perfetto.read_trace(args.file)
    slices = sum(1 for e in doc["traceEvents"] if e["ph"] == "X")
    print(f"{args.file}: valid trace-event JSON, {len(doc['traceEvents'])} events, {slices} slices")
    return 0


def _show(args: argparse.Namespace) -> int:
    doc = profile.read_profile(args.file)
    print(json.dumps(doc["executions"], indent=1) if args.json else profile.render(doc))
    return 0
