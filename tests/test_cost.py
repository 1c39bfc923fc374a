"""The cost model: FLOP/byte counting, compute- vs bandwidth-bound durations, lnc/cores scaling, sharers, override."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from neuron_sim.compute.cost import TRANSCENDENTAL_FLOPS, dtype_class, estimate_duration, graph_work
from neuron_sim.compute.graph import Declared, Graph, Op, Subgraph, TensorSpec
from neuron_sim.hardware.model import CoreGeneration

T = TensorSpec
GEN = CoreGeneration(
    name="vtest", arch_name="NCvT", kelf_target="test",
    peak_flops={"fp32": 1e12, "bf16": 4e12, "fp8": 8e12, "int8": 8e12},
    hbm_bandwidth=1e11, launch_cost_s=1e-5, microcode_bytes=0,
)


def matmul_graph(m: int, k: int, n: int, dtype: str = "float32", batch: tuple[int, ...] = ()) -> Graph:
    return Graph(
        inputs=(T("x", dtype, batch + (m, k)),),
        outputs=(T("y", dtype, batch + (m, n)),),
        subgraphs=(Subgraph(("x",), ("y",), (Op("matmul", ("x", "w"), "y"),)),),
        weight_names=("w",),
    )


def w_spec(k: int, n: int, dtype: str = "float32") -> dict[str, TensorSpec]:
    return {"w": T("w", dtype, (k, n))}


def add_graph(n: int) -> Graph:
    return Graph(
        inputs=(T("a", "float32", (n,)), T("b", "float32", (n,))),
        outputs=(T("y", "float32", (n,)),),
        subgraphs=(Subgraph(("a", "b"), ("y",), (Op("add", ("a", "b"), "y"),)),),
    )


def test_graph_work_counts_matmul_flops_and_bytes():
    g = matmul_graph(8, 16, 32, batch=(3,))
    work = graph_work(g, w_spec(16, 32))
    assert work.flops == {"fp32": 2 * 8 * 32 * 16 * 3}
    assert work.weight_bytes == 16 * 32 * 4
    assert work.bytes_moved == (3 * 8 * 16 + 16 * 32 + 3 * 8 * 32) * 4


def test_graph_work_classes_and_intermediates():
    g = Graph(
        inputs=(T("x", "bfloat16", (4, 4)),),
        outputs=(T("y", "float32", (4, 4)),),
        subgraphs=(Subgraph(("x",), ("y",), (
            Op("exp", ("x",), "e"),
            Op("transpose", ("e",), "t"),
            Op("cast", ("t",), "y", {"dtype": "float32"}),
        )),),
    )
    work = graph_work(g)
    assert work.flops == {"bf16": TRANSCENDENTAL_FLOPS * 16, "fp32": 16}
    # input 32 B; e and t written+read (2 * 32 each); output 64 B
    assert work.bytes_moved == 32 + 2 * 32 + 2 * 32 + 64


@pytest.mark.parametrize(
    "dtype, cls", [("float32", "fp32"), ("fp32r", "fp32"), ("bfloat16", "bf16"), ("float16", "bf16"),
                   ("float8_e4m3", "fp8"), ("float8_e5m2", "fp8"), ("int8", "int8"), ("int32", "int8")])
def test_dtype_class(dtype, cls):
    assert dtype_class(dtype) == cls


def test_matmul_bound_duration():
    m = k = n = 1024
    g = matmul_graph(m, k, n)
    d = estimate_duration(g, GEN, weights=w_spec(k, n))
    compute = 2 * m * n * k / 1e12
    assert compute > 3 * m * k * 4 / 1e11     # really compute-bound
    assert d == pytest.approx(compute + GEN.launch_cost_s, rel=1e-12)
    bf = estimate_duration(matmul_graph(m, k, n, "bfloat16"), GEN, weights=w_spec(k, n, "bfloat16"))
    assert bf == pytest.approx(2 * m * n * k / 4e12 + GEN.launch_cost_s, rel=1e-12)


def test_bandwidth_bound_duration():
    n = 1 << 20
    d = estimate_duration(add_graph(n), GEN)
    assert d == pytest.approx(3 * n * 4 / 1e11 + GEN.launch_cost_s, rel=1e-12)
    assert d > n / 1e12 + GEN.launch_cost_s     # memory time dominates compute time


def test_lnc_and_cores_scale_compute_not_bandwidth():
    g, w = matmul_graph(1024, 1024, 1024), w_spec(1024, 1024)
    base = estimate_duration(g, GEN, weights=w) - GEN.launch_cost_s
    assert estimate_duration(g, GEN, lnc=2, weights=w) - GEN.launch_cost_s == pytest.approx(base / 2)
    assert estimate_duration(g, GEN, cores=2, lnc=2, weights=w) - GEN.launch_cost_s == pytest.approx(base / 4)
    mem = estimate_duration(add_graph(1 << 20), GEN)
    assert estimate_duration(add_graph(1 << 20), GEN, lnc=2) == pytest.approx(mem)


def test_shared_weights_divide_weight_bandwidth():
    # a matrix-vector product: weight-bandwidth bound
    g, w = matmul_graph(1, 4096, 4096), w_spec(4096, 4096)
    act = (4096 + 4096) * 4
    wb = 4096 * 4096 * 4
    alone = estimate_duration(g, GEN, weights=w)
    shared = estimate_duration(g, GEN, hbm_sharers=4, weights=w)
    assert alone == pytest.approx((act + wb) / 1e11 + GEN.launch_cost_s)
    assert shared == pytest.approx((act + 4 * wb) / 1e11 + GEN.launch_cost_s)


def test_constants_bytes_add_to_weight_traffic():
    g = replace(add_graph(1024), declared=Declared(constants_bytes=10 ** 9))
    assert estimate_duration(g, GEN) == pytest.approx((3 * 4096 + 10 ** 9) / 1e11 + GEN.launch_cost_s)
    assert estimate_duration(g, GEN, constants_bytes=0) == pytest.approx(3 * 4096 / 1e11 + GEN.launch_cost_s)
    assert estimate_duration(g, GEN, constants_bytes=10 ** 9, hbm_sharers=2) == pytest.approx(
        (3 * 4096 + 2 * 10 ** 9) / 1e11 + GEN.launch_cost_s)


def test_declared_duration_overrides_everything():
    g = replace(matmul_graph(1024, 1024, 1024), declared=Declared(duration_s=0.25))
    assert estimate_duration(g, GEN, cores=8, lnc=2, hbm_sharers=4) == 0.25   # no weights needed either
    assert estimate_duration(replace(g, declared=Declared(duration_s=0.0)), GEN) == 0.0


def test_missing_dtype_class_falls_back_to_fp32_peak():
    gen = replace(GEN, peak_flops={"fp32": 1e12})
    g, w = matmul_graph(512, 512, 512, "int8"), w_spec(512, 512, "int8")
    assert estimate_duration(g, gen, weights=w) == pytest.approx(2 * 512 ** 3 / 1e12 + GEN.launch_cost_s)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"cores": 0}, "cores must be an integer >= 1"), ({"lnc": 1.5}, "lnc must be an integer >= 1"),
     ({"hbm_sharers": -1}, "hbm_sharers must be"), ({"constants_bytes": -5}, "constants_bytes must be >= 0")],
)
def test_bad_parameters_are_rejected(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        estimate_duration(add_graph(4), GEN, **kwargs)


def test_work_needs_weight_specs():
    with pytest.raises(ValueError, match=r"weights \['w'\] are named by the graph"):
        graph_work(matmul_graph(2, 2, 2))
    assert graph_work(matmul_graph(2, 2, 2), {"w": np.zeros((2, 2), np.float32)}).flops == {"fp32": 16}
