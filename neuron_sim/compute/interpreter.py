"""Executes a validated Graph with numpy: ops are prepared once into closures over slot indices and scratch buffers.

Each subgraph is compiled to a list of steps ``step(slots)`` that read and write a flat list of values. Op results
live in scratch buffers allocated once per thread (``threading.local``), so concurrent ``run`` calls on one
CompiledGraph from several threads are safe; a buffer is reused by a later op of the same subgraph once every value
that reads it (including views made by transpose/reshape/slice) is dead. Subgraph outputs keep their own buffers.
Values that ``run_subgraph`` leaves in ``env`` may alias this thread's scratch buffers and stay valid until the same
thread runs that subgraph again; ``run`` always returns fresh arrays or copies into the caller's arrays.
Floating-point exceptions (overflow, division by zero) never warn: results follow IEEE (inf/NaN) as on the engines.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuron_sim.compute.graph import Graph, Subgraph, TensorSpec
from neuron_sim.compute.ops import Kernel, make_kernel
from neuron_sim.compute.shapes import infer_graph
from neuron_sim.dtypes import numpy_dtype

Step = Callable[[list], None]


@dataclass(frozen=True)
class _OpPlan:
    kernel: Kernel
    in_slots: tuple[int, ...]
    out_slot: int
    buffer: int | None          # scratch buffer index, None when the kernel needs none


@dataclass(frozen=True)
class _SubgraphPlan:
    names: tuple[str, ...]                       # slot -> value name
    external: tuple[tuple[str, int], ...]        # (name, slot) read from env (inputs and earlier outputs)
    weights: tuple[tuple[int, np.ndarray], ...]  # (slot, array) preloaded
    ops: tuple[_OpPlan, ...]
    buffers: tuple[tuple[tuple[int, ...], np.dtype], ...]
    outputs: tuple[tuple[str, int], ...]


def _plan_subgraph(sg: Subgraph, specs: Mapping[str, TensorSpec], weights: Mapping[str, np.ndarray]) -> _SubgraphPlan:
    slots: dict[str, int] = {}
    produced = {op.output for op in sg.ops}
    external: list[tuple[str, int]] = []
    wslots: list[tuple[int, np.ndarray]] = []

    def slot(name: str) -> int:
        if name not in slots:
            slots[name] = len(slots)
            if name in weights:
                wslots.append((slots[name], weights[name]))
            elif name not in produced:
                external.append((name, slots[name]))
        return slots[name]

    for name in sg.inputs:
        slot(name)
    for op in sg.ops:
        for name in op.inputs:
            slot(name)
        slot(op.output)
    for name in sg.outputs:
        slot(name)

    # Liveness: the last op index reading each value; subgraph outputs live to the end.
    end = len(sg.ops)
    last_use: dict[str, int] = {}
    for i, op in enumerate(sg.ops):
        for name in op.inputs:
            last_use[name] = i
    for name in sg.outputs:
        last_use[name] = end

    kernels = [make_kernel(op.kind, [specs[n] for n in op.inputs], op.attrs) for op in sg.ops]
    # A view's storage is its input's buffer; a buffer is free once every value rooted in it is dead.
    root: dict[str, int | None] = {}
    buffers: list[tuple[tuple[int, ...], np.dtype]] = []
    free: dict[tuple[tuple[int, ...], np.dtype], list[int]] = {}
    holders: dict[int, set[str]] = {}
    plans: list[_OpPlan] = []
    for i, (op, k) in enumerate(zip(sg.ops, kernels)):
        buf: int | None = None
        if k.needs_buffer:
            key = (tuple(k.result.shape), numpy_dtype(k.result.dtype))
            if free.get(key):
                buf = free[key].pop()
            else:
                buf = len(buffers)
                buffers.append(key)
            root[op.output] = buf
        else:
            root[op.output] = root.get(op.inputs[0])
        if root[op.output] is not None:
            holders.setdefault(root[op.output], set()).add(op.output)
        plans.append(_OpPlan(k, tuple(slots[n] for n in op.inputs), slots[op.output], buf))
        if op.output not in last_use:
            last_use[op.output] = i          # never read: dead at once
        for name in set(op.inputs) | {op.output}:
            r = root.get(name)
            if r is None or last_use.get(name, -1) > i:
                continue
            holders[r].discard(name)
            if not holders[r]:
                free.setdefault(buffers[r], []).append(r)
    return _SubgraphPlan(
        names=tuple(slots),
        external=tuple(external),
        weights=tuple(wslots),
        ops=tuple(plans),
        buffers=tuple(buffers),
        outputs=tuple((n, slots[n]) for n in sg.outputs),
    )


def _bind_step(fn: Callable[..., np.ndarray], ins: tuple[int, ...], out: int) -> Step:
    if len(ins) == 1:
        (a,) = ins

        def step1(s: list) -> None:
            s[out] = fn(s[a])
        return step1
    if len(ins) == 2:
        a, b = ins

        def step2(s: list) -> None:
            s[out] = fn(s[a], s[b])
        return step2

    def stepn(s: list) -> None:
        s[out] = fn(*[s[i] for i in ins])
    return stepn


class _Bound:
    """One thread's instance of a subgraph plan: its scratch buffers and the closures bound to them."""

    def __init__(self, plan: _SubgraphPlan) -> None:
        bufs = [np.empty(shape, dt) for shape, dt in plan.buffers]
        self.template: list[Any] = [None] * len(plan.names)
        for s, arr in plan.weights:
            self.template[s] = arr
        self.steps: tuple[Step, ...] = tuple(
            _bind_step(p.kernel.bind(None if p.buffer is None else bufs[p.buffer]), p.in_slots, p.out_slot)
            for p in plan.ops
        )


