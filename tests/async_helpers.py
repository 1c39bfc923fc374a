"""Helpers shared by the async and simulated-time tests: a scaling NEFF, a started flat runtime, IO sets."""
from __future__ import annotations

import numpy as np

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle


def scale_neff(duration: float | None = 1e-4, name: str = "scale", factor: float = 3.0,
               output_buffer_bytes: int = 0, nan: bool = False) -> bytes:
    """A 4-float model y = x * factor (x / x with ``nan``) that runs ``duration`` simulated seconds."""
    b = NeffBuilder(name, target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", (x / x) if nan else x * factor)
    b.declare(duration_s=duration, output_buffer_bytes=output_buffer_bytes)
    return b.build()


def start(monkeypatch, depth: int = 0, instance: str = "trn1.2xlarge", **env: str):
    """nrt_init on ``instance`` with an async queue of ``depth``; the process's runtime."""
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", instance)
    monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", str(depth))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert nrt.nrt_init() == 0
    return lifecycle.peek()


def request(model, vnc: int, value: float = 1.0):
    """Input and output sets for a scale_neff model on ``vnc`` (x filled with ``value``), and x and y."""
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    x = nrt.nrt_tensor_allocate(0, vnc, 16, "x")[1]
    y = nrt.nrt_tensor_allocate(0, vnc, 16, "y")[1]
    nrt.nrt_tensor_write(x, np.full(4, value, np.float32), 0, 16)
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return ins, outs, x, y


def io(model, vnc: int, value: float = 1.0):
    """The input and output sets of request()."""
    return request(model, vnc, value)[:2]
