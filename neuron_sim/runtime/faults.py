"""Fault injection: makes planned runtime calls fail with the real statuses and log lines, marked as injected.

The plan comes from NEURON_SIM_FAULTS (process-wide, read at nrt_init) and from the machine's state directory
(``neuron-sim faults add``, the ``neuron_faults`` fixture), which a running process re-reads when its mtime
changes, so it sees a plan changed by another: a task on the process's ticker thread (``runtime.ticker``, no
thread of its own) looks every 50 ms once the machine has a plan file, and once a second while it has none. Runtime modules call ``active.hit(...)`` guarded
by ``if faults.active is not None`` — one attribute test when nothing is planned; ``active`` is None unless a
fault is planned or a device has fallen off.

Trigger state (call counts, seeded generators, tripped faults, fallen-off devices) belongs to the process and
survives nrt_close/nrt_init. A device that fell off stays off until a reset: nrt_close then nrt_init with
NEURON_RT_RESET_CORES on (its default), or ``neuron-sim faults clear``.

State owned here: the process's trigger state (``_state``), the ``active`` injector and the plan-watching task.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuron_sim import nrtlog
from neuron_sim.runtime import fault_store, ticker
from neuron_sim.runtime.fault_plan import DEVICE_CALLS, Fault, FaultPlanError, load_plan_text
from neuron_sim.status import NrtError, NrtStatus

POLL_INTERVAL_S = 0.05       # how often a running process looks at the machine plan's mtime, once there is one
FIRST_PLAN_POLL_S = 1.0      # how often it looks for a first plan while the machine has none
TASK_NAME = "fault-plan"     # the watching task on the process's ticker thread (runtime.ticker)
_FN = {"init": "nrt_init", "load": "nrt_load", "execute": "nrt_execute", "tensor_allocate": "nrt_tensor_allocate",
       "tensor_op": "nrta_tensor_op"}


class _Trigger:
    __slots__ = ("count", "fired", "rng")

    def __init__(self, seed: int) -> None:
        self.count = 0
        self.fired = False
        self.rng = random.Random(seed)


class Injector:
    """The process's fault state: the plan by call, trigger state, devices that fell off, injected events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.env_faults: tuple[Fault, ...] = ()
        self.machine_faults: tuple[Fault, ...] = ()
        self.by_call: dict[str, tuple[Fault, ...]] = {}
        self.triggers: dict[str, _Trigger] = {}
        self.lost: dict[int, Fault] = {}           # device index -> the fault that took it off the bus
        self.events: deque[tuple[str, int, str, int]] = deque(maxlen=1024)   # (call, fault id, status, device)
        self.totals: dict[tuple[str, str], int] = {}   # (call, status) -> calls the plan failed since nrt_init
        self.state_dir: Path | None = None
        self.signature: tuple[int, int, int] | None = None
        self.generation: int | None = None
        self.watching = False                       # a runtime is up: its ticker task polls the plan

    # ---- plan -----------------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        faults = self.env_faults + self.machine_faults
        by_call: dict[str, list[Fault]] = {}
        for f in faults:
            by_call.setdefault(f.call, []).append(f)
        self.by_call = {k: tuple(v) for k, v in by_call.items()}
        live = {f.uid for f in faults}
        self.triggers = {uid: t for uid, t in self.triggers.items() if uid in live}
        _publish()

    def reload(self) -> None:
        """Re-read the machine plan; a new clear generation resets every device that fell off."""
        if self.state_dir is None:
            return
        with self.lock:
            self.signature = fault_store.signature(self.state_dir)
            try:
                stored = fault_store.read(self.state_dir)
            except FaultPlanError as exc:
                nrtlog.warn_once(str(exc), "NRT", "fault_plan", f"{exc}; keeping the previous plan")
                return
            if self.generation is not None and stored.generation != self.generation:
                self.lost.clear()
            self.generation = stored.generation
            self.machine_faults = stored.faults
            self._rebuild()

    def poll(self) -> None:
        if self.state_dir is not None and fault_store.signature(self.state_dir) != self.signature:
            self.reload()

    # ---- injection ------------------------------------------------------------------------------------
    def hit(self, call: str, cores: Sequence[Any], neff: Any = None) -> None:
        """Raise the planned NrtError when a fault trips on this call (cores: the CoreStates it touches)."""
        if self.lost:
            for cs in cores:
                fault = self.lost.get(cs.core.device)
                if fault is not None:
                    self._failed(call, NrtStatus.HW_ERROR, cores)
                    raise _device_unavailable(call, cs, fault)
        planned = self.by_call.get(call, ())
        if call in DEVICE_CALLS:
            planned = self.by_call.get("device_lost", ()) + planned
        tripped = None
        with self.lock:                      # every matching fault counts the call; the first to trip fails it
            for f in planned:
                if _matches(f, cores, neff) and self._count(f, tripped is None) and tripped is None:
                    tripped = f
        if tripped is None:
            return
        device = cores[0].core.device if cores else -1
        if tripped.call != "device_lost":
            self.events.append((call, tripped.id, "NRT_" + tripped.status.name, device))
            self._failed(call, tripped.status, cores)
            raise _inject(tripped, call, cores, neff)
        hit = next(cs for cs in cores if cs.core.device == tripped.device)
        self.lost[tripped.device] = tripped
        self.events.append((call, tripped.id, "NRT_HW_ERROR", tripped.device))
        self._failed(call, NrtStatus.HW_ERROR, cores)
        _publish()
        raise _device_fell_off(call, hit, tripped)

    def _failed(self, call: str, status: NrtStatus, cores: Sequence[Any]) -> None:
        """Count a call the plan failed (published for neuron-monitor's error summary); a failed execute
        also counts in its core's execution counters."""
        key = (call, "NRT_" + status.name)
        with self.lock:
            self.totals[key] = self.totals.get(key, 0) + 1
        if call == "execute" and cores:
            cores[0].count_failure(status)

    def _count(self, f: Fault, may_trip: bool) -> bool:
        """Count one matching call; True when the fault fails it (``may_trip`` False: only count)."""
        t = self.triggers.get(f.uid)
        if t is None:
            t = self.triggers[f.uid] = _Trigger(f.seed)
        t.count += 1
        if not may_trip:
            return False
        if t.fired:
            return f.sticky
        if t.count < f.nth or (f.probability < 1.0 and t.rng.random() >= f.probability):
            return False
        t.fired = True
        return True


