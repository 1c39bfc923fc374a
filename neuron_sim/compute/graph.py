"""The executable graph a neuron_sim NEFF carries: subgraphs (one per NeuronCore) of named ops over numpy arrays.

Serialised by the NEFF writer as ``sim/graph.json`` plus one ``sim/weights/<name>.npy`` per weight.
A value name refers to a graph input, a weight, or the output of an earlier op of the same subgraph.
Subgraph i+1 takes its inputs by name from the outputs of subgraphs 0..i and the model inputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

GRAPH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype name (see neuron_sim.dtypes) and shape of a graph input or output."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Op:
    """One operation: ``output = kind(*inputs, **attrs)``."""

    kind: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Subgraph:
    """The part of a model that runs on one NeuronCore."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Declared:
    """Simulated sizes a NEFF declares without storing data (for memory and timing scenarios)."""

    constants_bytes: int = 0        # extra model constants (weights) in device memory
    scratchpad_bytes: int = 0       # shared scratchpad need
    output_buffer_bytes: int = 0    # device output staging per in-flight request (async), beyond IO sizes
    duration_s: float | None = None  # overrides the cost model's simulated duration


@dataclass(frozen=True)
class Graph:
    """The whole executable model: inputs, outputs, subgraphs and weight names (arrays live beside it)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    subgraphs: tuple[Subgraph, ...]
    weight_names: tuple[str, ...] = ()
    declared: Declared = Declared()

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": GRAPH_FORMAT_VERSION,
                "inputs": [_spec_json(s) for s in self.inputs],
                "outputs": [_spec_json(s) for s in self.outputs],
                "weights": list(self.weight_names),
                "declared": {
                    "constants_bytes": self.declared.constants_bytes,
                    "scratchpad_bytes": self.declared.scratchpad_bytes,
                    "output_buffer_bytes": self.declared.output_buffer_bytes,
                    "duration_s": self.declared.duration_s,
                },
                "subgraphs": [
                    {
                        "inputs": list(sg.inputs),
                        "outputs": list(sg.outputs),
                        "ops": [
                            {"kind": op.kind, "inputs": list(op.inputs), "output": op.output, "attrs": op.attrs}
                            for op in sg.ops
                        ],
                    }
                    for sg in self.subgraphs
                ],
            },
            sort_keys=True,
            indent=1,
        )

    @staticmethod
    def from_json(text: str | bytes) -> "Graph":
        """Parse ``sim/graph.json``; raises ValueError naming the malformed field."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"sim/graph.json is not valid JSON: {exc}") from None
        try:
            if not isinstance(doc, dict):
                raise ValueError("top level must be an object")
            if doc.get("format") != GRAPH_FORMAT_VERSION:
                raise ValueError(f"format must be {GRAPH_FORMAT_VERSION}, got {doc.get('format')!r}")
            dec = doc.get("declared") or {}
            duration = dec.get("duration_s")
            declared = Declared(
                constants_bytes=_nonneg_int(dec.get("constants_bytes", 0), "declared.constants_bytes"),
                scratchpad_bytes=_nonneg_int(dec.get("scratchpad_bytes", 0), "declared.scratchpad_bytes"),
                output_buffer_bytes=_nonneg_int(dec.get("output_buffer_bytes", 0), "declared.output_buffer_bytes"),
                duration_s=None if duration is None else _duration(duration),
            )
            subgraphs = []
            for i, sg in enumerate(doc["subgraphs"]):
                ops = []
                for op in sg["ops"]:
                    kind = op["kind"]
                    if type(kind) is not str:
                        _str(kind, "subgraphs[{}].ops.kind", i)
                    inputs = _strs(op["inputs"], "subgraphs[{}].ops.inputs", i)
                    output = op["output"]
                    if type(output) is not str:
                        _str(output, "subgraphs[{}].ops.output", i)
                    ops.append(Op(kind, inputs, output, dict(op.get("attrs") or {})))
                subgraphs.append(Subgraph(_strs(sg["inputs"], "subgraphs[{}].inputs", i),
                                          _strs(sg["outputs"], "subgraphs[{}].outputs", i), tuple(ops)))
            if not subgraphs:
                raise ValueError("subgraphs must not be empty")
            return Graph(
                inputs=tuple([_spec_from(s, "inputs") for s in doc["inputs"]]),
                outputs=tuple([_spec_from(s, "outputs") for s in doc["outputs"]]),
                subgraphs=tuple(subgraphs),
                weight_names=_strs(doc.get("weights", []), "weights"),
                declared=declared,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"sim/graph.json is malformed: missing or wrong field {exc}") from None


def _spec_json(s: TensorSpec) -> dict[str, Any]:
    return {"name": s.name, "dtype": s.dtype, "shape": list(s.shape)}


def _spec_from(obj: Any, where: str) -> TensorSpec:
    shape = tuple(obj["shape"])
    if not all(type(d) is int and d >= 0 for d in shape):      # one pass for the common case
        shape = tuple(_nonneg_int(d, f"{where}.shape") for d in shape)
    return TensorSpec(_str(obj["name"], f"{where}.name"), _str(obj["dtype"], f"{where}.dtype"), shape)


def _str(v: Any, where: str, index: int = 0) -> str:
    """``v`` when it is a string; ``where`` names the field in the error (``{}`` stands for ``index``)."""
    if not isinstance(v, str):
        raise ValueError(f"sim/graph.json: {where.format(index)} must be a string, got {type(v).__name__}")
    return v


def _strs(values: Any, where: str, index: int = 0) -> tuple[str, ...]:
    """A list of strings as a tuple (one check for the common case); ValueError names the field otherwise."""
    out = tuple(values)
    if not all(type(v) is str for v in out):
        for v in out:
            _str(v, where, index)
    return out


def _duration(v: Any) -> float:
    """declared.duration_s: a finite, non-negative number of simulated seconds."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
        raise ValueError(f"sim/graph.json: declared.duration_s must be a finite non-negative number of seconds, "
                         f"got {v!r}")
    return float(v)


def _nonneg_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"sim/graph.json: {where} must be a non-negative integer, got {v!r}")
    return v
