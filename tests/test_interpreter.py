"""CompiledGraph: results, multi-subgraph data passing, in-place outputs, buffer reuse, threads, bad graphs."""
from __future__ import annotations

import threading

import ml_dtypes
import numpy as np
import pytest

from neuron_sim.compute.graph import Graph, Op, Subgraph, TensorSpec
from neuron_sim.compute.interpreter import CompiledGraph
from neuron_sim.compute.ops import apply_op

T = TensorSpec
F32 = np.float32


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def mlp_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    """Two subgraphs: sg0 = relu(x @ w1 + b1); sg1 = softmax(h @ w2) + x[:, :2] (reads a graph input directly)."""
    sg0 = Subgraph(("x",), ("h",), (
        Op("matmul", ("x", "w1"), "m"),
        Op("add", ("m", "b1"), "a"),
        Op("relu", ("a",), "h"),
    ))
    sg1 = Subgraph(("h",), ("y", "h2"), (
        Op("matmul", ("h", "w2"), "z"),
        Op("softmax", ("z",), "p"),
        Op("slice", ("x",), "xs", {"starts": [0, 0], "stops": [4, 2]}),
        Op("add", ("p", "xs"), "y"),
        Op("mul", ("h", "h"), "h2"),
    ))
    g = Graph(
        inputs=(T("x", "float32", (4, 3)),),
        outputs=(T("y", "float32", (4, 2)), T("h2", "float32", (4, 5))),
        subgraphs=(sg0, sg1),
        weight_names=("w1", "b1", "w2"),
    )
    return g, {"w1": randn(3, 5, seed=1), "b1": randn(5, seed=2), "w2": randn(5, 2, seed=3)}


def mlp_ref(x, w):
    h = np.maximum(x @ w["w1"] + w["b1"], 0)
    z = h @ w["w2"]
    e = np.exp(z - z.max(-1, keepdims=True))
    return {"y": e / e.sum(-1, keepdims=True) + x[:, :2], "h2": h * h}


def test_multi_subgraph_run_matches_numpy_bit_exact():
    g, w = mlp_graph()
    cg = CompiledGraph(g, w)
    assert cg.num_subgraphs == 2
    x = randn(4, 3, seed=9)
    got = cg.run({"x": x})
    want = mlp_ref(x, w)
    assert set(got) == {"y", "h2"}
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_run_subgraph_passes_data_through_env():
    g, w = mlp_graph()
    cg = CompiledGraph(g, w)
    x = randn(4, 3, seed=4)
    env = {"x": x}
    cg.run_subgraph(0, env)
    assert set(env) == {"x", "h"}
    np.testing.assert_array_equal(env["h"], np.maximum(x @ w["w1"] + w["b1"], 0))
    cg.run_subgraph(1, env)
    np.testing.assert_array_equal(env["y"], mlp_ref(x, w)["y"])
    with pytest.raises(ValueError, match="subgraph 1: input 'h' is missing from env"):
        cg.run_subgraph(1, {"x": x})
    with pytest.raises(ValueError, match="subgraph index 2 out of range 0..1"):
        cg.run_subgraph(2, env)


def test_outputs_are_filled_in_place_and_the_same_dict_returned():
    g, w = mlp_graph()
    cg = CompiledGraph(g, w)
    outs = {"y": np.full((4, 2), -7, F32), "h2": np.full((4, 5), -7, F32)}
    ids = {k: id(v) for k, v in outs.items()}
    for seed in range(3):
        x = randn(4, 3, seed=seed)
        res = cg.run({"x": x}, outs)
        assert res is outs and {k: id(v) for k, v in res.items()} == ids
        for k, v in mlp_ref(x, w).items():
            np.testing.assert_array_equal(outs[k], v)


def test_returned_arrays_are_fresh_and_survive_later_runs():
    g, w = mlp_graph()
    cg = CompiledGraph(g, w)
    x1, x2 = randn(4, 3, seed=1), randn(4, 3, seed=2)
    first = cg.run({"x": x1})
    kept = {k: v.copy() for k, v in first.items()}
    second = cg.run({"x": x2})
    for k in first:
        np.testing.assert_array_equal(first[k], kept[k])
        assert not np.shares_memory(first[k], second[k])


def chain_graph(n: int) -> Graph:
    """x -> n alternating tanh/mul ops of one shape, plus a transposed view read after its buffer's producer."""
    ops = [Op("mul", ("x", "x"), "v0"), Op("transpose", ("v0",), "t0")]
    for i in range(1, n):
        kind = "tanh" if i % 2 else "add"
        ins = (f"v{i - 1}",) if kind == "tanh" else (f"v{i - 1}", "x")
        ops.append(Op(kind, ins, f"v{i}"))
    ops.append(Op("transpose", (f"v{n - 1}",), "tl"))
    ops.append(Op("add", ("t0", "tl"), "y"))      # t0 aliases v0's buffer: it must not have been reused
    return Graph(
        inputs=(T("x", "float32", (6, 6)),),
        outputs=(T("y", "float32", (6, 6)),),
        subgraphs=(Subgraph(("x",), ("y",), tuple(ops)),),
    )


