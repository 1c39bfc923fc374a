"""Rebuild every sample NEFF in this folder reproducibly (same bytes on every run; fixed weight seeds).

    python neffs/build_samples.py [OUT_DIR]

``build_all()`` returns {file name: bytes}; see README.md for what each sample is for.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np

from neuron_sim.neff.builder import NeffBuilder

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
GiB = 1 << 30


def _dense(rng: np.random.Generator, fan_in: int, fan_out: int, dtype=np.float32) -> np.ndarray:
    return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype)


def mlp(name: str, target: str, *, seed: int, dims=(64, 128, 10), act: str = "relu") -> NeffBuilder:
    """x[1, d0] -> dense+act -> dense -> y[1, d2], float32."""
    rng = np.random.default_rng(seed)
    b = NeffBuilder(name, target=target)
    x = b.input("x", "float32", (1, dims[0]))
    w1 = b.weight("w1", _dense(rng, dims[0], dims[1]))
    b1 = b.weight("b1", (rng.standard_normal(dims[1]) * 0.1).astype(np.float32))
    w2 = b.weight("w2", _dense(rng, dims[1], dims[2]))
    b2 = b.weight("b2", (rng.standard_normal(dims[2]) * 0.1).astype(np.float32))
    h = getattr(b, act)(x @ w1 + b1)
    b.output("y", h @ w2 + b2)
    return b


def matmul_bf16() -> NeffBuilder:
    rng = np.random.default_rng(5)
    b = NeffBuilder("matmul_bf16", target="v2")
    x = b.input("x", "bfloat16", (64, 128))
    b.output("y", x @ b.weight("w", _dense(rng, 128, 64, ml_dtypes.bfloat16)))
    return b


def pipeline(cores: int, target: str, seed: int) -> NeffBuilder:
    """A NeuronCore pipeline of ``cores`` stages (the compiler's --neuroncore-pipeline-cores), one dense+relu each."""
    rng = np.random.default_rng(seed)
    b = NeffBuilder(f"pipeline_{cores}core_{'inf1' if target == 'v1' else target}", target=target)
    h = b.input("x", "float32", (4, 32))
    for stage in range(cores):
        if stage:
            b.next_core()
        h = b.relu(h @ b.weight(f"w{stage}", _dense(rng, 32, 32)))
    b.output("y", h)
    return b


def pipeline_4core() -> NeffBuilder:
    """Four subgraphs, one per NeuronCore, each a dense+relu stage passing its activation on."""
    rng = np.random.default_rng(6)
    b = NeffBuilder("pipeline_4core", target="v2")
    h = b.input("x", "float32", (4, 32))
    for stage in range(4):
        if stage:
            b.next_core()
        h = b.relu(h @ b.weight(f"w{stage}", _dense(rng, 32, 32)))
    b.output("y", h)
    return b


def declared(name: str, seed: int, **decl) -> NeffBuilder:
    b = mlp(name, "v2", seed=seed, dims=(16, 32, 8))
    b.declare(**decl)
    return b


def nan_output() -> NeffBuilder:
    """y = (x - x) / (x - x): 0/0 gives NaN in every element (numerical-error tests)."""
    b = NeffBuilder("nan_output", target="v2")
    x = b.input("x", "float32", (1, 16))
    zero = x - x
    b.output("y", zero / zero)
    return b


def nki_add() -> NeffBuilder:
    """The nrtpy docs' first kernel: output_0 = a_input + b_input, float16 (4, 3), NKI IO names."""
    b = NeffBuilder("nki_add", target="v2")
    b.output("output_0", b.input("a_input", "float16", (4, 3)) + b.input("b_input", "float16", (4, 3)))
    return b


def nki_exp() -> NeffBuilder:
    """The nrtpy tutorial's kernel shape: output_0 = exp(src_tensor), float32 [128, 512]."""
    b = NeffBuilder("nki_exp", target="v2")
    b.output("output_0", b.exp(b.input("src_tensor", "float32", (128, 512))))
    return b


def gather_oob() -> NeffBuilder:
    """A buggy row gather: its baked-in index table is off by one, so the last index (128) reads past the
    128-row src_tensor and every execution faults with NRT_EXEC_OOB (the nrtpy debugging tutorial's case)."""
    b = NeffBuilder("gather_oob", target="v2")
    src = b.input("src_tensor", "float32", (128, 512))
    rows = b.weight("row_index", np.arange(1, 129, dtype=np.int32))
    b.output("output_0", b.gather(src, rows, axis=0))
    return b


SAMPLES: dict[str, Callable[[], bytes]] = {
    "mlp_trn1.neff": lambda: mlp("mlp_trn1", "v2", seed=1).build(),
    "mlp_inf2.neff": lambda: mlp("mlp_inf2", "v2", seed=2, act="gelu").build(),
    "mlp_trn2.neff": lambda: mlp("mlp_trn2", "v3", seed=3).build(lnc_size=2),
    "mlp_inf1.neff": lambda: mlp("mlp_inf1", "v1", seed=4).build(),
    "matmul_bf16.neff": lambda: matmul_bf16().build(),
    "pipeline_4core.neff": lambda: pipeline_4core().build(),
    "pipeline_1core_inf1.neff": lambda: pipeline(1, "v1", 21).build(),
    "pipeline_2core_inf1.neff": lambda: pipeline(2, "v1", 22).build(),
    "pipeline_3core_inf1.neff": lambda: pipeline(3, "v1", 23).build(),
    "pipeline_4core_inf1.neff": lambda: pipeline(4, "v1", 24).build(),
    "large_weights.neff": lambda: declared("large_weights", 7, constants_bytes=768 * MiB).build(),
    "slow_40s.neff": lambda: declared("slow_40s", 8, duration_s=40.0).build(),
    "nan_output.neff": lambda: nan_output().build(),
    "large_outputs.neff": lambda: declared("large_outputs", 9, output_buffer_bytes=6 * GiB).build(),
    "bad_hash.neff": lambda: mlp("mlp_trn1", "v2", seed=1).build(
        header_overrides={"hash": bytes(range(16)) + bytes(16)}),
    "truncated.neff": lambda: _truncated(mlp("mlp_trn1", "v2", seed=1).build()),
    "unsupported_version.neff": lambda: mlp("unsupported_version", "v2", seed=10).build(version=(3, 0)),
    "unknown_features.neff": lambda: mlp("unknown_features", "v2", seed=11).build(feature_bits=1 << 27),
    "nki_add.neff": lambda: nki_add().build(),
    "nki_exp.neff": lambda: nki_exp().build(),
    "gather_oob.neff": lambda: gather_oob().build(),
}


def _truncated(data: bytes) -> bytes:
    """Cut in the middle of the archive: the header still claims the full data_size."""
    return data[:1024 + (len(data) - 1024) // 2]


def build_all() -> dict[str, bytes]:
    """Every sample's bytes by file name."""
    return {name: make() for name, make in SAMPLES.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, data in build_all().items():
        (out / name).write_bytes(data)
        print(f"{name:28s} {len(data):7d} bytes")
    return 0


__all__ = ["build_all", "main", "SAMPLES"]

if __name__ == "__main__":
    sys.exit(main())
