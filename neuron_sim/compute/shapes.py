"""Shape and dtype inference for the graph op set, and the well-formedness check of a whole Graph.

The op kinds and their attrs are the contract between the NEFF builder, the interpreter and the cost model.
Decisions where the Neuron documentation is silent:
- binary ops, matmul, concat and the gamma/beta of norms require inputs of one dtype (no implicit promotion; use
  ``cast``); the result has that dtype.
- ops that need real numbers (div, gelu, silu, tanh, sigmoid, exp, softmax, layernorm, rmsnorm, reduce_mean) accept
  float dtypes only; integer arithmetic (add, sub, mul, matmul, reduce_sum) wraps modulo 2**bits as numpy does.
- slice steps must be positive; starts/stops follow Python slice rules (negative counts from the end, clamped).
- ``infer_graph`` needs the weights' dtypes and shapes (a Graph names its weights but does not describe them):
  pass the arrays or TensorSpecs as ``weights``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neuron_sim.compute.graph import Graph, TensorSpec
from neuron_sim.dtypes import dtype_name, numpy_dtype

FLOAT_ONLY = frozenset(
    {"div", "gelu", "silu", "tanh", "sigmoid", "exp", "softmax", "layernorm", "rmsnorm", "reduce_mean"}
)
BINARY = frozenset({"add", "sub", "mul", "div"})
UNARY = frozenset({"relu", "gelu", "silu", "tanh", "sigmoid", "exp"})
REDUCE = frozenset({"reduce_sum", "reduce_mean", "reduce_max"})

# kind -> (min inputs, max inputs or None for any, accepted attrs)
_SIGNATURES: dict[str, tuple[int, int | None, frozenset[str]]] = {
    "matmul": (2, 2, frozenset()),
    **{k: (2, 2, frozenset()) for k in BINARY},
    **{k: (1, 1, frozenset()) for k in UNARY - {"gelu"}},
    "gelu": (1, 1, frozenset({"approximate"})),
    "softmax": (1, 1, frozenset({"axis"})),
    "layernorm": (1, 3, frozenset({"axis", "eps"})),
    "rmsnorm": (1, 2, frozenset({"axis", "eps"})),
    "transpose": (1, 1, frozenset({"perm"})),
    "reshape": (1, 1, frozenset({"shape"})),
    "concat": (1, None, frozenset({"axis"})),
    "slice": (1, 1, frozenset({"starts", "stops", "steps"})),
    **{k: (1, 1, frozenset({"axes", "keepdims"})) for k in REDUCE},
    "cast": (1, 1, frozenset({"dtype"})),
    "gather": (2, 2, frozenset({"axis"})),
}

OP_KINDS: frozenset[str] = frozenset(_SIGNATURES)

_FORMS: dict[str, str] = {
    "matmul": "matmul(a, b) with numpy matmul shapes [..., M, K] @ [..., K, N]",
    "gelu": 'gelu(x; approximate="none"|"tanh")',
    "softmax": "softmax(x; axis=-1)",
    "layernorm": "layernorm(x[, gamma[, beta]]; axis=-1, eps=1e-5) with gamma/beta of shape [x.shape[axis]]",
    "rmsnorm": "rmsnorm(x[, gamma]; axis=-1, eps=1e-6) with gamma of shape [x.shape[axis]]",
    "transpose": "transpose(x; perm=[a permutation of 0..ndim-1], default reversed axes)",
    "reshape": "reshape(x; shape=[ints, at most one -1] with the same element count)",
    "concat": "concat(x1, ..., xn; axis=0) with equal ranks and equal sizes off the axis",
    "slice": "slice(x; starts=[ints], stops=[ints], steps=[positive ints]) over the leading axes",
    "cast": "cast(x; dtype=<neuron_sim dtype name>)",
    "gather": "gather(data, indices; axis=0) with integer indices in [0, data.shape[axis])",
}
for _k in BINARY:
    _FORMS[_k] = f"{_k}(a, b) with numpy-broadcastable shapes"
for _k in UNARY - {"gelu"}:
    _FORMS[_k] = f"{_k}(x)"
for _k in REDUCE:
    _FORMS[_k] = f"{_k}(x; axes=[ints] or null for all, keepdims=false)"


def _fail(kind: str, problem: str) -> ValueError:
    return ValueError(f"{kind}: {problem}; accepted form: {_FORMS[kind]}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_list(kind: str, name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise _fail(kind, f"attr {name} must be a list of integers, got {value!r}")
    return [int(v) for v in value]


def _axis(kind: str, name: str, value: Any, ndim: int) -> int:
    if not _is_int(value):
        raise _fail(kind, f"attr {name} must be an integer, got {value!r}")
    if not -ndim <= int(value) < ndim:
        raise _fail(kind, f"attr {name}={value} is out of range for rank {ndim}")
    return int(value) % ndim


def _is_float(dtype: str) -> bool:
    return np.issubdtype(numpy_dtype(dtype), np.floating) or dtype in (
        "bfloat16", "float8_e3m4", "float8_e4m3", "float8_e5m2")


def normalize_axes(kind: str, axes: Any, ndim: int) -> tuple[int, ...]:
    """The reduce axes as sorted non-negative ints (all axes when ``axes`` is None); ValueError on bad axes."""
    if axes is None:
        return tuple(range(ndim))
    out = sorted(_axis(kind, "axes", a, ndim) for a in _int_list(kind, "axes", axes))
    if len(set(out)) != len(out):
        raise _fail(kind, f"attr axes={axes!r} repeats an axis")
    return tuple(out)


def broadcast_shapes(kind: str, a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy broadcasting of two shapes; ValueError naming both shapes when they do not broadcast."""
    if a == b:
        return tuple(a)
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x != y and x != 1 and y != 1:
            raise _fail(kind, f"shapes {list(a)} and {list(b)} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def slice_bounds(kind: str, shape: Sequence[int], attrs: Mapping[str, Any]) -> tuple[slice, ...]:
    """The validated Python slices of a slice op (one per leading axis)."""
    if "starts" not in attrs or "stops" not in attrs:
        raise _fail(kind, "attrs starts and stops are required")
    starts = _int_list(kind, "starts", attrs["starts"])
    stops = _int_list(kind, "stops", attrs["stops"])
    steps_attr = attrs.get("steps")
    steps = [1] * len(starts) if steps_attr is None else _int_list(kind, "steps", steps_attr)
    if not len(starts) == len(stops) == len(steps):
        raise _fail(kind, f"starts, stops and steps differ in length ({len(starts)}, {len(stops)}, {len(steps)})")
    if len(starts) > len(shape):
        raise _fail(kind, f"{len(starts)} axes sliced but the input has rank {len(shape)}")
    if any(s < 1 for s in steps):
        raise _fail(kind, f"steps must be positive, got {steps}")
    return tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))


