"""Cost of tracing on nrt_execute, measured side by side in one run (no timed asserts; figures for the notes).

    python benchmarks/bench_trace.py [--baseline CHECKOUT]

µs per nrt_execute of a tiny NEFF: tracing off, a system trace running (nrt_sys_trace_start), the Perfetto
timeline on (NEURON_SIM_TRACE); with ``--baseline`` also tracing off in another checkout of neuron_sim (e.g.
the code before the trace hooks), run in a child process with that checkout first on sys.path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, os, sys, tempfile, time
import numpy as np
os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))
os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.2xlarge"
mode = sys.argv[1]
if mode == "timeline":
    os.environ["NEURON_SIM_TRACE"] = os.path.join(tempfile.mkdtemp(), "t.json")
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
nrt.nrt_init()
b = NeffBuilder("tiny", target="v2")
x = b.input("x", "float32", (1, 16))
b.output("y", b.relu(x * 2.0))
_, model = nrt.nrt_load(b.build(), 0, -1)
_, ins = nrt.nrt_allocate_tensor_set(); _, outs = nrt.nrt_allocate_tensor_set()
nrt.nrt_add_tensor_to_tensor_set(ins, "x", nrt.nrt_tensor_allocate(0, 0, 64, "x")[1])
nrt.nrt_add_tensor_to_tensor_set(outs, "y", nrt.nrt_tensor_allocate(0, 0, 64, "y")[1])
if mode == "systrace":
    nrt.nrt_sys_trace_start(None)
execute = nrt.nrt_execute
rounds = []
for _ in range(7):
    t0 = time.perf_counter()
    for _ in range(10000):
        execute(model, ins, outs)
    rounds.append((time.perf_counter() - t0) / 10000)
    if mode == "systrace":
        nrt.nrt_sys_trace_fetch_events(None)
print(json.dumps(min(rounds) * 1e6))
nrt.nrt_close()
"""


def measure(mode: str, tree: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_RT_", "NEURON_SIM_"))}
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run([sys.executable, "-c", MEASURE, mode], env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    if out.returncode:
        raise SystemExit(f"measuring {mode} in {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main(argv: list[str]) -> None:
    baseline = Path(argv[argv.index("--baseline") + 1]) if "--baseline" in argv else None
    figures = {}
    for _ in range(2):                           # interleaved, best of two: the machine is shared
        for label, mode, tree in ([("baseline, no hooks", "off", baseline)] if baseline else []) + [
                ("tracing off", "off", ROOT), ("system trace on", "systrace", ROOT), ("Perfetto timeline on", "timeline", ROOT)]:
            us = measure(mode, tree)
            figures[label] = min(us, figures.get(label, us))
    ref = figures.get("baseline, no hooks", figures["tracing off"])
    for label, us in figures.items():
        print(f"nrt_execute, {label:<22} {us:7.2f} µs/call  ({us / ref:.3f}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
