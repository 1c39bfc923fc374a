"""Sync versus async (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS = 1, 3, 8) per-request time under the real clock.

    python benchmarks/bench_async.py [requests] [--rounds R]

The model's simulated device time (2 ms) is comparable to the host-side work per request (about 2 ms of
preparing the next input), the situation where async execution pays: the device works on request n
while the host prepares request n+1. The host work is a *fixed* amount of numpy work (a number of
iterations calibrated once, before any round), not a wall-time budget, so a busy runtime thread cannot shrink
it; the ideal speed-up is therefore at most 2.0. Each configuration runs in a fresh process (the variable is
read at nrt_init); the configurations are interleaved over R rounds (order rotated each round) and each
reports the median over rounds of its per-request time.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

DEVICE_S = 0.002
HOST_S = 0.002


def host_work(buf: np.ndarray, value: float, iterations: int) -> None:
    """Host-side preparation of the next input: a fixed number of numpy iterations (holds the CPU)."""
    for _ in range(iterations):
        np.multiply(buf, 0.5, out=buf)
    buf.fill(value)


def calibrate(seconds: float = HOST_S) -> int:
    """Iterations of host_work's loop that take about ``seconds`` here (the median of a few probes)."""
    buf = np.ones(256, np.float32)
    probes = []
    for _ in range(7):
        t0 = time.perf_counter()
        host_work(buf, 1.0, 1000)
        probes.append((time.perf_counter() - t0) / 1000)
    probes.sort()
    return max(1, round(seconds / probes[len(probes) // 2]))


def worker(requests: int, iterations: int) -> dict:
    from neuron_sim import nrt
    from neuron_sim.neff.builder import NeffBuilder
    b = NeffBuilder("pipelined", target="v2")
    x = b.input("x", "float32", (256,))
    b.output("y", x * 2.0)
    b.declare(duration_s=DEVICE_S)
    assert nrt.nrt_init() == 0
    depth = int(os.environ.get("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "0"))
    slots = max(1, depth) + 1
    free = threading.Semaphore(max(1, depth))
    done = []

    def callback(params, model_id, vnc, job_id, status):
        done.append(status)
        free.release()

    nrt.nrt_register_async_exec_callback(callback, None)
    _, model = nrt.nrt_load(b.build(), 0, -1)
    sets = []
    for _ in range(slots):
        _, ins = nrt.nrt_allocate_tensor_set()
        _, outs = nrt.nrt_allocate_tensor_set()
        nrt.nrt_add_tensor_to_tensor_set(ins, "x", nrt.nrt_tensor_allocate(0, 0, 1024, "x")[1])
        nrt.nrt_add_tensor_to_tensor_set(outs, "y", nrt.nrt_tensor_allocate(0, 0, 1024, "y")[1])
        sets.append((ins, outs))
    buf = np.ones(256, np.float32)
    t0 = time.perf_counter()
    for i in range(requests):
        host_work(buf, float(i), iterations)
        ins, outs = sets[i % slots]
        if depth:
            free.acquire()
        nrt.nrt_tensor_write(ins["x"], buf, 0, buf.nbytes)
        status = nrt.nrt_execute(model, ins, outs)
        assert status == 0, status
    if depth:
        nrt.nrt_async_drain_queued_execs(0)
    wall = time.perf_counter() - t0
    nrt.nrt_close()
    assert not depth or len(done) == requests
    return {"requests": requests, "wall_s": wall, "per_s": requests / wall}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]))))
        return 0
    args = [a for a in sys.argv[1:] if not a.startswith("--rounds")]
    rounds = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--rounds=")), 5)
    requests = int(args[0]) if args else 200
    iterations = calibrate()
    state = tempfile.mkdtemp(prefix="neuron_sim_bench_async_")
    depths = [0, 1, 3, 8]
    per_request: dict[int, list[float]] = {d: [] for d in depths}
    for r in range(rounds):
        for depth in depths[r % len(depths):] + depths[:r % len(depths)]:      # rotate the order each round
            env = dict(os.environ, NEURON_SIM_CLOCK="real", NEURON_SIM_STATE_DIR=state,
                       NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge",
                       NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=str(depth))
            out = subprocess.run([sys.executable, __file__, "--worker", str(requests), str(iterations)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            per_request[depth].append(result["wall_s"] / requests)
    medians = {d: statistics.median(v) for d, v in per_request.items()}
    print(f"device time {DEVICE_S * 1e3:.1f} ms/request (simulated, real clock), host work {iterations} numpy "
          f"iterations/request (about {HOST_S * 1e3:.1f} ms), {requests} requests, median of {rounds} "
          f"interleaved rounds")
    for depth, med in medians.items():
        label = "sync" if depth == 0 else f"async inflight {depth}"
        spread = max(per_request[depth]) - min(per_request[depth])
        print(f"  {label:18s} {med * 1e3:6.3f} ms/request (spread {spread * 1e3:5.3f})  "
              f"x{medians[0] / med:4.2f} vs sync (ideal <= 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