def reshape_target(kind: str, shape: Sequence[int], attr: Any) -> tuple[int, ...]:
    """The concrete target shape of a reshape (resolving one -1)."""
    target = _int_list(kind, "shape", attr)
    size = math.prod(shape)
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise _fail(kind, f"shape {target} may contain one -1 and otherwise non-negative sizes")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if known == 0 or size % known:
            raise _fail(kind, f"cannot reshape {list(shape)} ({size} elements) to {target}")
        target[target.index(-1)] = size // known
    if math.prod(target) != size:
        raise _fail(kind, f"cannot reshape {list(shape)} ({size} elements) to {target}")
    return tuple(target)


def _canonical_dtype(kind: str, dtype: str) -> str:
    try:
        return dtype_name(dtype)
    except (ValueError, KeyError) as exc:
        raise _fail(kind, str(exc)) from None


def infer_op(kind: str, inputs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """Result dtype and shape of ``kind(*inputs, **attrs)`` (name "").

    ValueError names the op, the problem and the accepted form.
    """
    _check_signature(kind, len(inputs), attrs)
    dtypes = [_canonical_dtype(kind, s.dtype) for s in inputs]
    shapes = [s.shape if type(s.shape) is tuple and all(type(d) is int for d in s.shape)
              else tuple(int(d) for d in s.shape) for s in inputs]
    return _infer(kind, dtypes, shapes, attrs, "")


def _check_signature(kind: str, n: int, attrs: Mapping[str, Any]) -> None:
    """The op kind is known, takes ``n`` inputs and these attrs."""
    sig = _SIGNATURES.get(kind)
    if sig is None:
        raise ValueError(f"unknown op kind {kind!r}; accepted: {', '.join(sorted(OP_KINDS))}")
    lo, hi, accepted = sig
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else (f"{lo} to {hi}" if hi is not None else f"at least {lo}")
        raise _fail(kind, f"takes {want} inputs, got {n}")
    if type(attrs) is not dict and not isinstance(attrs, Mapping):
        raise _fail(kind, f"attrs must be a mapping, got {type(attrs).__name__}")
    if attrs and not accepted.issuperset(attrs):
        unknown = sorted(set(attrs) - accepted)
        raise _fail(kind, f"unknown attrs {unknown} (accepted: {sorted(accepted) or 'none'})")


def _infer(kind: str, dtypes: list[str], shapes: list[tuple[int, ...]], attrs: Mapping[str, Any],
           name: str) -> TensorSpec:
    """infer_op after its signature check, on canonical dtype names and int-tuple shapes; the result is ``name``."""
    dtype, shape = dtypes[0], shapes[0]
    if kind == "gather":
        if not shape:
            raise _fail(kind, "data must have rank >= 1")
        if _is_float(dtypes[1]):
            raise _fail(kind, f"indices must be integers, got {dtypes[1]}")
        ax = _axis(kind, "axis", attrs.get("axis", 0), len(shape))
        return TensorSpec(name, dtype, shape[:ax] + shapes[1] + shape[ax + 1:])
    if kind != "cast" and len(set(dtypes)) > 1:
        raise _fail(kind, f"inputs differ in dtype {dtypes} (cast explicitly)")
    if kind in FLOAT_ONLY and not _is_float(dtype):
        raise _fail(kind, f"needs a float dtype, got {dtype}")
    ndim = len(shape)

    if kind == "matmul":
        a, b = shapes
        if not a or not b:
            raise _fail(kind, f"operands must have rank >= 1, got {list(a)} @ {list(b)}")
        a2 = (1,) + a if len(a) == 1 else a
        b2 = b + (1,) if len(b) == 1 else b
        if a2[-1] != b2[-2]:
            raise _fail(kind, f"inner dimensions differ: {list(a)} @ {list(b)}")
        batch = broadcast_shapes(kind, a2[:-2], b2[:-2])
        out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
        return TensorSpec(name, dtype, out)
    if kind in BINARY:
        return TensorSpec(name, dtype, broadcast_shapes(kind, shapes[0], shapes[1]))
    if kind in UNARY:
        if kind == "gelu" and attrs.get("approximate", "none") not in ("none", "tanh"):
            raise _fail(kind, f"attr approximate must be \"none\" or \"tanh\", got {attrs['approximate']!r}")
        return TensorSpec(name, dtype, shape)
    if kind == "softmax":
        if ndim == 0:
            raise _fail(kind, "input must have rank >= 1")
        _axis(kind, "axis", attrs.get("axis", -1), ndim)
        return TensorSpec(name, dtype, shape)
    if kind in ("layernorm", "rmsnorm"):
        if ndim == 0:
            raise _fail(kind, "input must have rank >= 1")
        ax = _axis(kind, "axis", attrs.get("axis", -1), ndim)
        eps = attrs.get("eps", 1e-5)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise _fail(kind, f"attr eps must be a non-negative number, got {eps!r}")
        for i, s in enumerate(shapes[1:], start=1):
            if s != (shape[ax],):
                role = "gamma" if i == 1 else "beta"
                raise _fail(kind, f"{role} has shape {list(s)}, expected [{shape[ax]}]")
        return TensorSpec(name, dtype, shape)
    if kind == "transpose":
        perm = attrs.get("perm")
        if perm is None:
            return TensorSpec(name, dtype, shape[::-1])
        p = _int_list(kind, "perm", perm)
        if sorted(p) != list(range(ndim)):
            raise _fail(kind, f"perm {p} is not a permutation of 0..{ndim - 1}")
        return TensorSpec(name, dtype, tuple(shape[i] for i in p))
    if kind == "reshape":
        if "shape" not in attrs:
            raise _fail(kind, "attr shape is required")
        return TensorSpec(name, dtype, reshape_target(kind, shape, attrs["shape"]))
    if kind == "concat":
        if ndim == 0:
            raise _fail(kind, "inputs must have rank >= 1")
        ax = _axis(kind, "axis", attrs.get("axis", 0), ndim)
        for s in shapes[1:]:
            if len(s) != ndim or s[:ax] + s[ax + 1:] != shape[:ax] + shape[ax + 1:]:
                raise _fail(kind, f"shapes {[list(x) for x in shapes]} differ off axis {ax}")
        return TensorSpec(name, dtype, shape[:ax] + (sum(s[ax] for s in shapes),) + shape[ax + 1:])
    if kind == "slice":
        sl = slice_bounds(kind, shape, attrs)
        out = tuple(len(range(*s.indices(d))) for s, d in zip(sl, shape)) + shape[len(sl):]
        return TensorSpec(name, dtype, out)
    if kind in REDUCE:
        axes = normalize_axes(kind, attrs.get("axes"), ndim)
        keep = attrs.get("keepdims", False)
        if not isinstance(keep, bool):
            raise _fail(kind, f"attr keepdims must be true or false, got {keep!r}")
        if kind == "reduce_max" and any(shape[a] == 0 for a in axes):
            raise _fail(kind, f"cannot take the max over an empty axis of shape {list(shape)}")
        if keep:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return TensorSpec(name, dtype, out)
    # cast
    if "dtype" not in attrs or not isinstance(attrs["dtype"], str):
        raise _fail(kind, f"attr dtype must be a dtype name, got {attrs.get('dtype')!r}")
    return TensorSpec(name, _canonical_dtype(kind, attrs["dtype"]), shape)


def _spec_of(name: str, value: Any, where: str) -> TensorSpec:
    if isinstance(value, TensorSpec):
        dtype, shape = value.dtype, value.shape
    elif hasattr(value, "dtype") and hasattr(value, "shape"):
        dtype, shape = value.dtype, value.shape
    else:
        raise ValueError(f"{where} {name!r}: expected a numpy array or TensorSpec, got {type(value).__name__}")
    try:
        canonical = dtype_name(dtype)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{where} {name!r}: {exc}") from None
    if type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape):   # the usual form: one pass
        if type(value) is TensorSpec and value.name == name and type(dtype) is str and dtype == canonical:
            return value            # already in canonical form (frozen: safe to share)
        return TensorSpec(name, canonical, shape)
    if not all(_is_int(d) and int(d) >= 0 for d in shape):
        raise ValueError(f"{where} {name!r}: shape must be non-negative integers, got {list(shape)}")
    return TensorSpec(name, canonical, tuple(int(d) for d in shape))


