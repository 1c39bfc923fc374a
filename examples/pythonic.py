"""The Pythonic face: a context manager, models called with numpy arrays, one exception type.

    python examples/pythonic.py
"""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

if "NEURON_SIM_STATE_DIR" not in os.environ:        # a private state directory, removed at exit
    os.environ["NEURON_SIM_STATE_DIR"] = tempfile.mkdtemp(prefix="neuron_sim_example_")
    atexit.register(shutil.rmtree, os.environ["NEURON_SIM_STATE_DIR"], True)
import neuron_sim  # noqa: E402
from neuron_sim.neff.builder import NeffBuilder  # noqa: E402

NEFFS = Path(__file__).parent.parent / "neffs"

with neuron_sim.Runtime({"NEURON_SIM_INSTANCE_TYPE": "inf2.xlarge"}) as rt:
    model = rt.load(NEFFS / "mlp_inf2.neff")
    print(model, "inputs:", model.inputs, "outputs:", model.outputs)
    y = model(x=np.ones((1, 64), np.float32))["y"]
    print("y[:5] =", np.round(y[0, :5], 4), f"(simulated clock now {rt.clock.now() * 1e6:.1f} µs)")

    # a model traced from Python: softmax(x @ w) in bfloat16
    b = NeffBuilder("traced", target="v2")
    x = b.input("x", "bfloat16", (2, 8))
    w = b.weight("w", np.eye(8, dtype=np.float32).astype(neuron_sim.dtypes.numpy_dtype("bfloat16")))
    b.output("p", b.softmax(x @ w))
    traced = rt.load(b.build())
    print("traced softmax rows sum to", traced(x=np.arange(16, dtype=np.float32).reshape(2, 8))["p"]
          .astype(np.float32).sum(axis=1))

    try:
        model(x=np.ones((2, 64), np.float32))
    except neuron_sim.NrtError as err:
        print("wrong input shape ->", err.status.name, "|", err.message)
    try:
        rt.load(NEFFS / "slow_40s.neff")(x=np.ones((1, 16), np.float32))
    except neuron_sim.NrtError as err:
        print("40 s model under the 30 s timeout ->", err.status.name, f"(simulated clock {rt.clock.now():.1f} s)")