def chain_ref(x, n):
    v = x * x
    t0 = v.T
    for i in range(1, n):
        v = np.tanh(v) if i % 2 else v + x
    return t0 + v.T


def test_buffer_reuse_gives_the_same_results_over_repeated_runs():
    n = 12
    cg = CompiledGraph(chain_graph(n), {})
    plan = cg._plans[0]
    assert len(plan.buffers) < len(plan.ops) - 2    # buffers were shared between ops
    outs = {"y": np.empty((6, 6), F32)}
    for seed in list(range(4)) * 2:
        x = randn(6, 6, seed=seed)
        np.testing.assert_array_equal(cg.run({"x": x}, outs)["y"], chain_ref(x, n))
        np.testing.assert_array_equal(cg.run({"x": x})["y"], chain_ref(x, n))


def test_concurrent_runs_from_threads_are_independent():
    n = 10
    cg = CompiledGraph(chain_graph(n), {})
    errors: list[str] = []

    def worker(seed: int) -> None:
        x = randn(6, 6, seed=seed)
        want = chain_ref(x, n)
        for _ in range(200):
            if not np.array_equal(cg.run({"x": x})["y"], want):
                errors.append(f"thread {seed} got a wrong result")
                return

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_bf16_graph_matches_the_op_by_op_result():
    bf = np.dtype(ml_dtypes.bfloat16)
    g = Graph(
        inputs=(T("x", "bfloat16", (3, 4)),),
        outputs=(T("y", "float32", (3,)),),
        subgraphs=(Subgraph(("x",), ("y",), (
            Op("matmul", ("x", "w"), "m"),
            Op("gelu", ("m",), "a"),
            Op("rmsnorm", ("a", "g"), "n"),
            Op("reduce_sum", ("n",), "s", {"axes": [1]}),
            Op("cast", ("s",), "y", {"dtype": "float32"}),
        )),),
        weight_names=("w", "g"),
    )
    w = {"w": randn(4, 8, seed=1).astype(bf), "g": randn(8, seed=2).astype(bf)}
    x = randn(3, 4, seed=3).astype(bf)
    got = CompiledGraph(g, w).run({"x": x})["y"]
    a = apply_op("gelu", [apply_op("matmul", [x, w["w"]])])
    s = apply_op("reduce_sum", [apply_op("rmsnorm", [a, w["g"]])], {"axes": [1]})
    np.testing.assert_array_equal(got, s.astype(F32))


def test_identity_and_passthrough_outputs():
    g = Graph(
        inputs=(T("x", "int32", (2,)),),
        outputs=(T("x", "int32", (2,)), T("r", "int32", (2, 1))),
        subgraphs=(Subgraph(("x",), ("x", "r"), (Op("reshape", ("x",), "r", {"shape": [2, 1]}),)),),
    )
    x = np.array([3, -4], np.int32)
    res = CompiledGraph(g, {}).run({"x": x})
    assert res["x"].tolist() == [3, -4] and res["r"].tolist() == [[3], [-4]]
    assert not np.shares_memory(res["x"], x) and not np.shares_memory(res["r"], x)


@pytest.mark.parametrize(
    "graph, weights, fragment",
    [
        (Graph((T("x", "float32", (2,)),), (T("y", "float32", (2,)),),
               (Subgraph(("x",), ("y",), (Op("swish", ("x",), "y"),)),)), {}, "unknown op kind 'swish'"),
        (Graph((T("x", "float32", (2,)),), (T("y", "float32", (2,)),),
               (Subgraph(("x",), ("y",), (Op("add", ("x", "k"), "y"),)),)), {}, "input 'k' is unknown"),
        (Graph((T("x", "float32", (2,)),), (T("y", "float32", (2,)),),
               (Subgraph(("x",), ("y",), (Op("add", ("x", "k"), "y"),)),), weight_names=("k",)),
         {"k": np.zeros(3, F32)}, "shapes [2] and [3] do not broadcast"),
    ],
)
def test_bad_graphs_raise_value_error_naming_the_problem(graph, weights, fragment):
    with pytest.raises(ValueError) as err:
        CompiledGraph(graph, weights)
    assert fragment in str(err.value)


def test_bad_run_arguments_raise_value_error():
    g, w = mlp_graph()
    cg = CompiledGraph(g, w)
    with pytest.raises(ValueError, match=r"input 'x' is missing; expected float32\[4, 3\]"):
        cg.run({})
    with pytest.raises(ValueError, match=r"input 'x' is float64\[4, 3\]; expected float32\[4, 3\]"):
        cg.run({"x": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"output 'h2' is missing from outputs"):
        cg.run({"x": randn(4, 3)}, {"y": np.empty((4, 2), F32)})
    with pytest.raises(ValueError, match=r"output 'y' is float32\[2, 4\]; expected float32\[4, 2\]"):
        cg.run({"x": randn(4, 3)}, {"y": np.empty((2, 4), F32), "h2": np.empty((4, 5), F32)})
