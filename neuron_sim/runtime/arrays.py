"""numpy in, numpy out: a model called with arrays, safe from many threads at once.

Each call takes an input/output tensor pair from the model's pool (allocating one when every pair is in
use), converts the arrays into it, executes and copies the outputs out; so concurrent calls never share
tensors, and a pair in use is never freed under a call. An async submission (on the legacy queue, or on
the core's COMPUTE execution unit when that is off) allocates its own pair and frees it when the request completes (its device memory is held exactly while it is in flight). Unloading the model closes its pool: idle pairs
are freed at once, pairs in use when their call returns; a call on an unloaded model is
NRT_INVALID_HANDLE (from execute's own check).

Input conversion (the Pythonic face's documented rule): an array of the model's dtype is used as is;
otherwise an integer or float array converts to a float input when every finite value stays finite, and an
integer array to an integer input when every value is in range. Everything else — bool, complex, float to
integer, strings, objects, values out of range — is NRT_INVALID naming the input: never a silent cast.

State owned here: the pool of tensor pairs of each model called with arrays (kept on ``Model.array_pool``).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from neuron_sim.dtypes import dtype_name
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import execution, faults, trace, xu
from neuron_sim.runtime.core import Runtime
from neuron_sim.runtime.models import Binding, Model, check_model
from neuron_sim.runtime.tensors import Placement, TensorSet
from neuron_sim.status import NrtStatus

_FN = "nrt_execute"


class Pair:
    """One call's input and output tensors, with their typed views and the execution bound to them once."""

    __slots__ = ("ins", "outs", "in_views", "out_views", "req", "exact")

    def __init__(self, ins: TensorSet, outs: TensorSet, model: Model) -> None:
        self.ins, self.outs = ins, outs
        self.in_views = tuple((b, ins[b.name].view(b.dtype, b.shape)) for b in model.inputs)
        self.out_views = tuple((b.name, outs[b.name].view(b.dtype, b.shape)) for b in model.outputs)
        self.req: execution.Prepared | None = None   # bound at the pair's first call (its tensors never change)
        # per input: name, dtype, shape, view, for the common case of an array that needs no conversion
        self.exact = tuple((b.name, b.dtype, b.shape, view) for b, view in self.in_views)


class _Pool:
    """Idle tensor pairs of one model; closed when the model is unloaded. ``idle`` is a deque: its append and
    pop are atomic, so taking and giving back a pair needs no lock."""

    __slots__ = ("idle", "closed", "names", "__weakref__")

    def __init__(self, model: Model) -> None:
        self.idle: deque[Pair] = deque()
        self.closed = False
        self.names = frozenset(b.name for b in model.inputs)


_pools_lock = threading.Lock()


def _pool(model: Model) -> _Pool:
    pool = model.array_pool
    if pool is None:
        with _pools_lock:
            pool = model.array_pool
            if pool is None:
                pool = model.array_pool = _Pool(model)
    return pool


def _allocate(rt: Runtime, model: Model) -> Pair:
    ins, outs = TensorSet(), TensorSet()
    vnc = model.start_vnc
    try:
        for b in model.inputs:
            ins[b.name] = rt.tensor_allocate(Placement.DEVICE, vnc, b.size, b.name)
        for b in model.outputs:
            outs[b.name] = rt.tensor_allocate(Placement.DEVICE, vnc, b.size, b.name)
    except BaseException:
        _free_sets(rt, (ins, outs))
        raise
    return Pair(ins, outs, model)


def _free_pair(rt: Runtime, pair: Pair) -> None:
    pair.req = None
    _free_sets(rt, (pair.ins, pair.outs))


def _free_sets(rt: Runtime, sets: tuple[TensorSet, TensorSet]) -> None:
    for tset in sets:
        for t in tset.values():
            rt.tensor_free(t)


def _drain(rt: Runtime, pool: _Pool) -> None:
    while True:
        try:
            pair = pool.idle.pop()
        except IndexError:
            return
        _free_pair(rt, pair)


def release(rt: Runtime, model: Model) -> None:
    """The model is being unloaded: free its idle pairs now, the others when their calls return."""
    pool = _pool(model)
    pool.closed = True
    _drain(rt, pool)


def convert(model: Model, b: Binding, value: Any) -> np.ndarray:
    """``value`` as an array of input ``b``'s dtype and shape, or NRT_INVALID naming the input and the rule."""
    if type(value) is np.ndarray and value.dtype == b.dtype and value.shape == b.shape:
        return value                                   # the common case: nothing to check or convert
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise fail(NrtStatus.INVALID, "NRT", _FN, f"input '{b.name}' of model {model.name} is not an array: "
                                                  f"{exc}") from None
    if arr.shape != b.shape:
        raise fail(NrtStatus.INVALID, "NRT", _FN, f"input '{b.name}' has shape {list(arr.shape)}, model "
                                                  f"{model.name} expects {list(b.shape)}")
    if arr.dtype == b.dtype:
        return arr
    want = dtype_name(b.dtype)
    src_kind, to_float = arr.dtype.kind, b.dtype.kind in "fV"
    if src_kind not in "iuf" and not (src_kind == "V" and _is_float(arr.dtype)) or (src_kind in "fV" and not to_float):
        raise fail(NrtStatus.INVALID, "NRT", _FN,
                   f"input '{b.name}' of model {model.name} is {arr.dtype}, which does not convert safely to {want}: "
                   "pass an array of the model's dtype, or integers/floats for a float input, integers for an "
                   "integer input")
    with np.errstate(all="ignore"):
        out = arr.astype(b.dtype)
    if to_float:
        lost = ~np.isfinite(out.astype(np.float32)) & np.isfinite(arr.astype(np.float64))
    else:
        info = np.iinfo(b.dtype)
        lost = (arr < info.min) | (arr > info.max)
    if lost.any():
        bad = arr[lost].reshape(-1)[0]
        raise fail(NrtStatus.INVALID, "NRT", _FN,
                   f"input '{b.name}' of model {model.name} holds {bad!r}, out of range of {want}: pass values "
                   f"the model's dtype can hold")
    return out


