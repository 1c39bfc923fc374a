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

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from neuron_sim.compute.graph import Graph, Subgraph, TensorSpec
from neuron_sim.compute.ops import Kernel, has_nan, make_kernel
from neuron_sim.compute.shapes import infer_graph
from neuron_sim.dtypes import numpy_dtype

Step = Callable[[list], None]
F32 = np.dtype(np.float32)

try:    # numpy >= 2: enter "ignore all floating-point errors" without building an errstate each run
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
    _quiet = functools.partial(_extobj_contextvar.set, _make_extobj(all="ignore"))   # C calls: no Python frame
    _loud = _extobj_contextvar.reset
except ImportError:          # other numpy versions: the public (slower) context manager
    def _quiet() -> object:
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def _loud(token: object) -> None:
        token.__exit__(None, None, None)  # type: ignore[attr-defined]


class _OpPlan(NamedTuple):
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
    ops = sg.ops
    produced = {op.output for op in ops}
    slots: dict[str, int] = {}
    external: list[tuple[str, int]] = []
    wslots: list[tuple[int, np.ndarray]] = []
    for names in (sg.inputs, *((*op.inputs, op.output) for op in ops), sg.outputs):   # slots in first-use order
        for name in names:
            if name not in slots:
                i = slots[name] = len(slots)
                if name in weights:
                    wslots.append((i, weights[name]))
                elif name not in produced:
                    external.append((name, i))

    # Liveness: the last op index reading each value; subgraph outputs live to the end; a value never read dies
    # at once. Constants are read by their kernels, and widened once when only float32-computing kernels read them.
    last_use: dict[str, int] = {}
    kernels: list[Kernel] = []
    for i, op in enumerate(ops):
        kernels.append(make_kernel(op.kind, [specs[n] for n in op.inputs], op.attrs, specs[op.output]))
        for name in op.inputs:
            last_use[name] = i
        last_use.setdefault(op.output, i)
    for name in sg.outputs:
        last_use[name] = len(ops)
    if any(arr.dtype != F32 for _, arr in wslots):
        wslots = _widen_constants(sg, kernels, slots, wslots)
    # A view's storage is its input's buffer; a buffer is free once every value rooted in it is dead.
    root: dict[str, int | None] = {}
    buffers: list[tuple[tuple[int, ...], np.dtype]] = []
    free: dict[tuple[tuple[int, ...], np.dtype], list[int]] = {}
    holders: dict[int, set[str]] = {}
    plans: list[_OpPlan] = []
    for i, (op, k) in enumerate(zip(ops, kernels)):
        out = op.output
        buf: int | None = None
        if k.needs_buffer:
            key = (k.result.shape, numpy_dtype(k.result.dtype))
            spare = free.get(key)
            if spare:
                buf = spare.pop()
            else:
                buf = len(buffers)
                buffers.append(key)
            r = buf
        else:
            r = root.get(op.inputs[0])
        root[out] = r
        if r is not None:
            holders.setdefault(r, set()).add(out)
        plans.append(_OpPlan(k, tuple([slots[n] for n in op.inputs]), slots[out], buf))
        for name in (*op.inputs, out):
            r = root.get(name)
            if r is None or last_use[name] > i:
                continue
            h = holders[r]
            if name in h:
                h.remove(name)
                if not h:
                    free.setdefault(buffers[r], []).append(r)
    return _SubgraphPlan(
        names=tuple(slots),
        external=tuple(external),
        weights=tuple(wslots),
        ops=tuple(plans),
        buffers=tuple(buffers),
        outputs=tuple([(n, slots[n]) for n in sg.outputs]),
    )


