"""Hot-path cost of publishing runtime state, measured side by side in one run (figures, no asserts).

Rounds interleave the set-ups so a busy machine disturbs them alike; the best and the median round of each
are reported (each round is 5000 calls, long enough to span several publisher writes).

    python benchmarks/bench_publish.py

nrt_execute of the trn1 MLP sample, µs per call, best of several rounds, in three set-ups of one runtime:
1. publishing stopped (the publisher closed: only the latency sample is appended, as before this feature);
2. publishing, no monitor attached (the publisher writes once a second);
3. publishing four times a second, as while a monitor holds monitor.lock (held here by the benchmark itself);
4. the same with a real neuron-monitor process attached (period 1 s): on a machine with few cores this adds
   the monitor's own CPU use to the measurement, which is not a cost of the execute path.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))
os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")

import neuron_sim  # noqa: E402
from neuron_sim.runtime import lifecycle, publish  # noqa: E402
from neuron_sim.runtime.reservation import default_state_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def per_call(fn, number: int = 5000) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def main(rounds: int = 10) -> None:
    """Each round measures the three set-ups one after the other; the best round of each is kept."""
    rounds_of: dict[str, list[float]] = {name: [] for name in SETUPS}
    with neuron_sim.Runtime() as rt:
        model = rt.load(str(REPO / "neffs" / "mlp_trn1.neff"))
        x = np.ones((1, 64), np.float32)
        call = lambda: model(x=x)                                   # noqa: E731
        runtime = lifecycle.current("bench")
        state_dir = default_state_dir(runtime.machine)
        config = Path(tempfile.mkdtemp(prefix="neuron_sim_bench_")) / "monitor.json"
        config.write_text(json.dumps({"period": "1s", "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
            {"type": t} for t in ("execution_stats", "memory_used", "neuroncore_counters")]}]}))
        probe = os.open(state_dir / publish.MONITOR_LOCK_NAME, os.O_RDONLY)
        for _ in range(rounds):
            runtime.publisher.close()                               # 1. stopped
            runtime.publisher = None
            rounds_of[SETUPS[0]].append(per_call(call))
            runtime.publisher = publish.attach(runtime)             # 2. publishing, nobody watching
            rounds_of[SETUPS[1]].append(per_call(call))
            attachment = publish.MonitorAttachment(state_dir)       # 3. publishing 4/s, nothing else running
            time.sleep(publish.SLOW_INTERVAL_S + 0.1)
            rounds_of[SETUPS[2]].append(per_call(call))
            attachment.close()
            monitor = subprocess.Popen(
                [sys.executable, "-m", "neuron_sim.cli.monitor", "-c", str(config)], stdout=subprocess.DEVNULL)
            # 4. a real neuron-monitor process, 1 s period
            while not publish._monitor_attached(probe):
                time.sleep(0.01)
            time.sleep(publish.SLOW_INTERVAL_S + 0.1)               # the publisher notices the monitor
            rounds_of[SETUPS[3]].append(per_call(call))
            monitor.terminate()
            monitor.wait()
        snapshot_s = per_call(lambda: publish.snapshot(runtime, {}, {"count": 0, "recent": []}), 200)
        samples = runtime.latency_samples
        hook_s = per_call(lambda: samples.append((2.0 - 1.0, 1.0)), 100000)
    best = {name: min(v) for name, v in rounds_of.items()}
    median = {name: statistics.median(v) for name, v in rounds_of.items()}
    base = best[SETUPS[0]]
    print(f"{'set-up':38} {'best µs/call':>12} {'vs stopped':>11} {'median µs/call':>15} {'vs stopped':>11}")
    for name in SETUPS:
        print(f"{name:38} {best[name] * 1e6:12.1f} {best[name] / base:10.3f}x {median[name] * 1e6:15.1f} "
              f"{median[name] / median[SETUPS[0]]:10.3f}x")
    print(f"the execute-path hook alone (one latency sample appended): {hook_s * 1e9:.0f} ns "
          f"= {100 * hook_s / base:.2f}% of a call")
    print(f"one snapshot of the record (publisher thread, not the execute path): {snapshot_s * 1e6:.1f} µs")


SETUPS = ("publishing stopped", "publishing, no monitor", "publishing 4/s (monitor lock held)",
          "real neuron-monitor attached")


if __name__ == "__main__":
    sys.exit(main())
