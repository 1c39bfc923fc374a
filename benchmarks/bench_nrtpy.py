"""Overhead of the nrtpy face over the flat face, measured side by side in one run (figures, not asserts).

    python benchmarks/bench_nrtpy.py

On neffs/nki_add.neff (fp16 (4, 3) + (4, 3)): µs per execution of
1. nrt_execute with tensor sets built once (the floor);
2. NrtpyModel.__call__ with caller-provided outputs (tensor sets built per call);
3. NrtpyModel.__call__ with auto-allocated outputs (plus one device allocation per output);
4. NrtpyModel.benchmark(mode="host") per measured iteration (sets built once per benchmark).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))

from neuron_sim import nrt, nrtpy  # noqa: E402
from neuron_sim.nrtpy import NrtpyModel, NrtpyTensor  # noqa: E402

NEFF = Path(__file__).resolve().parent.parent / "neffs" / "nki_add.neff"
N = 2000


def per_call_us(fn, n: int = N) -> float:
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    model = NrtpyModel.load_from_neff(NEFF)
    inputs = {k: NrtpyTensor.from_numpy(np.ones((4, 3), np.float16), name=k) for k in ("a_input", "b_input")}
    outputs = model(inputs=inputs)
    handle = model._handle
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    for k, t in inputs.items():
        nrt.nrt_add_tensor_to_tensor_set(ins, k, t.tensor_ref.handle)
    nrt.nrt_add_tensor_to_tensor_set(outs, "output_0", outputs["output_0"].tensor_ref.handle)

    flat = per_call_us(lambda: nrt.nrt_execute(handle, ins, outs))
    given = per_call_us(lambda: model(inputs=inputs, outputs=outputs))
    auto = per_call_us(lambda: model(inputs=inputs))
    start = time.perf_counter()
    model.benchmark(inputs=inputs, outputs=outputs, warmup_iter=50, benchmark_iter=N, mode="host")
    bench = (time.perf_counter() - start) / (N + 50) * 1e6
    print(f"nrt_execute (sets built once)        {flat:8.1f} µs/exec")
    print(f"nrtpy model(..., outputs=given)      {given:8.1f} µs/exec  ({given / flat:.2f}x)")
    print(f"nrtpy model(...) auto outputs        {auto:8.1f} µs/exec  ({auto / flat:.2f}x)")
    print(f"nrtpy benchmark(mode='host') loop    {bench:8.1f} µs/exec  ({bench / flat:.2f}x)")
    nrtpy.reset()


if __name__ == "__main__":
    main()
