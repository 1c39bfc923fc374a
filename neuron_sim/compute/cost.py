"""The cost model: a simulated duration for one execution from a graph's FLOPs and bytes and a core generation.

duration = max(compute time, memory time) + launch cost, where
- compute time = sum over dtype classes of FLOPs / (peak_flops[class] * lnc * cores): the work is taken to be spread
  evenly over the ``cores`` logical cores the model occupies (each of lnc physical cores);
- memory time = (activation bytes + weight bytes * hbm_sharers) / hbm_bandwidth: cores reading one shared copy of
  the weights (NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS) each get 1/hbm_sharers of the bandwidth for them;
- ``graph.declared.duration_s`` overrides everything.
Transfers (``transfer_duration``, the explicit async API): DMA latency + bytes / host-device bandwidth.
FLOPs: matmul 2*M*N*K per batch element; add/sub/mul/div/relu/cast 1 per result element; exp, tanh, sigmoid, silu,
gelu TRANSCENDENTAL_FLOPS per element; softmax 5, layernorm 8, rmsnorm 5 per element; reductions 1 per input
element; transpose/reshape/slice/concat/gather none. The class is the op's first input dtype: float32/fp32r -> "fp32",
bfloat16/float16 -> "bf16", float8_* -> "fp8", integers -> "int8" (for cast: the wider of source and target).
Bytes: graph inputs and weights read once, graph outputs written once, every other op result written once and read
once (2x its size), plus the declared constants read once. A class missing from a generation's peak_flops uses
its "fp32" figure.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuron_sim.compute.graph import Graph, TensorSpec
from neuron_sim.compute.shapes import infer_graph
from neuron_sim.dtypes import numpy_dtype
from neuron_sim.hardware.model import CoreGeneration

TRANSCENDENTAL_FLOPS = 4
_PER_ELEMENT = {
    "add": 1, "sub": 1, "mul": 1, "div": 1, "relu": 1, "cast": 1,
    "exp": TRANSCENDENTAL_FLOPS, "tanh": TRANSCENDENTAL_FLOPS, "sigmoid": TRANSCENDENTAL_FLOPS,
    "silu": TRANSCENDENTAL_FLOPS + 1, "gelu": TRANSCENDENTAL_FLOPS + 3,
    "softmax": 5, "layernorm": 8, "rmsnorm": 5,
    "transpose": 0, "reshape": 0, "slice": 0, "concat": 0, "gather": 0,
}
_CLASS_RANK = {"int8": 0, "fp8": 1, "bf16": 2, "fp32": 3}


@dataclass(frozen=True)
class Work:
    """What one execution does: FLOPs by dtype class and bytes moved through HBM (weight bytes among them)."""

    flops: dict[str, float] = field(default_factory=dict)
    bytes_moved: int = 0
    weight_bytes: int = 0

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())


def dtype_class(dtype: str) -> str:
    """The peak_flops key ("fp32", "bf16", "fp8", "int8") that ops on this dtype run at."""
    name = numpy_dtype(dtype).name
    if "float8" in name:
        return "fp8"
    if name in ("bfloat16", "float16"):
        return "bf16"
    if name.startswith("float"):
        return "fp32"
    return "int8"


def _nbytes(spec: TensorSpec) -> int:
    return math.prod(spec.shape) * numpy_dtype(spec.dtype).itemsize


def graph_work(graph: Graph, weights: Mapping[str, Any] | None = None) -> Work:
    """Count FLOPs and bytes of one execution; ``weights`` (arrays or TensorSpecs) as for infer_graph."""
    specs = infer_graph(graph, weights)
    flops: dict[str, float] = {}
    outputs = {s.name for s in graph.outputs}
    moved = sum(_nbytes(specs[s.name]) for s in graph.inputs)
    weight_bytes = sum(_nbytes(specs[w]) for w in graph.weight_names)
    for sg in graph.subgraphs:
        for op in sg.ops:
            ins = [specs[n] for n in op.inputs]
            res = specs[op.output]
            size = math.prod(res.shape)
            if op.kind == "matmul":
                k = ins[0].shape[-1]
                n_flops = 2 * size * k
            elif op.kind.startswith("reduce_"):
                n_flops = math.prod(ins[0].shape)
            else:
                n_flops = _PER_ELEMENT[op.kind] * size
            cls = dtype_class(ins[0].dtype)
            if op.kind == "cast":
                cls = max(cls, dtype_class(res.dtype), key=_CLASS_RANK.__getitem__)
            if n_flops:
                flops[cls] = flops.get(cls, 0) + n_flops
            moved += _nbytes(res) * (1 if op.output in outputs else 2)
    return Work(flops=flops, bytes_moved=moved + weight_bytes, weight_bytes=weight_bytes)


def estimate_duration(
    graph: Graph,
    generation: CoreGeneration,
    *,
    cores: int = 1,
    lnc: int = 1,
    hbm_sharers: int = 1,
    constants_bytes: int | None = None,
    weights: Mapping[str, Any] | None = None,
) -> float:
    """Simulated seconds for one execution (see module docstring); ``constants_bytes`` overrides the declared ones."""
    if graph.declared.duration_s is not None:
        if not graph.declared.duration_s >= 0:
            raise ValueError(f"declared duration_s must be >= 0, got {graph.declared.duration_s}")
        return float(graph.declared.duration_s)
    for name, v in (("cores", cores), ("lnc", lnc), ("hbm_sharers", hbm_sharers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"estimate_duration: {name} must be an integer >= 1, got {v!r}")
    extra = graph.declared.constants_bytes if constants_bytes is None else constants_bytes
    if extra < 0:
        raise ValueError(f"estimate_duration: constants_bytes must be >= 0, got {extra}")
    work = graph_work(graph, weights)
    compute = 0.0
    for cls, n in work.flops.items():
        peak = generation.peak_flops.get(cls) or generation.peak_flops.get("fp32")
        if not peak or peak <= 0:
            raise ValueError(f"generation {generation.name}: no positive peak_flops for {cls!r} or 'fp32'")
        compute += n / (peak * lnc * cores)
    if generation.hbm_bandwidth <= 0:
        raise ValueError(f"generation {generation.name}: hbm_bandwidth must be positive")
    weight_total = work.weight_bytes + extra
    activation = work.bytes_moved - work.weight_bytes
    memory = (activation + weight_total * hbm_sharers) / generation.hbm_bandwidth
    return max(compute, memory) + generation.launch_cost_s


def transfer_duration(nbytes: int, generation: CoreGeneration, *, host_to_device: bool = True,
                      device_to_device: bool = False) -> float:
    """Simulated seconds of one DMA transfer of ``nbytes``: the DMA latency plus bytes / bandwidth.

    Host<->device transfers move at ``host_device_bandwidth`` (PCIe); device-to-device copies read and write
    HBM (2 * bytes / hbm_bandwidth); host-to-host copies (no device tensor involved) cost the latency only.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"transfer_duration: nbytes must be an integer >= 0, got {nbytes!r}")
    if device_to_device:
        return generation.dma_latency_s + 2 * nbytes / generation.hbm_bandwidth
    if host_to_device:
        return generation.dma_latency_s + nbytes / generation.host_device_bandwidth
    return generation.dma_latency_s