class CompiledGraph:
    """A Graph with its weights, validated and prepared for repeated numpy execution."""

    def __init__(self, graph: Graph, weights: Mapping[str, np.ndarray]) -> None:
        self.graph = graph
        self.specs: dict[str, TensorSpec] = infer_graph(graph, weights)   # ValueError on a bad graph
        for name, arr in weights.items():
            if not isinstance(arr, np.ndarray):
                raise ValueError(f"weight {name!r} must be a numpy array, got {type(arr).__name__}")
        self.weights = dict(weights)
        try:
            self._plans = tuple(_plan_subgraph(sg, self.specs, self.weights) for sg in graph.subgraphs)
        except ValueError as exc:
            raise ValueError(f"graph cannot be compiled: {exc}") from None
        self._inputs = tuple((s.name, numpy_dtype(s.dtype), tuple(s.shape)) for s in graph.inputs)
        self._outputs = tuple((s.name, numpy_dtype(s.dtype), tuple(s.shape)) for s in graph.outputs)
        self._local = threading.local()

    @property
    def num_subgraphs(self) -> int:
        return len(self._plans)

    def _bound(self, index: int) -> _Bound:
        per_thread = getattr(self._local, "bound", None)
        if per_thread is None:
            per_thread = self._local.bound = [None] * len(self._plans)
        b = per_thread[index]
        if b is None:
            b = per_thread[index] = _Bound(self._plans[index])
        return b

    def run_subgraph(self, index: int, env: dict[str, np.ndarray]) -> None:
        """Run subgraph ``index`` (one core's part): read its inputs from ``env``, add its outputs to ``env``."""
        if not 0 <= index < len(self._plans):
            raise ValueError(f"subgraph index {index} out of range 0..{len(self._plans) - 1}")
        with np.errstate(all="ignore"):
            self._exec(index, env)

    def _exec(self, index: int, env: dict[str, np.ndarray]) -> None:
        plan = self._plans[index]
        b = self._bound(index)
        s = b.template.copy()
        try:
            for name, i in plan.external:
                s[i] = env[name]
        except KeyError as exc:
            raise ValueError(f"subgraph {index}: input {exc.args[0]!r} is missing from env") from None
        for step in b.steps:
            step(s)
        for name, i in plan.outputs:
            env[name] = s[i]

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Execute every subgraph in order; results go into ``outputs`` (same dict returned) or new arrays."""
        env: dict[str, np.ndarray] = {}
        for name, dt, shape in self._inputs:
            a = inputs.get(name)
            if a is None:
                raise ValueError(f"input {name!r} is missing; expected {dt}{list(shape)}")
            if not isinstance(a, np.ndarray):
                raise ValueError(f"input {name!r} must be a numpy array, got {type(a).__name__}")
            if a.dtype != dt or a.shape != shape:
                raise ValueError(f"input {name!r} is {a.dtype}{list(a.shape)}; expected {dt}{list(shape)}")
            env[name] = a
        with np.errstate(all="ignore"):
            for i in range(len(self._plans)):
                self._exec(i, env)
        if outputs is None:
            return {name: np.array(env[name], copy=True) for name, _, _ in self._outputs}
        for name, dt, shape in self._outputs:
            dst = outputs.get(name)
            if dst is None:
                raise ValueError(f"output {name!r} is missing from outputs; expected {dt}{list(shape)}")
            if dst.dtype != dt or dst.shape != shape:
                raise ValueError(f"output {name!r} is {dst.dtype}{list(dst.shape)}; expected {dt}{list(shape)}")
            np.copyto(dst, env[name])
        return outputs  # type: ignore[return-value]
