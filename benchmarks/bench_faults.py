"""What fault injection costs nrt_execute, measured side by side in one run (figures, not asserts).

    python benchmarks/bench_faults.py

nrt_execute of a tiny NEFF (µs per call) with: no plan (the hook is one attribute test); a plan for another
call only (load); a plan on execute that never trips (nth far away: counted under a lock every call).
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))
os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")

from neuron_sim import nrt  # noqa: E402
from neuron_sim.neff.builder import NeffBuilder  # noqa: E402
from neuron_sim.runtime import faults  # noqa: E402
from neuron_sim.testing.machine import FaultPlan  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from bench_execute import best_of  # noqa: E402


def main() -> None:
    b = NeffBuilder("tiny", target="v2")
    x = b.input("x", "float32", (1, 16))
    b.output("y", x * 2.0)
    assert nrt.nrt_init() == 0
    _, model = nrt.nrt_load(b.build(), 0, -1)
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    for s, n in ((ins, "x"), (outs, "y")):
        nrt.nrt_add_tensor_to_tensor_set(s, n, nrt.nrt_tensor_allocate(0, 0, 64, n)[1])
    plan = FaultPlan(faults.machine_state_dir())
    run = lambda: nrt.nrt_execute(model, ins, outs)  # noqa: E731
    configs = (("no plan", lambda: None),
               ("plan for load only", lambda: plan.add("load", "NRT_FAILURE", nth=10**9)),
               ("execute plan, never trips", lambda: plan.add("execute", "NRT_TIMEOUT", nth=10**9)))
    best = {label: float("inf") for label, _ in configs}
    for _ in range(15):                      # configurations interleaved, so machine load hits them alike
        for label, setup in configs:
            plan.clear()
            setup()
            best[label] = min(best[label], best_of(run, 1, 2000))
    rows = list(best.items())
    base = rows[0][1]
    for label, t in rows:
        print(f"{label:28s} {t * 1e6:7.2f} µs/execute   x{t / base:.3f}")
    nrt.nrt_close()


if __name__ == "__main__":
    main()