def _matches(f: Fault, cores: Sequence[Any], neff: Any) -> bool:
    if f.core is not None and not any(cs.core.global_id == f.core for cs in cores):
        return False
    if f.device is not None and not any(cs.core.device == f.device for cs in cores):
        return False
    if f.model is not None and (neff is None or f.model not in (neff.name, neff.uuid)):
        return False
    return True


# ---- the process's state -----------------------------------------------------------------------------
_state = Injector()
active: Injector | None = None


def _publish() -> None:
    """Point ``active`` at the state when anything is planned or lost, else None (the hot path's test)."""
    global active
    active = _state if (_state.by_call or _state.lost) else None


def state() -> Injector:
    """This process's fault state (plan, trigger counts, injected events)."""
    return _state


def start(rt: Any) -> None:
    """nrt_init: read NEURON_SIM_FAULTS and the machine plan, watch it, then apply any init fault."""
    from neuron_sim.runtime.reservation import default_state_dir
    config = rt.config
    try:
        env_faults = load_plan_text(config.faults) if config.faults else ()
    except FaultPlanError as exc:
        msg = f"NEURON_SIM_FAULTS: {exc}"
        nrtlog.error("NRT", "nrt_init", msg)
        raise NrtError(NrtStatus.INVALID, msg) from None
    _state.env_faults = tuple(_stable_uid(f) for f in env_faults)
    _state.totals = {}                   # published per runtime: counts since this nrt_init
    if config.reset_cores and _state.lost:
        nrtlog.info("NRT", "nrt_init", f"Resetting Neuron device(s) {sorted(_state.lost)} (NEURON_RT_RESET_CORES)")
        _state.lost.clear()
    state_dir = rt.reservation.state_dir or default_state_dir(
        rt.machine, {"NEURON_SIM_STATE_DIR": config.state_dir} if config.state_dir else {})
    if _state.state_dir != state_dir:
        _state.generation = None
        _state.machine_faults = ()
    _state.state_dir = state_dir
    _state.signature = None
    if fault_store.signature(state_dir) is None:
        _state._rebuild()
    else:
        _state.reload()
    _state.watching = True
    ticker.schedule(TASK_NAME, _watch, _poll_delay())
    if active is not None:
        active.hit("init", rt.cores)


