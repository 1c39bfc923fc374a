"""Async execution (NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS): the pipelining gain, and the
out-of-memory failure of a queue that is too deep.

    python examples/async_pipelining.py

Part 1 runs the same loop (2 ms of host work + a model with 2 ms of device time) synchronously and with
3 requests in flight, under NEURON_SIM_CLOCK=real. Part 2 queues requests of a model whose output
buffers take 6 GiB of device memory each: 3 in flight fit in a 32 GiB trn1 device, 8 do not.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = tempfile.mkdtemp(prefix="neuron_sim_example_")
atexit.register(shutil.rmtree, STATE, True)     # leave no state directory behind

PIPELINE = """
import threading, time, numpy as np
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
b = NeffBuilder("step", target="v2")
x = b.input("x", "float32", (1024,))
b.output("y", x * 2.0)
b.declare(duration_s=0.002)                       # 2 ms of simulated device time per request
nrt.nrt_init()
depth = int(__import__("os").environ["NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"])
slots = threading.Semaphore(max(depth, 1))
nrt.nrt_register_async_exec_callback(lambda p, m, v, j, s: slots.release(), None)
_, model = nrt.nrt_load(b.build(), 0, -1)
sets = []
for _ in range(depth + 1):
    _, i = nrt.nrt_allocate_tensor_set(); _, o = nrt.nrt_allocate_tensor_set()
    nrt.nrt_add_tensor_to_tensor_set(i, "x", nrt.nrt_tensor_allocate(0, 0, 4096, "x")[1])
    nrt.nrt_add_tensor_to_tensor_set(o, "y", nrt.nrt_tensor_allocate(0, 0, 4096, "y")[1])
    sets.append((i, o))
t0 = time.perf_counter()
for n in range(200):
    end = time.perf_counter() + 0.002             # 2 ms of host-side work preparing the request
    while time.perf_counter() < end:
        pass
    i, o = sets[n % len(sets)]
    if depth:
        slots.acquire()
    assert nrt.nrt_execute(model, i, o) == 0
if depth:
    nrt.nrt_async_drain_queued_execs(0)
print(f"{(time.perf_counter() - t0) / 200 * 1e3:.2f}")
nrt.nrt_close()
"""


def run(code, **env):
    env = dict(os.environ, NEURON_SIM_STATE_DIR=STATE, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", **env)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


sync_ms = float(run(PIPELINE, NEURON_SIM_CLOCK="real", NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS="0").stdout)
async_ms = float(run(PIPELINE, NEURON_SIM_CLOCK="real", NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS="3").stdout)
print("Part 1: 2 ms host work + 2 ms device time per request")
print(f"  synchronous:        {sync_ms:.2f} ms/request")
print(f"  3 requests in flight: {async_ms:.2f} ms/request  ({sync_ms / async_ms:.2f}x the throughput)")

DEEP = """
from neuron_sim import nrt
nrt.nrt_init()
_, model = nrt.nrt_load(open(r"%s", "rb").read(), 0, -1)
statuses = []                # submitted at simulated time 0: no request has ended, every one is in flight
for _ in range(int(__import__("os").environ["NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"])):
    _, i = nrt.nrt_allocate_tensor_set(); _, o = nrt.nrt_allocate_tensor_set()
    nrt.nrt_add_tensor_to_tensor_set(i, "x", nrt.nrt_tensor_allocate(0, 0, 64, "x")[1])
    nrt.nrt_add_tensor_to_tensor_set(o, "y", nrt.nrt_tensor_allocate(0, 0, 32, "y")[1])
    statuses.append(nrt.nrt_get_status_as_str(nrt.nrt_execute(model, i, o)))
print(" ".join(statuses))
nrt.nrt_close()
""" % os.path.join(HERE, "..", "neffs", "large_outputs.neff")

print("\nPart 2: neffs/large_outputs.neff reserves 6 GiB of device output buffers per in-flight request")
for depth in ("3", "8"):
    r = run(DEEP, NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS=depth)
    print(f"  inflight {depth}: {r.stdout.strip()}")
    oom = [ln for ln in r.stderr.splitlines() if "log_dev_mem " in ln or "Failed to reserve" in ln]
    for ln in oom[:2]:
        print("    " + ln.split(None, 3)[-1][:150])