def infer_graph(graph: Graph, weights: Mapping[str, Any] | None = None) -> dict[str, TensorSpec]:
    """Spec of every value of every subgraph (inputs, weights, op results), checking the graph is well formed.

    ``weights`` maps each of ``graph.weight_names`` to its array or TensorSpec. ValueError names the first problem.
    """
    specs: dict[str, TensorSpec] = {}
    for s in graph.inputs:
        if s.name in specs:
            raise ValueError(f"graph input {s.name!r} is declared twice")
        specs[s.name] = _spec_of(s.name, s, "graph input")
    weights = weights or {}
    if len(set(graph.weight_names)) != len(graph.weight_names):
        raise ValueError(f"weight names repeat: {list(graph.weight_names)}")
    missing = [w for w in graph.weight_names if w not in weights]
    if missing:
        raise ValueError(f"weights {missing} are named by the graph but their arrays/specs were not given")
    extra = sorted(set(weights) - set(graph.weight_names))
    if extra:
        raise ValueError(f"weights {extra} are given but not named in the graph's weight_names")
    for w in graph.weight_names:
        if w in specs:
            raise ValueError(f"weight {w!r} has the same name as a graph input")
        specs[w] = _spec_of(w, weights[w], "weight")
    if not graph.subgraphs:
        raise ValueError("graph has no subgraphs")

    produced: set[str] = set()     # outputs of earlier subgraphs
    for i, sg in enumerate(graph.subgraphs):
        where = f"subgraph {i}"
        visible = {s.name for s in graph.inputs} | set(graph.weight_names)
        for name in sg.inputs:
            if name not in visible and name not in produced:
                raise ValueError(
                    f"{where}: input {name!r} is not a graph input, a weight or an output of an earlier subgraph")
        visible |= set(sg.inputs)
        for j, op in enumerate(sg.ops):
            for name in op.inputs:
                if name not in visible:
                    raise ValueError(
                        f"{where} op {j} ({op.kind} -> {op.output!r}): input {name!r} is unknown "
                        "(not a graph input, weight, subgraph input or earlier op output)")
            if op.output in specs:
                raise ValueError(f"{where} op {j} ({op.kind}): output name {op.output!r} is already defined")
            try:     # specs hold canonical dtypes and int shapes already: no second normalisation
                _check_signature(op.kind, len(op.inputs), op.attrs)
                ins = [specs[n] for n in op.inputs]
                specs[op.output] = _infer(op.kind, [s.dtype for s in ins], [s.shape for s in ins], op.attrs, op.output)
            except ValueError as exc:
                raise ValueError(f"{where} op {j} ({op.output!r}): {exc}") from None
            visible.add(op.output)
        for name in sg.outputs:
            if name not in visible:
                raise ValueError(f"{where}: output {name!r} is not produced in this subgraph")
        produced |= set(sg.outputs)
    for s in graph.outputs:
        if s.name not in produced:
            raise ValueError(f"graph output {s.name!r} is not an output of any subgraph")
        declared = _spec_of(s.name, s, "graph output")
        got = specs[s.name]
        if (declared.dtype, declared.shape) != (got.dtype, got.shape):
            raise ValueError(
                f"graph output {s.name!r} is declared {declared.dtype}{list(declared.shape)} "
                f"but computes {got.dtype}{list(got.shape)}")
    return specs