def _stable_uid(f: Fault) -> Fault:
    """The same NEURON_SIM_FAULTS entry gets the same uid at every nrt_init, so its counts carry on."""
    spec = {k: v for k, v in f.to_json().items() if k != "uid"}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return Fault(**{**f.__dict__, "uid": f"env-{digest}"})


def stop() -> None:
    """nrt_close: stop watching the machine plan (trigger state and fallen-off devices stay)."""
    _state.watching = False
    ticker.cancel(TASK_NAME)


def refresh() -> None:
    """Re-read the machine plan now (after this process changed it)."""
    _state.reload()


def reset() -> None:
    """Forget every plan, count and fallen-off device of this process (test isolation)."""
    global _state
    stop()
    _state = Injector()
    _publish()


def _poll_delay() -> float:
    """50 ms once the machine has a plan file; while it has none, one look a second for the first one."""
    return POLL_INTERVAL_S if _state.signature is not None else FIRST_PLAN_POLL_S


def _watch() -> float | None:
    """The ticker task of a live runtime: re-read the machine plan when its file changed."""
    current = _state
    if not current.watching:
        return None
    try:
        current.poll()
    except Exception as exc:  # noqa: BLE001 - watching must never stop on a bad file
        nrtlog.warn_once(f"fault-watch {exc!r}", "NRT", "fault_plan", f"cannot read the fault plan: {exc!r}")
    return _poll_delay()


# ---- the injected failures: the runtime's lines, each marked as injected --------------------------------
def _mark(f: Fault) -> str:
    return f" [neuron_sim injected fault #{f.id}: {f.describe()}]"


def _where(cores: Sequence[Any]) -> tuple[int, int, int]:
    if not cores:
        return -1, -1, -1
    cs = cores[0]
    return cs.core.device, cs.core.local_id, cs.vnc


def _inject(f: Fault, call: str, cores: Sequence[Any], neff: Any) -> NrtError:
    mark, code, fn = _mark(f), int(f.status), _FN[call]
    device, nc, vnc = _where(cores)
    name = neff.name if neff is not None else "?"
    status = f.status
    if call == "init":
        msg = (f"Logical Neuron Core(s) not available - Requested:{len(cores)} Available:0 (cores busy, ret=-16)")
        nrtlog.error("NRT", "nrt_allocate_neuron_cores", msg + mark)
    elif call == "tensor_allocate":
        msg = f"nrt_tensor_allocate status=4 message=\"Allocation Failure\" on NC {vnc}"
        nrtlog.error("NRT", fn, msg + mark)
    elif call == "tensor_op":
        msg = {NrtStatus.EXEC_HW_ERR_DMA_ABORT: f"DMA abort on Neuron Device {device} NC {nc} (TENSOR_OP queue)",
               NrtStatus.TIMEOUT: f"DMA transfer timeout on Neuron Device {device} NC {nc} (TENSOR_OP queue)",
               }.get(status, f"DMA transfer failed on Neuron Device {device} NC {nc} (TENSOR_OP queue)")
        nrtlog.error("TDRV", "dma_process_completion", msg + mark)
    elif call == "load":
        if status is NrtStatus.RESOURCE:
            msg = f"Failed to allocate device memory for NEFF {name} on Neuron Device {device} NC {nc}"
            nrtlog.error("TDRV", "dmem_alloc_internal", msg + mark)
        elif status is NrtStatus.LOAD_NOT_ENOUGH_NC:
            nrtlog.error("TDRV", "db_vtpb_get_mla_and_tpb", f"Could not find VNC id {vnc}{mark}")
            msg = f"Failed to stage graph: kelf-0.json: NEFF {name} could not be staged on NC {vnc}"
            nrtlog.error("NMGR", "stage_kelf_models", msg + mark)
        else:
            msg = f"Failed to load NEFF {name}: model staging failed on Neuron Device {device} NC {nc}"
            nrtlog.error("NMGR", "kmgr_load_nn_internal", msg + mark)
        nrtlog.error("NMGR", "kmgr_load_nn_post_metrics", f"Failed to load NN: {name}, err: {code}{mark}")
    else:
        msg = _execute_line(status, device, nc, name)
        level = nrtlog.warn if status is NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR else nrtlog.error
        level("TDRV", "exec_consume_infer_status_notifications", msg + mark)
        level("NMGR", "dlr_infer", f"Inference completed with err: {code}{mark}")
    return NrtError(status, f"{msg} (injected by the neuron_sim fault plan, fault #{f.id})")


