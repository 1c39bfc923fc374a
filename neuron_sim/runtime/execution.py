"""nrt_execute: argument checks, one execution at a time per core, simulated duration, timeout, NaN status.

Split so the async queue reuses it: ``prepare`` checks the tensor sets and binds numpy views (on the
caller's thread), ``schedule`` books the request's slot on its cores' timelines at the calling thread's
simulated time, ``run`` computes and waits for the slot's end (on whichever thread runs it).

State owned here: ``CoreState.lock``, ``timeline`` and ``stats`` (each core's executions).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuron_sim import nrtlog
from neuron_sim.compute.ops import OutOfBoundsAccess, has_nan
from neuron_sim.config.variables import LOG_2024_FORMAT_SINCE
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import faults, numerical, trace
from neuron_sim.runtime.clock import reserve_all
from neuron_sim.runtime.core import Runtime
from neuron_sim.runtime.models import Binding, Model, check_model, opaque_outputs, pick_copy
from neuron_sim.runtime.tensors import Placement, Tensor, TensorSet
from neuron_sim.status import NrtError, NrtStatus


@dataclass(slots=True)
class Prepared:
    """A checked request: the model and numpy views of its input and output tensors."""

    model: Model
    in_tensors: list[Tensor]
    out_tensors: list[Tensor]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    submitted: float = 0.0    # the calling thread's simulated time when the slot was booked
    start: float = 0.0        # simulated slot on the cores' timelines (what a trace reads)
    end: float = 0.0
    timed_out: bool = False   # the slot ends at the timeout, the execution fails with NRT_TIMEOUT
    runner: Callable[[], None] | None = None   # a cached binding's direct run of the compiled graph
    nan: Callable[[], bool] | None = None      # and its NaN check of the float outputs
    checked: Callable[[], bool] | None = None  # run + NaN check in one call, for a one-core model (run_direct)
    dated: int = -1           # run_direct's cache: the sharing generation its duration was read at,
    duration: float = 0.0     # the model's duration then,
    too_long: bool = False    # and whether it exceeds the execution timeout (run_direct leaves it to run)


def _bind(rt: Runtime, model: Model, bindings: tuple[Binding, ...], tset: TensorSet, kind: str,
          tensors: list[Tensor], views: dict[str, np.ndarray]) -> None:
    if not isinstance(tset, TensorSet):
        raise _invalid(rt, model, f"{kind} tensor set is not a tensor set handle: {tset!r}")
    core_id = model.cores[0].core.global_id
    for b in bindings:
        t = tset.get(b.name)
        if t is None:
            raise _invalid(rt, model, f"{kind} tensor '{b.name}' is missing from the {kind} tensor set "
                                      f"(model {model.name} {kind}s: {', '.join(x.name for x in bindings)})")
        if t.freed:
            raise _invalid(rt, model, f"{kind} tensor '{b.name}' was freed")
        if t.size != b.size:
            raise _invalid(rt, model, f"{kind} tensor '{b.name}' has {t.size} bytes, the model expects "
                                      f"{b.size} bytes ({b.dtype} {list(b.shape)})")
        if t.placement is Placement.DEVICE and t.core.global_id != core_id:
            raise _invalid(rt, model, f"{kind} tensor '{b.name}' is on NC {t.vnc} but model {model.id} is on "
                                      f"NC {model.start_vnc} (incorrect HBM)")
        tensors.append(t)
        views[b.name] = t.view(b.dtype, b.shape)


def _invalid(rt: Runtime, model: Model, message: str) -> NrtError:
    model.cores[0].stats["incorrect_input"] += 1
    return fail(NrtStatus.INVALID, "NRT", "nrt_execute", message)


def prepare(rt: Runtime, model: Model, inputs: TensorSet, outputs: TensorSet) -> Prepared:
    """Check every model input and output is present, of the model's size and on the model's core."""
    check_model(rt, model, "nrt_execute")
    if model.copies:                   # a replicated load: the copy holding the inputs, else the earliest idle
        model = pick_copy(model, inputs.get(model.inputs[0].name) if model.inputs and isinstance(inputs, TensorSet)
                          else None)
    in_t: list[Tensor] = []
    out_t: list[Tensor] = []
    in_v: dict[str, np.ndarray] = {}
    out_v: dict[str, np.ndarray] = {}
    _bind(rt, model, model.inputs, inputs, "input", in_t, in_v)
    _bind(rt, model, model.outputs, outputs, "output", out_t, out_v)
    return Prepared(model, in_t, out_t, in_v, out_v)


_SUCCESS, _NUM_ERR = NrtStatus.SUCCESS, NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR   # a global is cheaper than
# an enum's class attribute (about 0.1 µs each on the hot path)

BINDINGS_PER_MODEL = 4      # (input set, output set) pairs a model keeps checked and bound


def bound(rt: Runtime, model: Model, inputs: TensorSet, outputs: TensorSet) -> Prepared:
    """``prepare`` once per (model, input set, output set); a later call revalidates with a few comparisons
    (the sets unchanged, no tensor freed or re-backed) and reuses the views and the bound graph run."""
    key = (id(inputs), id(outputs))
    stale = Tensor.stale                        # read before the checks: a later free makes the hot slot miss
    try:
        hit = model.bindings.get(key)
    except AttributeError:                      # not a model: prepare says so
        hit = None
    if (hit is not None and hit[0] is inputs and hit[1] is outputs and hit[2] == inputs.version
            and hit[3] == outputs.version):
        for t, epoch in hit[5]:
            if t.epoch != epoch:
                break
        else:
            req = hit[4]
            if req.runner is None and model.compiled is not None:
                _bind_runner(model, req)        # seen twice: worth a direct run (never for one-off sets)
            elif req.checked is not None:       # seen three times: execute's hot slot
                with rt.lock:
                    if not model.unloaded:
                        model.hot = (inputs, outputs, hit[2], hit[3], stale, req)
            return req
    req = prepare(rt, model, inputs, outputs)
    if model.copies:                            # a replicated load picks its copy per call: nothing to keep
        return req
    tensors = tuple((t, t.epoch) for t in req.in_tensors + req.out_tensors)
    with rt.lock:
        cache = model.bindings
        if key not in cache and len(cache) >= BINDINGS_PER_MODEL:
            del cache[next(iter(cache))]
        if not model.unloaded:
            cache[key] = (inputs, outputs, inputs.version, outputs.version, req, tensors)
    return req


def _bind_runner(model: Model, req: Prepared) -> None:
    compiled = model.compiled
    try:
        runner = compiled.bind(req.inputs, req.outputs)
    except (ValueError, AttributeError):        # the graph's own run reports a mismatch; other runnables run
        runner = functools.partial(compiled.run, req.inputs, req.outputs)
    req.nan = getattr(runner, "nan", None)
    req.runner = runner
    if len(model.cores) == 1:
        req.checked = getattr(runner, "checked", None)


def bind(rt: Runtime, model: Model, inputs: TensorSet, outputs: TensorSet) -> Prepared | None:
    """A checked request whose caller keeps it and its tensors unchanged (the Pythonic face's tensor pairs):
    ``run_kept`` runs it with no further checks; None for a replicated load (it picks its copy per call)."""
    if model.copies:
        return None
    req = prepare(rt, model, inputs, outputs)
    if model.compiled is not None:
        _bind_runner(model, req)
    return req


def run_kept(rt: Runtime, req: Prepared) -> NrtStatus:
    """Synchronous execution of a request from ``bind`` (traced, fault-injected and timed out like any)."""
    if req.checked is not None and trace.recorder is None and faults.active is None:
        return run_direct(rt, req)
    if trace.recorder is not None:
        req.end, req.timed_out = 0.0, False        # the trace tells a refused call by a request with no slot
        return trace.recorder.run(rt, req, run)
    return run(rt, req)


def schedule(rt: Runtime, req: Prepared) -> None:
    """Book the request's slot on its cores' timelines, from the calling thread's simulated time."""
    model = req.model
    duration = model.duration_s
    timeout = rt.config.exec_timeout_s
    timed_out = req.timed_out = timeout > 0 and duration > timeout
    req.submitted = rt.clock.thread_now()
    req.start, req.end = reserve_all(model.timelines, req.submitted, timeout if timed_out else duration)


def run(rt: Runtime, req: Prepared, accepted: bool = False) -> NrtStatus:
    """Execute a prepared request on its cores; returns SUCCESS or EXEC_COMPLETED_WITH_NUM_ERR, raises on error.

    ``accepted``: an async request already scheduled at submit (unload waits for it); otherwise the
    request is refused if its model was unloaded and is scheduled now.
    """
    model = req.model
    cores = model.cores
    if faults.active is not None: faults.active.hit("execute", cores, model.neff)  # noqa: E701
    for cs in cores:
        cs.lock.acquire()
    try:
        if not accepted:
            if model.unloaded:      # checked under the core locks: unload waits for executions holding them
                raise fail(NrtStatus.INVALID_HANDLE, "NRT", "nrt_execute",
                           f"Model {model.id} ({model.name}) was unloaded")
            schedule(rt, req)
        stats = cores[0].stats
        if req.timed_out:
            rt.clock.wait_until(req.end)
            stats["timed_out"] += 1
            raise _timeout(model, rt.config.exec_timeout_s, rt.config.runtime_version)
        sentinel = False
        compiled = model.compiled
        if compiled is not None:
            try:
                if req.runner is not None:
                    req.runner()
                else:
                    compiled.run(req.inputs, req.outputs)
            except OutOfBoundsAccess as exc:
                raise _out_of_bounds(model, exc) from None
        else:
            sentinel = opaque_outputs(model, req.inputs, req.outputs)
        rt.clock.wait_until(req.end)
        duration = req.end - req.start
        for cs in cores:
            cs.stats["device_time_s"] += duration
        rt.latency_samples.append((req.end - req.submitted, duration))   # published by runtime.publish
    finally:
        for cs in reversed(cores):
            cs.lock.release()
    if sentinel:
        nan = False
    elif req.nan is not None:
        nan = req.nan()
    else:
        nan = _has_nan(req.outputs)
    if nan:
        stats["completed_with_num_err"] += 1
        numerical.report(rt.config, model, req.outputs)
        return NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR
    stats["completed"] += 1
    return NrtStatus.SUCCESS


def run_direct(rt: Runtime, req: Prepared) -> NrtStatus:
    """``run`` of a synchronous request of a one-core model on a bound graph run, in one frame (the hot path).

    Same steps and counters as ``run``; a request that would time out takes ``run``. The request's slot is
    not kept on it (only traced and async requests, which take ``run``, need it).
    """
    model = req.model
    if req.dated != model.table.generation:     # weight sharing changed since: read the duration again
        req.duration = model.duration_s
        req.too_long = 0 < rt.config.exec_timeout_s < req.duration
        req.dated = model.table.generation
    if req.too_long:
        return run(rt, req)
    duration = req.duration
    cs = model.cores[0]
    clock = rt.clock
    with cs.lock:
        if model.unloaded:      # checked under the core lock: unload waits for executions holding it
            raise fail(NrtStatus.INVALID_HANDLE, "NRT", "nrt_execute", f"Model {model.id} ({model.name}) was unloaded")
        submitted = clock.thread_now()
        tl = cs.timeline
        with tl.lock:
            start = tl.busy_until
            if start < submitted:
                start = submitted
            end = tl.busy_until = start + duration
        try:
            nan = req.checked()
        except OutOfBoundsAccess as exc:
            raise _out_of_bounds(model, exc) from None
        clock.reach(end)        # end >= submitted: this thread's time moves to the execution's end
        stats = cs.stats
        stats["device_time_s"] += duration
        rt.latency_samples.append((end - submitted, duration))   # published by runtime.publish
        if not nan:
            stats["completed"] += 1
            return _SUCCESS
        stats["completed_with_num_err"] += 1
    numerical.report(rt.config, model, req.outputs)
    return _NUM_ERR


def execute(rt: Runtime, model: Model, inputs: TensorSet, outputs: TensorSet) -> NrtStatus:
    """Synchronous nrt_execute (on a cached binding of the tensor sets)."""
    hot = getattr(model, "hot", None)
    if (hot is not None and hot[0] is inputs and hot[1] is outputs and hot[2] == inputs.version
            and hot[3] == outputs.version and hot[4] == Tensor.stale and trace.recorder is None
            and faults.active is None):
        return run_direct(rt, hot[5])
    req = bound(rt, model, inputs, outputs)
    if trace.recorder is not None:
        req.end, req.timed_out = 0.0, False        # the trace tells a refused call by a request with no slot
        return trace.recorder.run(rt, req, run)
    if req.checked is not None and faults.active is None:
        return run_direct(rt, req)
    return run(rt, req)


def execute_repeat(rt: Runtime, model: Model, inputs: TensorSet, outputs: TensorSet, repeat: int) -> NrtStatus:
    """Run ``repeat`` times, feeding the outputs of run n-1 to the inputs of run n (matched by position)."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise _invalid(rt, check_model(rt, model, "nrt_execute_repeat"),
                       f"Invalid repeat count {repeat!r}: expected an integer >= 1")
    req = prepare(rt, model, inputs, outputs)
    runner = run if trace.recorder is None else trace.recorder.runner(run)
    status = runner(rt, req)
    pairs = [(i, o) for i, o in zip(model.inputs, model.outputs) if i.size == o.size]
    for _ in range(repeat - 1):
        for i, o in pairs:
            np.copyto(req.inputs[i.name].view(np.uint8), req.outputs[o.name].view(np.uint8))
        status = runner(rt, req)
    return status


def _timeout(model: Model, timeout: float, version: tuple[int, ...]) -> NrtError:
    core = model.cores[0].core
    ms = int(round(timeout * 1000))
    nrtlog.error("TDRV", "exec_consume_tpb_status_notifications",
                 "Missing infer_status notification: (end:0)")
    if version < LOG_2024_FORMAT_SINCE:     # the wording of runtimes up to 2023 (seed 000's example)
        msg = (f"(FATAL-RT-UNDEFINED-STATE) inference timeout ({ms} ms) on Neuron Device {core.device} NC "
               f"{core.local_id}, waiting for execution completion notification")
    else:
        msg = (f"(FATAL-RT-UNDEFINED-STATE) execution timeout ({ms} ms) on Neuron Device {core.device} NC "
               f"{core.local_id}, model {model.name}, waiting for execution completion notification")
    nrtlog.error("TDRV", "exec_consume_infer_status_notifications", msg)
    nrtlog.error("NMGR", "dlr_infer", f"Inference completed with err: {int(NrtStatus.TIMEOUT)}")
    return NrtError(NrtStatus.TIMEOUT, f"execution timeout ({ms} ms) on Neuron Device {core.device} NC "
                                       f"{core.local_id}, model {model.name}: simulated duration "
                                       f"{model.duration_s:.3f} s exceeds NEURON_RT_EXEC_TIMEOUT={timeout:g}")


def _out_of_bounds(model: Model, exc: OutOfBoundsAccess) -> NrtError:
    """NRT_EXEC_OOB: an indirect load of the model left its tensor (the outputs are not complete)."""
    model.cores[0].count_failure(NrtStatus.EXEC_OOB)
    core = model.cores[0].core
    nrtlog.error("TDRV", "generate_custom_notification_msg",
                 f"nd{core.device}:nc{core.local_id}:h_model.id{model.id}: Received notification generated at "
                 "runtime: failed to run scatter/gather (indirect memory copy), due to out-of-bound access.")
    nrtlog.error("NMGR", "dlr_infer", f"Inference completed with err: {int(NrtStatus.EXEC_OOB)}. "
                 f"mode->h_nn={model.id}, start_nc={model.start_vnc}, nc_count={len(model.cores)}")
    return NrtError(NrtStatus.EXEC_OOB, f"model {model.name} on NC {model.start_vnc}: out-of-bound access in "
                                        f"an indirect memory copy: {exc}")


def _has_nan(outputs: dict[str, np.ndarray]) -> bool:
    return any(has_nan(arr) for arr in outputs.values())
