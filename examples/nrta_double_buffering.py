"""Double buffering with the explicit async API (nrta_*): write batch n+1 while batch n computes.

    python examples/nrta_double_buffering.py [batches]

The model multiplies a batch of 256 x 2048 float32 activations (2 MiB in) by a 2048 x 1024 weight matrix
(1 MiB out) on a trn1 NeuronCore. Each batch is a host -> device write (TENSOR_OP queue 0), an execution
(COMPUTE) and a device -> host read (TENSOR_OP queue 1), with durations from neuron_sim's cost model.

- synchronous loop: write, wait, execute, wait, read, wait — one step at a time;
- double-buffered loop: two input and two output tensors; while batch n executes, batch n+1 is written
  and batch n-1 is read, each on its own execution unit. The host waits only where the data demands it.

Both loops check every output against numpy and the script prints their simulated times (virtual clock)
and the speed-up. ``benchmarks/bench_nrta.py`` runs the same loops under the real clock.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder

ROWS, K, N = 256, 2048, 1024


def build_model(device_bound_s: float | None = None) -> tuple[bytes, Callable[[np.ndarray], np.ndarray]]:
    """The NEFF and its numpy reference. ``device_bound_s``: a cheap model (first N columns times 2) declaring
    that many seconds of device time instead of the matmul (for runs under the real clock)."""
    b = NeffBuilder("double_buffer", target="v2")
    x = b.input("x", "float32", (ROWS, K))
    if device_bound_s is not None:
        b.output("y", b.slice(x, [0, 0], [ROWS, N]) * 2.0)
        b.declare(duration_s=device_bound_s)
        return b.build(), lambda a: a[:, :N] * 2.0
    w = (np.random.default_rng(0).standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    b.output("y", x @ b.weight("w", w))
    return b.build(), lambda a: a @ w


def batches(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((ROWS, K)).astype(np.float32) for _ in range(count)]


class Pipeline:
    """A loaded model with two input and two output tensors (and their tensor sets) on NeuronCore 0."""

    def __init__(self, neff: bytes) -> None:
        status, self.model = nrt.nrt_load(neff, 0, 1)
        assert status == nrt.NRT_SUCCESS, status
        self.x, self.y, self.sets = [], [], []
        for i in range(2):
            x = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, ROWS * K * 4, f"x{i}")[1]
            y = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, ROWS * N * 4, f"y{i}")[1]
            ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
            nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
            nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
            self.x.append(x), self.y.append(y), self.sets.append((ins, outs))

    def write(self, slot: int, data: np.ndarray) -> nrt.nrta_status_t:
        ret = nrt.nrta_status_t()
        status, _ = nrt.nrta_tensor_write(self.x[slot], data, 0, data.nbytes, 0, ret)
        assert status == nrt.NRT_SUCCESS, status
        return ret

    def execute(self, slot: int) -> nrt.nrta_status_t:
        ret = nrt.nrta_status_t()
        status, _ = nrt.nrta_execute_schedule(self.model, *self.sets[slot], 0, ret)
        assert status == nrt.NRT_SUCCESS, status
        return ret

    def read(self, slot: int, out: np.ndarray) -> nrt.nrta_status_t:
        ret = nrt.nrta_status_t()
        status, _ = nrt.nrta_tensor_read(out, self.y[slot], 0, out.nbytes, 1, ret)
        assert status == nrt.NRT_SUCCESS, status
        return ret


def done(ret: nrt.nrta_status_t) -> nrt.nrta_status_t:
    """Wait for an operation (the host's simulated time moves to its end) and insist it succeeded."""
    assert ret.wait() == nrt.NRT_SUCCESS, ret
    return ret


def synchronous(p: Pipeline, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    """One step at a time; returns the (start, end) simulated times of the loop."""
    first = last = None
    for data, out in zip(inputs, outputs):
        w = done(p.write(0, data))
        done(p.execute(0))
        last = done(p.read(0, out))
        first = first or w
    return first.start, last.end


def double_buffered(p: Pipeline, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    """Write n+1 and read n-1 while n executes; the host waits only for the data each step needs."""
    n_batches = len(inputs)
    writes = [p.write(0, inputs[0])]
    executes, reads = [], []
    for n in range(n_batches):
        done(writes[n])                                  # input n is on the device
        if n >= 1:
            done(executes[n - 1])                        # x[(n+1)%2] is free, y[(n-1)%2] holds batch n-1
            reads.append(p.read((n - 1) % 2, outputs[n - 1]))
        if n + 1 < n_batches:
            writes.append(p.write((n + 1) % 2, inputs[n + 1]))
        if n >= 2:
            done(reads[n - 2])                           # y[n%2] was read out: it may be overwritten
        executes.append(p.execute(n % 2))
    done(executes[-1])
    reads.append(p.read((n_batches - 1) % 2, outputs[-1]))
    for r in reads:
        done(r)
    return writes[0].start, reads[-1].end


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 8
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        neff, reference = build_model()
        p = Pipeline(neff)
        inputs = batches(count)
        expected = [reference(x) for x in inputs]
        results = {}
        for name, loop in (("synchronous", synchronous), ("double-buffered", double_buffered)):
            outputs = [np.zeros((ROWS, N), np.float32) for _ in inputs]
            start, end = loop(p, inputs, outputs)
            for got, want in zip(outputs, expected):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
            results[name] = end - start
            print(f"{name:>16} loop: {count} batches in {results[name] * 1e3:.3f} ms simulated "
                  f"({results[name] / count * 1e6:.1f} us per batch), outputs equal numpy")
        print(f"simulated speed-up of double buffering: {results['synchronous'] / results['double-buffered']:.2f}x")
    finally:
        nrt.nrt_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
