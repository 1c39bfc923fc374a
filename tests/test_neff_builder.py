"""NeffBuilder tracing: ops, shape checks, subgraph boundaries, outputs, declare, from_function."""
from __future__ import annotations

import numpy as np
import pytest

from neuron_sim.compute.interpreter import CompiledGraph
from neuron_sim.compute.shapes import OP_KINDS
from neuron_sim.neff.builder import NeffBuilder, Value, from_function, trace
from neuron_sim.neff.reader import read_neff


def run(data: bytes, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    n = read_neff(data)
    return CompiledGraph(n.graph, n.weights).run(inputs)


def test_mlp_traced_with_operators_computes_the_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    b = NeffBuilder("mlp")
    x = b.input("x", "float32", (2, 8))
    h = b.relu(x @ b.weight("w1", w1) + b.weight("b1", b1))
    b.output("y", (h * 2.0 - 1.0) / 4.0)
    xv = rng.standard_normal((2, 8)).astype(np.float32)
    want = (np.maximum(xv @ w1 + b1, 0) * 2 - 1) / 4
    np.testing.assert_allclose(run(b.build(), x=xv)["y"], want, rtol=1e-5)
    assert h.shape == (2, 16) and h.dtype == "float32"


def test_every_op_kind_has_a_builder_method_and_a_value_method() -> None:
    b = NeffBuilder("ops")
    x = b.input("x", "float32", (2, 4))
    g = b.weight("g", np.ones(4, np.float32))
    made = {
        "matmul": b.matmul(x, b.transpose(x)), "add": b.add(x, x), "sub": b.sub(x, x), "mul": b.mul(x, x),
        "div": b.div(x, x), "relu": x.relu(), "gelu": b.gelu(x, approximate="tanh"), "silu": b.silu(x),
        "tanh": b.tanh(x), "sigmoid": b.sigmoid(x), "exp": b.exp(x), "softmax": b.softmax(x, axis=-1),
        "layernorm": b.layernorm(x, g, g), "rmsnorm": x.rmsnorm(g), "transpose": x.transpose([1, 0]),
        "reshape": x.reshape((4, 2)), "concat": b.concat([x, x], axis=1), "slice": x.slice([0], [1]),
        "reduce_sum": x.reduce_sum(axes=[1]), "reduce_mean": b.reduce_mean(x, keepdims=True),
        "reduce_max": b.reduce_max(x, axes=[0]), "cast": x.cast("bfloat16"),
        "gather": x.gather(b.weight("rows", np.array([1, 0, 1], np.int32))),
    }
    assert set(made) == set(OP_KINDS)
    shapes = {k: v.shape for k, v in made.items()}
    assert shapes["matmul"] == (2, 2) and shapes["concat"] == (2, 8) and shapes["slice"] == (1, 4)
    assert shapes["reduce_sum"] == (2,) and shapes["reduce_mean"] == (1, 1) and made["cast"].dtype == "bfloat16"
    assert shapes["gather"] == (3, 4)
    for i, (kind, v) in enumerate(made.items()):
        b.output(f"o_{kind}", v)
    n = read_neff(b.build())
    assert sorted({op.kind for op in n.graph.subgraphs[0].ops}) == sorted(OP_KINDS)
    assert len(n.outputs) == len(OP_KINDS)


def test_shape_errors_are_raised_when_traced() -> None:
    b = NeffBuilder("bad")
    x = b.input("x", "float32", (2, 3))
    with pytest.raises(ValueError, match="matmul: inner dimensions differ"):
        x @ x
    with pytest.raises(ValueError, match="dtype"):
        x + b.input("i", "int32", (2, 3))
    with pytest.raises(ValueError, match="already used"):
        b.input("x", "float32", (1,))
    with pytest.raises(ValueError, match="no outputs"):
        b.build()
    with pytest.raises(TypeError):
        b.relu("x")  # type: ignore[arg-type]


def test_next_core_turns_crossing_values_into_subgraph_outputs_and_inputs() -> None:
    b = NeffBuilder("pipe")
    x = b.input("x", "float32", (1, 4))
    a = b.relu(x)
    b.next_core()
    c = b.exp(a)
    b.next_core()
    d = b.add(c, a)                    # uses a value from two cores back
    b.output("y", d)
    g = b.graph()
    names = [sg.ops[-1].output for sg in g.subgraphs]
    assert g.subgraphs[0].inputs == ("x",) and g.subgraphs[0].outputs == (names[0],)
    assert g.subgraphs[1].inputs == (names[0],) and g.subgraphs[1].outputs == (names[1],)
    assert set(g.subgraphs[2].inputs) == {names[0], names[1]} and g.subgraphs[2].outputs == ("y",)
    n = read_neff(b.build())
    assert n.num_cores == 3 and n.header.num_tpb == 3
    xv = np.array([[-1, 0, 1, 2]], np.float32)
    np.testing.assert_allclose(run(b.build(), x=xv)["y"], np.exp(np.maximum(xv, 0)) + np.maximum(xv, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="no ops yet"):
        NeffBuilder("empty").next_core()


def test_outputting_an_input_or_the_same_value_twice_goes_through_an_identity() -> None:
    b = NeffBuilder("id")
    x = b.input("x", "float32", (3,))
    r = b.relu(x)
    b.output("a", r)
    b.output("b", r)
    b.output("c", x)
    xv = np.array([-1, 2, 3], np.float32)
    out = run(b.build(), x=xv)
    assert np.array_equal(out["a"], out["b"]) and np.array_equal(out["c"], xv)


def test_declare_sets_graph_declared_and_rejects_bad_values() -> None:
    b = NeffBuilder("d")
    b.output("y", b.relu(b.input("x", "float32", (1,))))
    b.declare(constants_bytes=10, duration_s=2)
    b.declare(scratchpad_bytes=5)
    d = read_neff(b.build()).graph.declared
    assert (d.constants_bytes, d.scratchpad_bytes, d.output_buffer_bytes, d.duration_s) == (10, 5, 0, 2.0)
    with pytest.raises(ValueError, match="constants_bytes"):
        b.declare(constants_bytes=-1)


def test_from_function_traces_values_tuples_and_dicts(tmp_path) -> None:
    def model(x: Value, y: Value):
        w = x.builder.weight("w", np.full((4, 2), 0.5, np.float32))
        return (x + y) @ w, x.softmax()

    data = from_function(model, {"x": ("float32", (1, 4)), "y": ("float32", (1, 4))}, target="v3", lnc_size=2)
    n = read_neff(data)
    assert n.name == "model" and n.architecture == "v3" and n.lnc_size == 2
    assert [t.name for t in n.outputs] == ["output0", "output1"] and n.outputs[0].shape == (1, 2)
    b = trace(lambda x: {"z": -x}, {"x": ("float32", (2,))}, name="neg")
    assert run(b.build(), x=np.array([1, -2], np.float32))["z"].tolist() == [-1, 2]
    path = b.save(tmp_path / "neg.neff")
    assert read_neff((tmp_path / "neg.neff").read_bytes()).name == "neg" and path.endswith("neg.neff")
    with pytest.raises(ValueError, match="cannot take"):
        from_function(lambda a, b: a, {"x": ("float32", (1,))})
    with pytest.raises(ValueError, match="must return"):
        from_function(lambda a: 3, {"x": ("float32", (1,))})