def _widen_constants(sg: Subgraph, kernels: list[Kernel], slots: dict[str, int],
                     wslots: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """Convert once, at load, a low-precision weight that only float32-computing kernels read (bf16 → fp32)."""
    readers: dict[int, list[Kernel]] = {}
    for op, k in zip(sg.ops, kernels):
        for name in op.inputs:
            readers.setdefault(slots[name], []).append(k)
    outputs = {slots[n] for n in sg.outputs}
    out = []
    for slot, arr in wslots:
        ks = readers.get(slot, [])
        if ks and slot not in outputs and arr.dtype != F32 and all(k.widens for k in ks):
            arr = arr.astype(F32)
            arr.flags.writeable = False
        out.append((slot, arr))
    return out


def _slot_step(fn: Callable[..., np.ndarray], ins: tuple[int, ...], out: int, s: list) -> Callable[[], None]:
    """A no-argument step reading and writing the slot list ``s`` (values only known at run time)."""
    def step() -> None:
        s[out] = fn(*[s[i] for i in ins])
    return step


def _value(slots: list, i: int, known: bool) -> Callable[[], Any]:
    """The value of slot ``i`` after a run: fixed at bind time, or read from the slot list."""
    if known:
        arr = slots[i]
        return lambda: arr
    return lambda: slots[i]


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
        self._float_outputs = tuple(name for name, dt, _ in self._outputs if dt.kind in "fcV")
        self._local = threading.local()

    @property
    def num_subgraphs(self) -> int:
        return len(self._plans)

    def drop_scratch(self) -> None:
        """Let go of every thread's scratch buffers (a graph kept for later loads holds none; runs make new ones)."""
        self._local = threading.local()

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

    def bind(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> Callable[[], None]:
        """Check once and return ``go()`` that runs on these very arrays (the runtime's cached bindings).

        A one-subgraph graph gets a ``DirectRun`` (no per-call checks, results written straight into the outputs);
        calls of one binding must not overlap (the runtime holds the model's cores while it runs).
        """
        for kind, given, wanted in (("input", inputs, self._inputs), ("output", outputs, self._outputs)):
            for name, dt, shape in wanted:
                a = given.get(name)
                if not isinstance(a, np.ndarray) or a.dtype != dt or a.shape != shape:
                    got = "missing" if a is None else f"{getattr(a, 'dtype', type(a).__name__)}" \
                                                      f"{list(getattr(a, 'shape', ()))}"
                    raise ValueError(f"{kind} {name!r} is {got}; expected {dt}{list(shape)}")
        if len(self._plans) == 1:
            return DirectRun(self._plans[0], inputs, outputs)
        return functools.partial(self.run, inputs, outputs)

    def nan_in(self, outputs: Mapping[str, np.ndarray]) -> bool:
        """Whether any float output holds a NaN (no full-size temporaries)."""
        return any(has_nan(outputs[name]) for name in self._float_outputs)

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


class DirectRun:
    """One subgraph bound to fixed input and output arrays, for repeated runs with no per-call work but the ops.

    Every value whose array is known at bind time (inputs, weights, each op's result buffer, views of those) is
    resolved once, so an op on such values is one numpy call with its arguments already in place; an op whose
    result is a graph output writes it straight into the output array (no second copy). Outputs that overlap an
    input in memory are computed into scratch and copied at the end, as ``run`` does.
    Not for concurrent calls (its scratch buffers are its own): the runtime runs a binding under its cores' locks.
    """

    __slots__ = ("_steps", "_copies", "_vdot", "_other_floats")

    def __init__(self, plan: _SubgraphPlan, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        slots: list[Any] = [None] * len(plan.names)
        known: set[int] = set()                       # slots whose array is fixed for every run
        for i, arr in plan.weights:
            slots[i] = arr
            known.add(i)
        for name, i in plan.external:
            slots[i] = inputs[name]
            known.add(i)
        ins = list(inputs.values())
        direct: dict[int, np.ndarray] = {}            # value slot -> the output array an op writes into
        for name, i in plan.outputs:
            dst = outputs[name]
            if i not in direct and not any(np.may_share_memory(dst, a) for a in ins):
                direct[i] = dst
        bufs: dict[int, np.ndarray] = {}
        steps: list[Callable[[], Any]] = []
        written: set[int] = set()
        for p in plan.ops:
            k = p.kernel
            target = direct.get(p.out_slot)
            if p.buffer is None:
                out = None
            elif (target is not None and target.dtype == numpy_dtype(k.result.dtype)
                  and target.shape == tuple(k.result.shape)):
                out = target
                written.add(p.out_slot)
            else:
                if p.buffer not in bufs:
                    shape, dt = plan.buffers[p.buffer]
                    bufs[p.buffer] = np.empty(shape, dt)
                out = bufs[p.buffer]
            fn = k.bind(out)
            if all(i in known for i in p.in_slots):
                args = [slots[i] for i in p.in_slots]
                if out is None:                       # a view: resolve it now when it really is a view
                    with np.errstate(all="ignore"):
                        r = fn(*args)
                    if isinstance(r, np.ndarray) and r.size and any(np.may_share_memory(r, a) for a in args):
                        slots[p.out_slot] = r
                        known.add(p.out_slot)
                        continue
                else:
                    steps.append(k.direct(args, out) if k.direct is not None else functools.partial(fn, *args))
                    slots[p.out_slot] = out           # every buffered kernel returns its out array
                    known.add(p.out_slot)
                    continue
            steps.append(_slot_step(fn, p.in_slots, p.out_slot, slots))
            if out is not None:
                slots[p.out_slot] = out
                known.add(p.out_slot)
        self._steps = tuple(steps)
        self._copies = tuple((outputs[name], _value(slots, i, i in known)) for name, i in plan.outputs
                             if not (i in written and direct.get(i) is outputs[name]))
        floats = [a for a in outputs.values() if a.dtype.kind in "fcV" and a.size]
        # x·x (real) or x̄·x (complex) is NaN only when some x is: one reduction, no temporary
        self._vdot = tuple(a.reshape(-1) for a in floats if a.dtype.kind == "f" and a.flags.c_contiguous)
        self._other_floats = tuple(a for a in floats if not (a.dtype.kind == "f" and a.flags.c_contiguous))

    def __call__(self) -> None:
        token = _quiet()
        try:
            for step in self._steps:
                step()
            for dst, value in self._copies:
                np.copyto(dst, value())
        finally:
            _loud(token)

    def nan(self) -> bool:
        """Whether a float output holds a NaN after the run (no full-size temporaries)."""
        for a in self._vdot:
            v = a.dot(a)
            if v != v:
                return True
        for a in self._other_floats:
            if has_nan(a):
                return True
        return False

    def checked(self) -> bool:
        """Run, then say whether a float output holds a NaN: the runtime's hot path in one call (the bodies of
        ``__call__`` and ``nan`` written out on purpose: two Python calls fewer per execution)."""
        token = _quiet()
        try:
            for step in self._steps:
                step()
            for dst, value in self._copies:
                np.copyto(dst, value())
        finally:
            _loud(token)
        for a in self._vdot:
            v = a.dot(a)
            if v != v:
                return True
        for a in self._other_floats:
            if has_nan(a):
                return True
        return False
