"""Sync versus async (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS = 1, 3, 8) throughput under the real clock.

    python benchmarks/bench_async.py [requests]

The model's simulated device time (2 ms) is comparable to the host-side work per request (2 ms of
preparing the next input), the situation where async execution pays: the device works on request n
while the host prepares request n+1. Each configuration runs in a fresh process (the variable is read
at nrt_init), all in one run, so the ratios are measured side by side.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

DEVICE_S = 0.002
HOST_S = 0.002


def host_work(buf: np.ndarray, value: float) -> None:
    """Busy host-side preparation of the next input for HOST_S seconds (numpy work, holds the CPU)."""
    end = time.perf_counter() + HOST_S
    while time.perf_counter() < end:
        np.multiply(buf, 0.5, out=buf)
    buf.fill(value)


def worker(requests: int) -> dict:
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
        host_work(buf, float(i))
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
        print(json.dumps(worker(int(sys.argv[2]))))
        return 0
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    state = tempfile.mkdtemp(prefix="neuron_sim_bench_async_")
    results = {}
    for depth in (0, 1, 3, 8):
        env = dict(os.environ, NEURON_SIM_CLOCK="real", NEURON_SIM_STATE_DIR=state,
                   NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=str(depth))
        out = subprocess.run([sys.executable, __file__, "--worker", str(requests)], env=env, check=True,
                             capture_output=True, text=True).stdout
        results[depth] = json.loads(out.strip().splitlines()[-1])
    base = results[0]["per_s"]
    print(f"device time {DEVICE_S * 1e3:.1f} ms/request (simulated, real clock), host work {HOST_S * 1e3:.1f} "
          f"ms/request, {requests} requests")
    for depth, r in results.items():
        label = "sync" if depth == 0 else f"async inflight {depth}"
        print(f"  {label:18s} {r['per_s']:8.1f} req/s  ({r['wall_s'] * 1e3 / requests:5.2f} ms/request)  "
              f"x{r['per_s'] / base:4.2f} vs sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
