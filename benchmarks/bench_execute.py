"""Runtime overheads, measured side by side in one run (no timed asserts; figures for the notes).

    python benchmarks/bench_execute.py

1. nrt_execute on a tiny NEFF against the same numpy ops called directly (µs per call, ratio);
2. a large matmul NEFF against plain numpy (ratio);
3. nrt_load with and without NEURON_RT_VALIDATE_HASH against reading + unpacking the file (ratios);
4. a bf16-casting NEFF with round-to-nearest-even (the default path) and with stochastic rounding, side by side.
"""
from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_bench_"))
os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")

from neuron_sim import nrt  # noqa: E402
from neuron_sim.neff.builder import NeffBuilder  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def best_of(fn, repeat: int, number: int) -> float:
    """Seconds per call: the best of ``repeat`` rounds of ``number`` calls (least disturbed by the machine)."""
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number)
    return min(rounds)


def io_for(model, shapes: dict[str, tuple], outputs: dict[str, tuple], arrays: dict[str, np.ndarray]):
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    for name, arr in arrays.items():
        _, t = nrt.nrt_tensor_allocate(0, 0, arr.nbytes, name)
        nrt.nrt_tensor_write(t, arr, 0, arr.nbytes)
        nrt.nrt_add_tensor_to_tensor_set(ins, name, t)
    for name, (dtype, shape) in outputs.items():
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        _, t = nrt.nrt_tensor_allocate(0, 0, nbytes, name)
        nrt.nrt_add_tensor_to_tensor_set(outs, name, t)
    return ins, outs


def tiny() -> tuple[float, float]:
    rng = np.random.default_rng(0)
    w, b0 = rng.standard_normal((16, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    b = NeffBuilder("tiny", target="v2")
    x = b.input("x", "float32", (1, 16))
    b.output("y", b.relu(x @ b.weight("w", w) + b.weight("b", b0)))
    _, model = nrt.nrt_load(b.build(), 0, -1)
    xv = rng.standard_normal((1, 16)).astype(np.float32)
    ins, outs = io_for(model, {}, {"y": (np.float32, (1, 16))}, {"x": xv})
    assert nrt.nrt_execute(model, ins, outs) == 0
    sim = best_of(lambda: nrt.nrt_execute(model, ins, outs), 5, 20000)
    out = np.empty((1, 16), np.float32)
    direct = best_of(lambda: np.maximum(np.add(xv @ w, b0, out=out), 0, out=out), 5, 20000)
    return sim, direct


def large_matmul() -> tuple[float, float]:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    w = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = NeffBuilder("big_matmul", target="v2")
    x = b.input("x", "float32", (1024, 1024))
    b.output("y", x @ b.weight("w", w))
    _, model = nrt.nrt_load(b.build(), 1, -1)
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    tx, ty = nrt.nrt_tensor_allocate(0, 1, a.nbytes, "x")[1], nrt.nrt_tensor_allocate(0, 1, a.nbytes, "y")[1]
    nrt.nrt_tensor_write(tx, a, 0, a.nbytes)
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", tx)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", ty)
    assert nrt.nrt_execute(model, ins, outs) == 0
    sim = best_of(lambda: nrt.nrt_execute(model, ins, outs), 5, 10)
    out = np.empty_like(a)
    direct = best_of(lambda: np.matmul(a, w, out=out), 5, 10)
    return sim, direct


def rounding_modes() -> tuple[float, float]:
    """nrt_execute of y = cast(x * 1, bf16) on 64 Ki elements: RNE (no generator) vs stochastic rounding."""
    from neuron_sim.compute import rounding
    b = NeffBuilder("cast_bf16", target="v2")
    b.output("y", b.cast(b.input("x", "float32", (65536,)) * 1.0, "bfloat16"))
    _, model = nrt.nrt_load(b.build(), 0, -1)
    xv = np.random.default_rng(2).standard_normal(65536).astype(np.float32)
    ins, outs = io_for(model, {}, {"y": (np.uint16, (65536,))}, {"x": xv})
    saved = rounding.generator
    rounding.install(None)
    rne = best_of(lambda: nrt.nrt_execute(model, ins, outs), 5, 200)
    rounding.install(np.random.Generator(np.random.PCG64(0)))
    sr = best_of(lambda: nrt.nrt_execute(model, ins, outs), 5, 200)
    rounding.install(saved)
    return rne, sr


def unpack_only(data: bytes) -> None:
    payload = data[1024:]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(payload))) as tar:
        for member in tar.getmembers():
            if member.isfile():
                tar.extractfile(member).read()


def load_times(path: Path) -> tuple[float, float, float]:
    def load_once() -> None:
        status, model = nrt.nrt_load(path.read_bytes(), 0, -1)
        assert status == 0, status
        nrt.nrt_unload(model)

    plain = best_of(load_once, 5, 40)
    nrt.nrt_close()
    os.environ["NEURON_RT_VALIDATE_HASH"] = "TRUE"
    assert nrt.nrt_init() == 0
    hashed = best_of(load_once, 5, 40)
    del os.environ["NEURON_RT_VALIDATE_HASH"]
    unpack = best_of(lambda: unpack_only(path.read_bytes()), 5, 40)
    return plain, hashed, unpack


def main() -> int:
    assert nrt.nrt_init() == 0, "nrt_init failed"
    sim, direct = tiny()
    print(f"tiny NEFF (x[1,16] @ w[16,16] + b, relu): nrt_execute {sim * 1e6:7.2f} µs/call, numpy {direct * 1e6:6.2f} "
          f"µs/call, overhead {(sim - direct) * 1e6:6.2f} µs, ratio {sim / direct:5.2f}x")
    sim, direct = large_matmul()
    print(f"matmul NEFF [1024x1024] @ [1024x1024] fp32: nrt_execute {sim * 1e3:7.2f} ms, numpy {direct * 1e3:7.2f} ms, "
          f"ratio {sim / direct:5.3f}x")
    rne, sr = rounding_modes()
    print(f"bf16 cast NEFF [65536]: round-to-nearest-even {rne * 1e6:7.1f} µs/call, stochastic rounding "
          f"{sr * 1e6:7.1f} µs/call (x{sr / rne:4.2f})")
    sample = REPO / "neffs" / "mlp_trn1.neff"
    if sample.exists():
        plain, hashed, unpack = load_times(sample)
        print(f"nrt_load {sample.name} ({sample.stat().st_size} B): {plain * 1e3:6.3f} ms, with "
              f"NEURON_RT_VALIDATE_HASH {hashed * 1e3:6.3f} ms (x{hashed / plain:4.2f}); read+unpack only "
              f"{unpack * 1e3:6.3f} ms (load/unpack x{plain / unpack:4.2f}, hashed load/unpack x{hashed / unpack:4.2f})")
    real = REPO.parent / "shared" / "realneffs" / "matmul_large.neff"
    nrt.nrt_close()
    if real.exists():
        os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn2.48xlarge"
        assert nrt.nrt_init() == 0
        plain, hashed, unpack = load_times(real)
        print(f"nrt_load {real.name} ({real.stat().st_size} B, compiler-made): {plain * 1e3:6.2f} ms, with hash "
              f"{hashed * 1e3:6.2f} ms (x{hashed / plain:4.2f}); read+unpack only {unpack * 1e3:6.2f} ms "
              f"(load/unpack x{plain / unpack:4.2f})")
        nrt.nrt_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
