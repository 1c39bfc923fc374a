"""nrtpy quickstart on neuron_sim: the nrtpy docs' first page, with one changed import.

    python examples/nrtpy_quickstart.py

Loads a compiled kernel (neffs/nki_add.neff: output_0 = a_input + b_input, float16 (4, 3)), runs it on
NeuronCore 0, benchmarks it, then shows the error you get for a faulting kernel (neffs/gather_oob.neff).
"""
from pathlib import Path

import numpy as np

from neuron_sim import nrtpy  # with AWS's package: import nrtpy
from neuron_sim.nrtpy import NrtError, NrtpyModel, NrtpyTensor

NEFFS = Path(__file__).resolve().parent.parent / "neffs"

# Optional, before first use: which NeuronCores this process may use.
nrtpy.configure(visible_cores=[0, 1])

# Load a compiled NEFF and look at what it expects.
model = NrtpyModel.load_from_neff(NEFFS / "nki_add.neff")
for name, info in model.input_tensors_info.items():
    print(f"{name}: shape={info.shape}, size={info.size}")

# Copy inputs to device memory, run the kernel, read the output back.
a = NrtpyTensor.from_numpy(np.arange(12, dtype=np.float16).reshape(4, 3), name="a_input")
b = NrtpyTensor.from_numpy(np.full((4, 3), 0.5, dtype=np.float16), name="b_input")
outputs = model(inputs={"a_input": a, "b_input": b})
result = outputs["output_0"].numpy().view(np.float16)
print("output_0 =", result.tolist())
assert np.array_equal(result, a.numpy() + b.numpy())

# Reuse an output tensor: the call writes into it and returns None.
b.write_from_numpy(np.ones((4, 3), dtype=np.float16))
model(inputs={"a_input": a, "b_input": b}, outputs=outputs)
print("after write_from_numpy:", outputs["output_0"].numpy()[0].tolist())

# Benchmark: simulated device time per execution, or host wall time.
stats = model.benchmark(inputs={"a_input": a, "b_input": b}, warmup_iter=5, benchmark_iter=20)
print(f"device: mean {stats.mean_ms:.4f} ms over {stats.iterations} executions")
stats = model.benchmark(inputs={"a_input": a, "b_input": b}, benchmark_iter=20, mode="host")
print(f"host: mean {stats.mean_ms:.4f} ms, min {stats.min_ms:.4f} ms, max {stats.max_ms:.4f} ms")

# A kernel that reads out of bounds fails the way it does on the device.
buggy = NrtpyModel.load_from_neff(NEFFS / "gather_oob.neff")
src = NrtpyTensor.from_numpy(np.ones((128, 512), dtype=np.float32), name="src_tensor")
try:
    buggy(inputs={"src_tensor": src})
except NrtError as err:
    print(f"caught: {err} (status {int(err.status)})")

# Start over on other cores.
del model, buggy, a, b, src, outputs
nrtpy.reset()
nrtpy.configure(visible_cores=[2, 3])
model = NrtpyModel.load_from_neff(NEFFS / "nki_add.neff", core_id=1)
print(f"reloaded {model.name} on core {model.core_id} of visible cores 2-3")
