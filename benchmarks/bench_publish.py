"""Hot-path cost of publishing runtime state, measured side by side in one run (figures, no asserts).

    python benchmarks/bench_publish.py

nrt_execute of the trn1 MLP sample, µs per call, best of several rounds, in three set-ups of one runtime:
1. publishing stopped (the publisher closed: only the latency sample is appended, as before this feature);
2. publishing, no monitor attached (the publisher writes once a second);
3. publishing with a monitor attached (monitor.lock held: the publisher writes ten times a second) while a
   reader thread reads the records every 100 ms, as neuron-monitor does at its fastest.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))
os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")

import neuron_sim  # noqa: E402
from neuron_sim.runtime import lifecycle, publish  # noqa: E402
from neuron_sim.runtime.reservation import default_state_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def per_call(fn, repeat: int = 7, number: int = 2000) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def main() -> None:
    with neuron_sim.Runtime() as rt:
        model = rt.load(str(REPO / "neffs" / "mlp_trn1.neff"))
        x = np.ones((1, 64), np.float32)
        call = lambda: model(x=x)                                   # noqa: E731
        runtime = lifecycle.current("bench")
        state_dir = default_state_dir(runtime.machine)
        results = {}
        publisher = runtime.publisher
        results["publishing, no monitor"] = per_call(call)
        attachment = publish.MonitorAttachment(state_dir)
        stop = threading.Event()

        def reader() -> None:
            while not stop.wait(0.1):
                publish.read_runtimes(state_dir)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        time.sleep(1.1)                                            # the publisher notices the monitor
        results["publishing, monitor attached"] = per_call(call)
        stop.set()
        thread.join()
        attachment.close()
        publisher.close()
        runtime.publisher = None
        results["publishing stopped"] = per_call(call)
        t0 = time.perf_counter()
        for _ in range(200):
            publisher_cost = publish.snapshot(runtime, {}, {"count": 0, "recent": []})
        snapshot_us = (time.perf_counter() - t0) / 200 * 1e6
    base = results["publishing stopped"]
    print(f"{'set-up':32} {'µs/call':>9} {'vs stopped':>11}")
    for name in ("publishing stopped", "publishing, no monitor", "publishing, monitor attached"):
        print(f"{name:32} {results[name] * 1e6:9.1f} {results[name] / base:10.3f}x")
    print(f"one snapshot of the record (publisher thread, not the execute path): {snapshot_us:.1f} µs "
          f"({len(publisher_cost['cores'])} cores, {len(publisher_cost['models'])} model)")


if __name__ == "__main__":
    sys.exit(main())
