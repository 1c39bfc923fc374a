"""Shape/dtype inference of every op kind and the well-formedness checks of infer_graph."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim.compute.graph import Graph, Op, Subgraph, TensorSpec
from neuron_sim.compute.shapes import OP_KINDS, infer_graph, infer_op

T = TensorSpec


def f32(*shape: int) -> TensorSpec:
    return T("", "float32", tuple(shape))


def test_op_kinds_are_the_contract():
    assert OP_KINDS == {
        "matmul", "add", "sub", "mul", "div", "relu", "gelu", "silu", "tanh", "sigmoid", "exp", "softmax",
        "layernorm", "rmsnorm", "transpose", "reshape", "concat", "slice", "reduce_sum", "reduce_mean",
        "reduce_max", "cast", "gather",
    }


@pytest.mark.parametrize(
    "kind, inputs, attrs, shape",
    [
        ("matmul", [f32(2, 3), f32(3, 5)], {}, (2, 5)),
        ("gather", [f32(5, 6, 7), T("", "int32", (2, 3))], {"axis": 1}, (5, 2, 3, 7)),
        ("matmul", [f32(7, 1, 2, 3), f32(4, 3, 5)], {}, (7, 4, 2, 5)),
        ("matmul", [f32(3), f32(2, 3, 4)], {}, (2, 4)),
        ("matmul", [f32(2, 3), f32(3)], {}, (2,)),
        ("matmul", [f32(3), f32(3)], {}, ()),
        ("add", [f32(4, 1, 3), f32(5, 1)], {}, (4, 5, 3)),
        ("div", [f32(), f32(2)], {}, (2,)),
        ("gelu", [f32(2, 3)], {"approximate": "tanh"}, (2, 3)),
        ("softmax", [f32(2, 3)], {"axis": 0}, (2, 3)),
        ("layernorm", [f32(2, 3), f32(3), f32(3)], {"eps": 1e-3}, (2, 3)),
        ("layernorm", [f32(2, 3), f32(2)], {"axis": 0}, (2, 3)),
        ("rmsnorm", [f32(2, 3), f32(3)], {}, (2, 3)),
        ("transpose", [f32(2, 3, 4)], {}, (4, 3, 2)),
        ("transpose", [f32(2, 3, 4)], {"perm": [1, 0, 2]}, (3, 2, 4)),
        ("reshape", [f32(2, 3, 4)], {"shape": [4, -1]}, (4, 6)),
        ("reshape", [f32(0, 3)], {"shape": [-1, 3]}, (0, 3)),
        ("concat", [f32(2, 3), f32(2, 1), f32(2, 2)], {"axis": -1}, (2, 6)),
        ("slice", [f32(10, 6, 2)], {"starts": [1, -3], "stops": [9, 100], "steps": [3, 1]}, (3, 3, 2)),
        ("slice", [f32(4, 5)], {"starts": [5], "stops": [9]}, (0, 5)),
        ("reduce_sum", [f32(2, 3, 4)], {"axes": [0, -1]}, (3,)),
        ("reduce_mean", [f32(2, 3, 4)], {"axes": [1], "keepdims": True}, (2, 1, 4)),
        ("reduce_max", [f32(2, 3)], {"axes": None}, ()),
        ("reduce_sum", [f32(2, 3)], {"axes": []}, (2, 3)),
    ],
)
def test_infer_op_shapes(kind, inputs, attrs, shape):
    res = infer_op(kind, inputs, attrs)
    assert res == TensorSpec("", "float32", shape)


def test_dtypes_are_canonical_and_cast_changes_them():
    assert infer_op("add", [T("", "bf16", (2,)), T("", "bfloat16", (2,))], {}).dtype == "bfloat16"
    assert infer_op("cast", [T("", "float32", (2,))], {"dtype": "fp8_e4m3"}) == T("", "float8_e4m3", (2,))
    assert infer_op("reduce_sum", [T("", "int8", (2, 2))], {}).dtype == "int8"
    assert infer_op("matmul", [T("", "int32", (2, 2)), T("", "int32", (2, 2))], {}).dtype == "int32"


@pytest.mark.parametrize(
    "kind, inputs, attrs, fragment",
    [
        ("matmul", [f32(2, 3), f32(4, 5)], {}, "matmul: inner dimensions differ: [2, 3] @ [4, 5]"),
        ("matmul", [f32(2, 2, 3), f32(3, 3, 5)], {}, "do not broadcast"),
        ("matmul", [f32(), f32(3)], {}, "rank >= 1"),
        ("matmul", [f32(2, 3)], {}, "matmul: takes 2 inputs, got 1"),
        ("add", [f32(2, 3), f32(4)], {}, "add: shapes [2, 3] and [4] do not broadcast"),
        ("add", [f32(2), T("", "bfloat16", (2,))], {}, "inputs differ in dtype"),
        ("exp", [T("", "int32", (2,))], {}, "exp: needs a float dtype, got int32"),
        ("div", [T("", "int8", (2,)), T("", "int8", (2,))], {}, "div: needs a float dtype"),
        ("relu", [f32(2)], {"alpha": 1}, "relu: unknown attrs ['alpha']"),
        ("gelu", [f32(2)], {"approximate": "fast"}, 'approximate must be "none" or "tanh"'),
        ("softmax", [f32(2, 3)], {"axis": 2}, "softmax: attr axis=2 is out of range for rank 2"),
        ("layernorm", [f32(2, 3), f32(2)], {}, "gamma has shape [2], expected [3]"),
        ("layernorm", [f32(2, 3)], {"eps": -1}, "eps must be a non-negative number"),
        ("rmsnorm", [f32(2, 3), f32(3), f32(3)], {}, "rmsnorm: takes 1 to 2 inputs, got 3"),
        ("transpose", [f32(2, 3)], {"perm": [0, 0]}, "perm [0, 0] is not a permutation of 0..1"),
        ("reshape", [f32(2, 3)], {"shape": [-1, -1]}, "may contain one -1"),
        ("reshape", [f32(2, 3)], {"shape": [4, 2]}, "cannot reshape [2, 3] (6 elements) to [4, 2]"),
        ("reshape", [f32(2, 3)], {}, "attr shape is required"),
        ("concat", [f32(2, 3), f32(3, 3)], {"axis": 1}, "differ off axis 1"),
        ("concat", [], {}, "takes at least 1 inputs, got 0"),
        ("slice", [f32(4)], {"starts": [0], "stops": [2], "steps": [0]}, "steps must be positive"),
        ("slice", [f32(4)], {"starts": [0, 0], "stops": [1, 1]}, "2 axes sliced but the input has rank 1"),
        ("slice", [f32(4)], {"starts": [0]}, "starts and stops are required"),
        ("reduce_sum", [f32(2, 3)], {"axes": [1, -1]}, "repeats an axis"),
        ("reduce_sum", [f32(2, 3)], {"axes": 1}, "axes must be a list of integers"),
        ("reduce_max", [f32(0, 3)], {"axes": [0]}, "empty axis"),
        ("reduce_mean", [f32(2)], {"keepdims": 1}, "keepdims must be true or false"),
        ("cast", [f32(2)], {"dtype": "float64"}, "unknown dtype 'float64'"),
        ("cast", [f32(2)], {}, "attr dtype must be a dtype name"),
        ("conv2d", [f32(2)], {}, "unknown op kind 'conv2d'; accepted: add, cast"),
    ],
)
def test_infer_op_errors_name_op_problem_and_form(kind, inputs, attrs, fragment):
    with pytest.raises(ValueError) as err:
        infer_op(kind, inputs, attrs)
    msg = str(err.value)
    assert fragment in msg
    if kind in OP_KINDS:
        assert msg.startswith(f"{kind}: ") and "accepted form:" in msg


dims = st.integers(min_value=0, max_value=4)
shapes = st.lists(dims, min_size=0, max_size=4).map(tuple)


def _numpy_shape(fn, *shapes_):
    try:
        return fn(*[np.zeros(s, np.float32) for s in shapes_]).shape
    except ValueError:
        return None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(a=shapes, b=shapes)
def test_broadcasting_matches_numpy(a, b):
    expected = _numpy_shape(np.add, a, b)
    if expected is None:
        with pytest.raises(ValueError, match="do not broadcast"):
            infer_op("mul", [f32(*a), f32(*b)], {})
    else:
        assert infer_op("mul", [f32(*a), f32(*b)], {}).shape == expected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(a=st.lists(dims, min_size=1, max_size=4).map(tuple), b=st.lists(dims, min_size=1, max_size=4).map(tuple))
def test_matmul_shapes_match_numpy(a, b):
    expected = _numpy_shape(np.matmul, a, b)
    if expected is None:
        with pytest.raises(ValueError, match="^matmul: "):
            infer_op("matmul", [f32(*a), f32(*b)], {})
    else:
        assert infer_op("matmul", [f32(*a), f32(*b)], {}).shape == expected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    bounds=st.lists(st.tuples(st.integers(-7, 7), st.integers(-7, 7), st.integers(1, 3)), min_size=1, max_size=3),
)
def test_slice_shape_matches_numpy_indexing(shape, bounds):
    bounds = bounds[: len(shape)]
    attrs = {"starts": [b[0] for b in bounds], "stops": [b[1] for b in bounds], "steps": [b[2] for b in bounds]}
    expected = np.zeros(shape)[tuple(slice(*b) for b in bounds)].shape
    assert infer_op("slice", [f32(*shape)], attrs).shape == expected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_reduce_and_reshape_shapes_match_numpy(shape, data):
    axes = data.draw(st.none() | st.sets(st.integers(0, len(shape) - 1)).map(sorted))
    keep = data.draw(st.booleans())
    expected = np.zeros(shape).sum(axis=None if axes is None else tuple(axes), keepdims=keep).shape
    assert infer_op("reduce_sum", [f32(*shape)], {"axes": axes, "keepdims": keep}).shape == expected
    hole = data.draw(st.integers(0, len(shape) - 1))
    target = list(shape)
    target[hole] = -1
    assert infer_op("reshape", [f32(*shape)], {"shape": target[::-1]}).shape == tuple(shape[::-1])


# ---- infer_graph ------------------------------------------------------------------------------------------------

def _graph(ops, *, sg_out=("y",), outputs=(T("y", "float32", (2, 4)),), weights=("w",), sg_in=("x",)):
    return Graph(
        inputs=(T("x", "float32", (2, 3)),),
        outputs=outputs,
        subgraphs=(Subgraph(sg_in, sg_out, tuple(ops)),),
        weight_names=weights,
    )


W = {"w": np.zeros((3, 4), np.float32)}


def test_infer_graph_returns_every_value():
    g = Graph(
        inputs=(T("x", "float32", (2, 3)),),
        outputs=(T("z", "bfloat16", (4, 2)),),
        subgraphs=(
            Subgraph(("x",), ("h",), (Op("matmul", ("x", "w"), "m"), Op("relu", ("m",), "h"))),
            Subgraph(("h",), ("z",), (Op("transpose", ("h",), "t"), Op("cast", ("t",), "z", {"dtype": "bf16"}))),
        ),
        weight_names=("w",),
    )
    specs = infer_graph(g, {"w": TensorSpec("w", "float32", (3, 4))})
    assert specs == {
        "x": T("x", "float32", (2, 3)), "w": T("w", "float32", (3, 4)), "m": T("m", "float32", (2, 4)),
        "h": T("h", "float32", (2, 4)), "t": T("t", "float32", (4, 2)), "z": T("z", "bfloat16", (4, 2)),
    }


@pytest.mark.parametrize(
    "graph, weights, fragment",
    [
        (_graph([Op("matmul", ("x", "v"), "y")]), W, "input 'v' is unknown"),
        (_graph([Op("conv", ("x", "w"), "y")]), W, "unknown op kind 'conv'"),
        (_graph([Op("matmul", ("x", "w"), "y", {"transpose_b": True})]), W, "unknown attrs ['transpose_b']"),
        (_graph([Op("matmul", ("x", "w"), "y")], sg_in=("x", "h")), W,
         "subgraph 0: input 'h' is not a graph input, a weight or an output of an earlier subgraph"),
        (_graph([Op("matmul", ("x", "w"), "y")], outputs=(T("y", "float16", (2, 4)),)), W,
         "graph output 'y' is declared float16[2, 4] but computes float32[2, 4]"),
        (_graph([Op("matmul", ("x", "w"), "y")], outputs=(T("y", "float32", (4, 2)),)), W,
         "declared float32[4, 2] but computes float32[2, 4]"),
        (_graph([Op("matmul", ("x", "w"), "y")]), {}, "weights ['w'] are named by the graph"),
        (_graph([Op("matmul", ("x", "w"), "y")]), {**W, "v": np.zeros(2, np.float32)}, "weights ['v'] are given"),
        (_graph([Op("matmul", ("x", "w"), "y")]), {"w": np.zeros((3, 4))}, "weight 'w': numpy dtype float64"),
        (_graph([Op("matmul", ("x", "w"), "y"), Op("relu", ("y",), "y")]), W, "output name 'y' is already defined"),
        (_graph([Op("matmul", ("x", "w"), "x")]), W, "output name 'x' is already defined"),
        (_graph([Op("matmul", ("x", "w"), "m")]), W, "subgraph 0: output 'y' is not produced"),
        (_graph([Op("matmul", ("x", "w"), "y")], sg_out=()), W, "graph output 'y' is not an output of any subgraph"),
        (_graph([Op("add", ("x", "w"), "y")]), W, "subgraph 0 op 0 ('y'): add: shapes [2, 3] and [3, 4]"),
    ],
)
def test_infer_graph_rejects_bad_graphs(graph, weights, fragment):
    with pytest.raises(ValueError) as err:
        infer_graph(graph, weights)
    assert fragment in str(err.value)


def test_later_subgraph_reads_only_earlier_outputs():
    first = Subgraph(("x",), ("a",), (Op("relu", ("b",), "a"),))
    second = Subgraph(("x",), ("b",), (Op("relu", ("x",), "b"),))
    g = Graph(inputs=(T("x", "float32", (2,)),), outputs=(T("a", "float32", (2,)),), subgraphs=(first, second))
    with pytest.raises(ValueError, match="subgraph 0 op 0 .*input 'b' is unknown"):
        infer_graph(g)


def test_graph_survives_json_round_trip_and_still_checks():
    g = _graph([Op("matmul", ("x", "w"), "m"), Op("reduce_sum", ("m",), "y", {"axes": None, "keepdims": False})],
               outputs=(T("y", "float32", ()),))
    again = Graph.from_json(g.to_json())
    assert infer_graph(again, W)["y"] == T("y", "float32", ())