def _execute_line(status: NrtStatus, device: int, nc: int, name: str) -> str:
    where = f"on Neuron Device {device} NC {nc}, model {name}"
    return {
        NrtStatus.TIMEOUT: f"(FATAL-RT-UNDEFINED-STATE) execution timeout {where}, waiting for execution "
                           "completion notification",
        NrtStatus.EXEC_HW_ERR_HBM_UE: f"Uncorrectable HBM memory error (HBM UE) {where}",
        NrtStatus.EXEC_HW_ERR_NC_UE: f"Uncorrectable NeuronCore error (NC UE) {where}",
        NrtStatus.EXEC_HW_ERR_DMA_ABORT: f"DMA abort {where}",
        NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR: f"Error notifications found {where}: INFER_ERROR_SUBTYPE_NUMERICAL",
        NrtStatus.EXEC_UNIT_UNRECOVERABLE: f"(FATAL-RT-UNDEFINED-STATE) execution unit unrecoverable {where}; "
                                           "the NeuronCore must be reset",
    }[status]


def _device_fell_off(call: str, cs: Any, f: Fault) -> NrtError:
    msg = (f"Neuron Device {cs.core.device} is not responding (fell off the bus): every call on its NeuronCores "
           "fails until a reset (nrt_close, then nrt_init with NEURON_RT_RESET_CORES=1, or neuron-sim faults clear)")
    nrtlog.error("TDRV", "tdrv_device_health", msg + _mark(f))
    return NrtError(NrtStatus.HW_ERROR, f"{msg} (injected by the neuron_sim fault plan, fault #{f.id})")


def _device_unavailable(call: str, cs: Any, f: Fault) -> NrtError:
    msg = (f"{_FN[call]} on NC {cs.vnc}: Neuron Device {cs.core.device} is unavailable (fell off the bus); reset "
           "it: nrt_close, then nrt_init with NEURON_RT_RESET_CORES=1, or neuron-sim faults clear")
    nrtlog.error("NRT", _FN[call], msg + _mark(f))
    return NrtError(NrtStatus.HW_ERROR, f"{msg} (injected by the neuron_sim fault plan, fault #{f.id})")


def machine_state_dir(environ: dict[str, str] | None = None) -> Path:
    """The state directory of the machine the environment names (where its fault plan lives)."""
    from neuron_sim.config import load_config
    from neuron_sim.hardware.select import select_machine
    from neuron_sim.runtime.reservation import default_state_dir
    env = dict(os.environ if environ is None else environ)
    config = load_config(env)
    machine = select_machine(config.instance_type, config.topology_file, config.logical_nc_config)
    return default_state_dir(machine, env)
