"""Double buffering with the explicit async API under the real clock: synchronous loop versus pipelined loop.

    python benchmarks/bench_nrta.py [batches]

Runs the two loops of ``examples/nrta_double_buffering.py`` (2 MiB in / 1 MiB out per batch) in a fresh
process with NEURON_SIM_CLOCK=real, where every simulated duration is really waited for and the emulator's
own host work (numpy computing the model, the byte copies) takes its real time too. Two models, side by side
in one run: the example's matmul (its numpy work takes far longer than the simulated device time, so the wall
clock measures the emulator's host cost) and a device-bound model declaring 4 ms of device time per batch
(cheap to compute), where the wall clock follows the simulated schedule. Prints wall times and ratios.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


DEVICE_BOUND_S = 0.004


def worker(count: int, device_bound: bool) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    import numpy as np

    import nrta_double_buffering as ex
    from neuron_sim import nrt
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    neff, _ = ex.build_model(DEVICE_BOUND_S if device_bound else None)
    p = ex.Pipeline(neff)
    inputs = ex.batches(count)
    out = {}
    for name, loop in (("synchronous", ex.synchronous), ("double_buffered", ex.double_buffered)):
        outputs = [np.zeros((ex.ROWS, ex.N), np.float32) for _ in inputs]
        loop(p, inputs[:2], outputs[:2])                        # warm-up: threads started, pages touched
        t0 = time.perf_counter()
        start, end = loop(p, inputs, outputs)
        out[name] = {"wall_s": time.perf_counter() - t0, "simulated_s": end - start}
    nrt.nrt_close()
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), sys.argv[3] == "device")))
        return 0
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    print(f"batches: {count} (256x2048 float32 in, 256x1024 out, trn1 NeuronCore, NEURON_SIM_CLOCK=real)")
    for kind, label in (("matmul", "example matmul (host-bound)"),
                        ("device", f"device-bound ({DEVICE_BOUND_S * 1e3:g} ms declared)")):
        with tempfile.TemporaryDirectory(prefix="bench_nrta_") as state:
            env = {**os.environ, "NEURON_SIM_CLOCK": "real", "NEURON_SIM_STATE_DIR": state,
                   "NEURON_SIM_INSTANCE_TYPE": "trn1.2xlarge"}
            proc = subprocess.run([sys.executable, __file__, "--worker", str(count), kind], env=env,
                                  capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        sync, pipe = r["synchronous"], r["double_buffered"]
        print(f"{label}:")
        for name, m in (("synchronous", sync), ("double-buffered", pipe)):
            print(f"  {name:>16}: wall {m['wall_s'] * 1e3:8.2f} ms ({m['wall_s'] / count * 1e3:.3f} ms/batch), "
                  f"simulated span {m['simulated_s'] * 1e3:8.2f} ms")
        print(f"  speed-up (wall, real clock): {sync['wall_s'] / pipe['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