def _is_float(dtype: np.dtype) -> bool:
    try:
        return dtype_name(dtype) in ("bfloat16", "float8_e3m4", "float8_e4m3", "float8_e5m2")
    except ValueError:
        return False


def _bind(model: Model, arrays: Mapping[str, Any], pair: Pair, names: frozenset[str]) -> None:
    if len(arrays) != len(names) or not names.issuperset(arrays):
        unknown = [k for k in arrays if k not in names]
        if unknown:
            raise fail(NrtStatus.INVALID, "NRT", _FN, f"model {model.name} has no input(s) "
                                                      f"{sorted(map(str, unknown))}; inputs are "
                                                      f"{[b.name for b in model.inputs]}")
    for b, view in pair.in_views:
        value = arrays.get(b.name, _MISSING)
        if value is _MISSING:
            raise fail(NrtStatus.INVALID, "NRT", _FN, f"missing input '{b.name}' ({dtype_name(b.dtype)} "
                                                      f"{list(b.shape)}) for model {model.name}")
        if type(value) is np.ndarray and value.dtype == b.dtype and value.shape == b.shape:
            view[...] = value                          # the common case: nothing to check or convert
        else:
            view[...] = convert(model, b, value)


_MISSING = object()


def _outputs(pair: Pair) -> dict[str, np.ndarray]:
    return {name: view.copy() for name, view in pair.out_views}


def run(rt: Runtime, model: Model, arrays: Mapping[str, Any]) -> tuple[NrtStatus, dict[str, np.ndarray]]:
    """Execute once on numpy inputs; returns the status (SUCCESS or NUM_ERR) and copies of the outputs.

    The hot path of the Pythonic face, in one frame: inputs that are arrays of the model's dtype and shape
    are copied in with no further checks (anything else takes ``_bind``'s checks and conversions), and a
    pair's kept request runs directly as ``execution.run_kept`` would run it.
    """
    pool = model.array_pool or _pool(model)
    try:
        pair = pool.idle.pop()
    except IndexError:
        pair = _allocate(rt, model)
    try:
        exact = pair.exact
        if len(arrays) == len(exact):
            for name, dtype, shape, view in exact:
                value = arrays.get(name)
                if type(value) is np.ndarray and value.dtype == dtype and value.shape == shape:
                    view[...] = value
                else:
                    _bind(model, arrays, pair, pool.names)
                    break
        else:
            _bind(model, arrays, pair, pool.names)
        req = pair.req
        if req is None:
            req = pair.req = execution.bind(rt, model, pair.ins, pair.outs)
        if req is None:                                # a replicated load: execute picks the copy
            status = execution.execute(rt, model, pair.ins, pair.outs)
        elif req.checked is not None and trace.recorder is None and faults.active is None:
            status = execution.run_direct(rt, req)
        else:
            status = execution.run_kept(rt, req)
        views = pair.out_views
        if len(views) == 1:
            name, view = views[0]
            return status, {name: view.copy()}
        return status, {name: view.copy() for name, view in views}
    finally:
        if pool.closed:
            _free_pair(rt, pair)
        else:
            pool.idle.append(pair)
            if pool.closed:         # the model was unloaded meanwhile: whoever pops a pair frees it
                _drain(rt, pool)


def submit(rt: Runtime, model: Model, arrays: Mapping[str, Any],
           on_done: Callable[[int, dict[str, np.ndarray]], Any], block: bool = False) -> None:
    """Enqueue one async execution on numpy inputs; ``on_done(status, outputs)`` runs when it completes."""
    check_model(rt, model, _FN)
    queue = rt.async_queue
    pair = _allocate(rt, model)        # a request's tensors live exactly as long as the request (as its memory)

    def done(status: int) -> None:
        outputs = _outputs(pair)
        _free_pair(rt, pair)
        on_done(status, outputs)

    try:
        _bind(model, arrays, pair, _pool(model).names)
        if queue is not None:
            queue.submit(model, pair.ins, pair.outs, on_done=done, block=block)
        else:       # legacy async off: the core's COMPUTE execution unit of the explicit async API
            xu.execute_schedule(rt, model, pair.ins, pair.outs, 0, done, block=block)
    except BaseException:
        _free_pair(rt, pair)
        raise
