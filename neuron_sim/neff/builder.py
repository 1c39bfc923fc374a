"""A tracing API to describe a neuron_sim graph in Python and write it as a NEFF.

    b = NeffBuilder("mlp", target="v2")
    x = b.input("x", "float32", (1, 64))
    h = b.relu(x @ b.weight("w1", w1) + b.weight("b1", b1))
    b.output("y", h)
    data = b.build()            # or b.save("mlp.neff"); keyword args go to write_neff

Every op is checked when it is traced (``neuron_sim.compute.shapes.infer_op``), so a shape error names
the line that made it. ``b.next_core()`` starts the next subgraph: values used across the boundary
become outputs of the subgraph that made them and inputs of the one that uses them. Python scalars in
arithmetic become scalar weights (``const<N>``) of the other operand's dtype. An output that is not a
fresh op result (an input, a weight, or a value already output) is written through an identity reshape.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuron_sim.compute.graph import Declared, Graph, Op, Subgraph, TensorSpec
from neuron_sim.compute.shapes import infer_op
from neuron_sim.dtypes import dtype_name, numpy_dtype

_UNARY = ("relu", "gelu", "silu", "tanh", "sigmoid", "exp", "softmax", "transpose", "reshape", "slice",
          "reduce_sum", "reduce_mean", "reduce_max", "cast", "layernorm", "rmsnorm")
_BINARY = ("matmul", "add", "sub", "mul", "div")


@dataclass(eq=False)
class _Node:
    kind: str                     # "input" | "weight" | an op kind
    spec: TensorSpec
    core: int = 0
    inputs: tuple[int, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None       # fixed name (inputs, weights, outputs)


class Value:
    """A traced tensor: supports @ + - * / (and unary -) and every op kind as a method (``x.relu()``)."""

    __array_priority__ = 1000     # make numpy defer to our reflected operators

    def __init__(self, builder: "NeffBuilder", node_id: int) -> None:
        self.builder = builder
        self._id = node_id

    @property
    def dtype(self) -> str:
        return self.builder._nodes[self._id].spec.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.builder._nodes[self._id].spec.shape)

    def __repr__(self) -> str:
        return f"Value({self.builder._nodes[self._id].kind}, {self.dtype}{list(self.shape)})"

    def __matmul__(self, other: Any) -> "Value":
        return self.builder.matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Value":
        return self.builder.matmul(other, self)

    def __add__(self, other: Any) -> "Value":
        return self.builder.add(self, other)

    def __radd__(self, other: Any) -> "Value":
        return self.builder.add(other, self)

    def __sub__(self, other: Any) -> "Value":
        return self.builder.sub(self, other)

    def __rsub__(self, other: Any) -> "Value":
        return self.builder.sub(other, self)

    def __mul__(self, other: Any) -> "Value":
        return self.builder.mul(self, other)

    def __rmul__(self, other: Any) -> "Value":
        return self.builder.mul(other, self)

    def __truediv__(self, other: Any) -> "Value":
        return self.builder.div(self, other)

    def __rtruediv__(self, other: Any) -> "Value":
        return self.builder.div(other, self)

    def __neg__(self) -> "Value":
        return self.builder.sub(0, self)


def _method(kind: str) -> Callable[..., Value]:
    def call(self: Value, *args: Any, **kwargs: Any) -> Value:
        return getattr(self.builder, kind)(self, *args, **kwargs)
    call.__name__ = kind
    call.__doc__ = f"``builder.{kind}(self, ...)``"
    return call


for _kind in _UNARY + _BINARY + ("concat", "gather"):
    setattr(Value, _kind, _method(_kind))


class NeffBuilder:
    """Collects inputs, weights, ops and outputs per NeuronCore, then writes them with ``write_neff``."""

    def __init__(self, name: str, target: str = "v2") -> None:
        self.name = name
        self.target = target
        self._nodes: list[_Node] = []
        self._core = 0
        self._inputs: list[int] = []
        self._weights: dict[str, np.ndarray] = {}
        self._weight_ids: list[int] = []
        self._outputs: list[int] = []
        self._declared = Declared()
        self._taken: set[str] = set()
        self._consts = 0

    # ---- leaves ---------------------------------------------------------------------------------------
    def _claim(self, kind: str, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or "\0" in name:
            raise ValueError(f"{kind} name {name!r} must be a non-empty string without '/', '\\' or NUL")
        if name in self._taken:
            raise ValueError(f"{kind} name {name!r} is already used in this graph")
        self._taken.add(name)

    def _add(self, node: _Node) -> Value:
        self._nodes.append(node)
        return Value(self, len(self._nodes) - 1)

    def input(self, name: str, dtype: str, shape: Sequence[int]) -> Value:
        """A model input (nrt_get_model_tensor_info lists it in this order)."""
        try:
            canonical = dtype_name(dtype)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"input {name!r}: {exc}") from None
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise ValueError(f"input {name!r}: shape must be non-negative integers, got {list(shape)}")
        self._claim("input", name)
        v = self._add(_Node("input", TensorSpec(name, canonical, dims), core=self._core, name=name))
        self._inputs.append(v._id)
        return v

    def weight(self, name: str, array: Any) -> Value:
        """A constant tensor stored in the NEFF as ``sim/weights/<name>.npy``."""
        arr = np.asarray(array)
        try:
            canonical = dtype_name(arr.dtype)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"weight {name!r}: {exc}") from None
        self._claim("weight", name)
        self._weights[name] = arr
        v = self._add(_Node("weight", TensorSpec(name, canonical, tuple(arr.shape)), core=self._core, name=name))
        self._weight_ids.append(v._id)
        return v

    def constant(self, value: Any, dtype: str) -> Value:
        """A scalar/array weight named ``const<N>`` holding ``value`` in ``dtype``."""
        while f"const{self._consts}" in self._taken:
            self._consts += 1
        return self.weight(f"const{self._consts}", np.asarray(value, dtype=numpy_dtype(dtype)))

    # ---- ops ------------------------------------------------------------------------------------------
    def _value(self, x: Any, like: Value | None) -> Value:
        if isinstance(x, Value):
            if x.builder is not self:
                raise ValueError("a Value from another NeffBuilder cannot be used here")
            return x
        if like is not None and isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
            return self.constant(x, like.dtype)
        raise TypeError(f"expected a Value (or a Python number next to one), got {type(x).__name__}")

    def op(self, kind: str, *inputs: Any, **attrs: Any) -> Value:
        """Trace one op of any kind; ValueError from shape inference names the op and the accepted form."""
        like = next((x for x in inputs if isinstance(x, Value)), None)
        values = [self._value(x, like) for x in inputs]
        attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items() if v is not None}
        spec = infer_op(kind, [self._nodes[v._id].spec for v in values], attrs)
        return self._add(_Node(kind, spec, core=self._core, inputs=tuple(v._id for v in values), attrs=attrs))

    def matmul(self, a: Any, b: Any) -> Value:
        return self.op("matmul", a, b)

    def add(self, a: Any, b: Any) -> Value:
        return self.op("add", a, b)

    def sub(self, a: Any, b: Any) -> Value:
        return self.op("sub", a, b)

    def mul(self, a: Any, b: Any) -> Value:
        return self.op("mul", a, b)

    def div(self, a: Any, b: Any) -> Value:
        return self.op("div", a, b)

    def relu(self, x: Value) -> Value:
        return self.op("relu", x)

    def gelu(self, x: Value, approximate: str | None = None) -> Value:
        return self.op("gelu", x, approximate=approximate)

    def silu(self, x: Value) -> Value:
        return self.op("silu", x)

    def tanh(self, x: Value) -> Value:
        return self.op("tanh", x)

    def sigmoid(self, x: Value) -> Value:
        return self.op("sigmoid", x)

    def exp(self, x: Value) -> Value:
        return self.op("exp", x)

    def softmax(self, x: Value, axis: int | None = None) -> Value:
        return self.op("softmax", x, axis=axis)

    def layernorm(self, x: Value, gamma: Value | None = None, beta: Value | None = None, *,
                  axis: int | None = None, eps: float | None = None) -> Value:
        if beta is not None and gamma is None:
            raise ValueError("layernorm: beta needs gamma; accepted form: layernorm(x[, gamma[, beta]])")
        return self.op("layernorm", x, *(v for v in (gamma, beta) if v is not None), axis=axis, eps=eps)

    def rmsnorm(self, x: Value, gamma: Value | None = None, *, axis: int | None = None,
                eps: float | None = None) -> Value:
        return self.op("rmsnorm", x, *(() if gamma is None else (gamma,)), axis=axis, eps=eps)

    def transpose(self, x: Value, perm: Sequence[int] | None = None) -> Value:
        return self.op("transpose", x, perm=perm)

    def reshape(self, x: Value, shape: Sequence[int]) -> Value:
        return self.op("reshape", x, shape=shape)

    def concat(self, values: Sequence[Value] | Value, *more: Value, axis: int | None = None) -> Value:
        items = list(values) if isinstance(values, (list, tuple)) else [values]
        return self.op("concat", *items, *more, axis=axis)

    def slice(self, x: Value, starts: Sequence[int], stops: Sequence[int], steps: Sequence[int] | None = None) -> Value:
        return self.op("slice", x, starts=starts, stops=stops, steps=steps)

    def reduce_sum(self, x: Value, axes: Sequence[int] | None = None, keepdims: bool = False) -> Value:
        return self.op("reduce_sum", x, axes=axes, keepdims=keepdims)

    def reduce_mean(self, x: Value, axes: Sequence[int] | None = None, keepdims: bool = False) -> Value:
        return self.op("reduce_mean", x, axes=axes, keepdims=keepdims)

    def reduce_max(self, x: Value, axes: Sequence[int] | None = None, keepdims: bool = False) -> Value:
        return self.op("reduce_max", x, axes=axes, keepdims=keepdims)

    def gather(self, data: Value, indices: Value, axis: int | None = None) -> Value:
        """Indirect load ``take(data, indices, axis)``; an index outside the axis faults with NRT_EXEC_OOB."""
        return self.op("gather", data, indices, axis=axis)

    def cast(self, x: Value, dtype: str) -> Value:
        return self.op("cast", x, dtype=dtype_name(dtype))

    # ---- structure ------------------------------------------------------------------------------------
    def next_core(self) -> None:
        """Start the next subgraph (the next NeuronCore of a pipelined NEFF)."""
        if not any(n.core == self._core and n.kind not in ("input", "weight") for n in self._nodes):
            raise ValueError(f"core {self._core} has no ops yet; trace at least one op before next_core()")
        self._core += 1

    def output(self, name: str, value: Value) -> None:
        """Name ``value`` as a model output (in call order)."""
        v = self._value(value, None)
        node = self._nodes[v._id]
        if node.name is not None:      # input, weight or an existing output: copy it through an identity op
            v = self.reshape(v, list(node.spec.shape))
            node = self._nodes[v._id]
        self._claim("output", name)
        node.name = name
        self._outputs.append(v._id)

    def declare(self, *, constants_bytes: int | None = None, scratchpad_bytes: int | None = None,
                output_buffer_bytes: int | None = None, duration_s: float | None = None) -> None:
        """Set the simulated sizes/duration the NEFF declares (graph.declared); omitted ones stay as they are."""
        d = self._declared
        for key, val in (("constants_bytes", constants_bytes), ("scratchpad_bytes", scratchpad_bytes),
                         ("output_buffer_bytes", output_buffer_bytes)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 0):
                raise ValueError(f"declare: {key} must be a non-negative integer, got {val!r}")
        if duration_s is not None and (isinstance(duration_s, bool) or not duration_s >= 0):
            raise ValueError(f"declare: duration_s must be a non-negative number, got {duration_s!r}")
        self._declared = Declared(
            constants_bytes=d.constants_bytes if constants_bytes is None else constants_bytes,
            scratchpad_bytes=d.scratchpad_bytes if scratchpad_bytes is None else scratchpad_bytes,
            output_buffer_bytes=d.output_buffer_bytes if output_buffer_bytes is None else output_buffer_bytes,
            duration_s=d.duration_s if duration_s is None else float(duration_s),
        )

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return dict(self._weights)

    def graph(self) -> Graph:
        """The traced Graph (one Subgraph per core)."""
        if not self._outputs:
            raise ValueError(f"NEFF {self.name!r} has no outputs; call output(name, value)")
        names: dict[int, str] = {}
        counter = 0
        for i, node in enumerate(self._nodes):
            if node.name is not None:
                names[i] = node.name
            elif node.kind not in ("input", "weight"):
                while f"{node.kind}_{counter}" in self._taken:
                    counter += 1
                names[i] = f"{node.kind}_{counter}"
                counter += 1
        cores = self._core + 1
        sg_inputs: list[list[str]] = [[] for _ in range(cores)]
        sg_outputs: list[list[str]] = [[] for _ in range(cores)]
        sg_ops: list[list[Op]] = [[] for _ in range(cores)]
        for i, node in enumerate(self._nodes):
            if node.kind in ("input", "weight"):
                continue
            for src in node.inputs:
                s = self._nodes[src]
                crosses = s.kind == "input" or (s.kind != "weight" and s.core != node.core)
                if crosses and names[src] not in sg_inputs[node.core]:
                    sg_inputs[node.core].append(names[src])
                if s.kind not in ("input", "weight") and s.core != node.core and names[src] not in sg_outputs[s.core]:
                    sg_outputs[s.core].append(names[src])
            sg_ops[node.core].append(Op(node.kind, tuple(names[s] for s in node.inputs), names[i], dict(node.attrs)))
        for oid in self._outputs:
            node = self._nodes[oid]
            if names[oid] not in sg_outputs[node.core]:
                sg_outputs[node.core].append(names[oid])
        return Graph(
            inputs=tuple(self._nodes[i].spec for i in self._inputs),
            outputs=tuple(TensorSpec(names[i], self._nodes[i].spec.dtype, tuple(self._nodes[i].spec.shape))
                          for i in self._outputs),
            subgraphs=tuple(Subgraph(tuple(sg_inputs[c]), tuple(sg_outputs[c]), tuple(sg_ops[c])) for c in range(cores)),
            weight_names=tuple(self._weights),
            declared=self._declared,
        )

    def build(self, **kw: Any) -> bytes:
        """The NEFF bytes; keyword args go to ``write_neff`` (target defaults to the builder's)."""
        from neuron_sim.neff.writer import write_neff
        kw.setdefault("target", self.target)
        kw.setdefault("name", self.name)
        return write_neff(self.graph(), self._weights, **kw)

    def save(self, path: str | os.PathLike, **kw: Any) -> str:
        """Write ``build(**kw)`` to ``path``; returns the path."""
        data = self.build(**kw)
        with open(path, "wb") as fh:
            fh.write(data)
        return os.fspath(path)


def trace(fn: Callable[..., Any], inputs: Mapping[str, tuple[str, Sequence[int]]], *, name: str | None = None,
          target: str = "v2") -> NeffBuilder:
    """Trace ``fn(*values)`` over Values for ``inputs`` (name -> (dtype, shape)). ``fn`` returns a Value
    (output "output0"), a tuple/list of Values ("output0", "output1", ...) or a dict name -> Value; it may
    add weights through ``value.builder.weight(...)``."""
    b = NeffBuilder(name or getattr(fn, "__name__", "model"), target=target)
    values = [b.input(n, dtype, shape) for n, (dtype, shape) in inputs.items()]
    try:
        inspect.signature(fn).bind(*values)
    except TypeError as exc:
        raise ValueError(f"{getattr(fn, '__name__', fn)!s} cannot take the {len(values)} inputs "
                         f"{list(inputs)}: {exc}") from None
    result = fn(*values)
    if isinstance(result, Value):
        outs = {"output0": result}
    elif isinstance(result, (tuple, list)):
        outs = {f"output{i}": r for i, r in enumerate(result)}
    elif isinstance(result, Mapping):
        outs = dict(result)
    else:
        raise ValueError(f"traced function must return a Value, a tuple of Values or a dict; got {type(result).__name__}")
    for n, v in outs.items():
        if not isinstance(v, Value):
            raise ValueError(f"traced output {n!r} is {type(v).__name__}, not a Value")
        b.output(n, v)
    return b


def from_function(fn: Callable[..., Any], inputs: Mapping[str, tuple[str, Sequence[int]]], *,
                  name: str | None = None, target: str = "v2", **kw: Any) -> bytes:
    """NEFF bytes of a traced Python function (see ``trace``); ``kw`` goes to ``write_neff``."""
    return trace(fn, inputs, name=name, target=target).build(**kw)
