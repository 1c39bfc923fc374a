"""Fault plans: which runtime call fails, with which status, and when (the JSON form and its checks).

A plan is a list of faults (or ``{"faults": [...]}``); each fault is an object::

    {"call": "execute", "status": "NRT_TIMEOUT", "nth": 3, "core": 0, "model": "mlp_trn1",
     "probability": 0.5, "seed": 7, "sticky": false}
    {"call": "device_lost", "device": 0, "nth": 2}

``call`` is where the fault is checked (``init``, ``load``, ``execute``, ``tensor_allocate``, ``tensor_op`` — the
transfers and copies of the explicit async API, failing in their completion status; the ``nrt_`` prefix
is optional) or ``device_lost`` (the device falls off the bus: the triggering call and every later call on its
cores fail with NRT_HW_ERROR until a reset). Triggers: the fault trips on the ``nth`` matching call (1-based,
default 1) or, with ``probability`` p, on each matching call from the nth on with probability p drawn from a
generator seeded by ``seed``; a ``sticky`` fault keeps failing every matching call once tripped, a one-shot
fault (the default) fails once. ``core`` (machine-wide logical core id, as ``neuron-sim ls`` numbers them),
``device`` and ``model`` (NEFF name or uuid) narrow the calls that match.

State owned here: none; it parses and checks plans (the triggers' state lives in ``faults``).
"""
from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from neuron_sim.status import NrtStatus

CALLS: dict[str, tuple[NrtStatus, ...]] = {
    "init": (NrtStatus.RESOURCE,),
    "load": (NrtStatus.RESOURCE, NrtStatus.FAILURE, NrtStatus.LOAD_NOT_ENOUGH_NC),
    "execute": (NrtStatus.TIMEOUT, NrtStatus.EXEC_HW_ERR_HBM_UE, NrtStatus.EXEC_HW_ERR_NC_UE,
                NrtStatus.EXEC_HW_ERR_DMA_ABORT, NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR,
                NrtStatus.EXEC_UNIT_UNRECOVERABLE),
    "tensor_allocate": (NrtStatus.RESOURCE,),
    "tensor_op": (NrtStatus.EXEC_HW_ERR_DMA_ABORT, NrtStatus.TIMEOUT, NrtStatus.FAILURE),
    "device_lost": (NrtStatus.HW_ERROR,),
}
#: the calls a device_lost fault counts (every call that touches a device's cores)
DEVICE_CALLS = ("load", "execute", "tensor_allocate", "tensor_op")
_KEYS = {"call", "status", "nth", "core", "device", "model", "probability", "seed", "sticky", "id", "uid"}
FORM = ('a JSON list of faults or {"faults": [...]}, each like {"call": "execute", "status": "NRT_TIMEOUT", '
        '"nth": 3} (keys: call, status, nth, core, device, model, probability, seed, sticky)')


class FaultPlanError(ValueError):
    """A fault plan that cannot be used; the message names the fault, the key and the accepted form."""


@dataclass(frozen=True)
class Fault:
    """One planned fault (see the module docstring); ``uid`` tells two faults with the same id apart."""

    call: str
    status: NrtStatus
    nth: int = 1
    core: int | None = None
    device: int | None = None
    model: str | None = None
    probability: float = 1.0
    seed: int = 0
    sticky: bool = False
    id: int = 0
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def to_json(self) -> dict[str, Any]:
        """The fault as a JSON object, unset filters left out."""
        out = asdict(self)
        out["status"] = "NRT_" + self.status.name
        return {k: v for k, v in out.items() if v is not None}

    def describe(self) -> str:
        """One line for logs and ``neuron-sim faults list``: call, status and trigger."""
        parts = [f"{self.call} -> NRT_{self.status.name}"]
        parts.append(f"from call {self.nth}" if self.probability < 1.0 else f"on call {self.nth}")
        if self.probability < 1.0:
            parts.append(f"p={self.probability:g} seed={self.seed}")
        for key in ("core", "device", "model"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)}")
        parts.append("sticky" if self.sticky else "one-shot")
        return " ".join(parts)


def _where(index: int) -> str:
    return f"fault #{index + 1}"


def _int(raw: dict, key: str, index: int, minimum: int, default: int | None) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultPlanError(f"{_where(index)}: {key}={value!r} must be an integer >= {minimum}")
    return value


def _call(raw: dict, index: int) -> str:
    call = raw.get("call")
    if not isinstance(call, str):
        raise FaultPlanError(f"{_where(index)}: 'call' is missing; expected one of {', '.join(CALLS)}")
    name = call.strip().lower()
    name = name[4:] if name.startswith("nrt_") else name
    if name not in CALLS:
        raise FaultPlanError(f"{_where(index)}: unknown call {call!r}; expected one of {', '.join(CALLS)}")
    return name


def _status(raw: dict, call: str, index: int) -> NrtStatus:
    allowed = CALLS[call]
    value = raw.get("status", allowed[0].name if len(allowed) == 1 else None)
    accepted = ", ".join("NRT_" + s.name for s in allowed)
    if value is None:
        raise FaultPlanError(f"{_where(index)}: 'status' is missing for call {call}; expected one of {accepted}")
    status = None
    if isinstance(value, int) and not isinstance(value, bool):
        status = next((s for s in allowed if int(s) == value), None)
    elif isinstance(value, str):
        name = value.strip().upper()
        name = name[4:] if name.startswith("NRT_") else name
        status = next((s for s in allowed if s.name == name), None)
    if status is None:
        raise FaultPlanError(f"{_where(index)}: status {value!r} cannot be injected into {call}; "
                             f"expected one of {accepted}")
    return status


def parse_fault(raw: Any, index: int = 0) -> Fault:
    """One fault object → Fault, or FaultPlanError naming the bad key."""
    if not isinstance(raw, dict):
        raise FaultPlanError(f"{_where(index)}: expected a JSON object, got {type(raw).__name__}; {FORM}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise FaultPlanError(f"{_where(index)}: unknown key(s) {', '.join(unknown)}; {FORM}")
    call = _call(raw, index)
    status = _status(raw, call, index)
    p = raw.get("probability", 1.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 < p <= 1.0:
        raise FaultPlanError(f"{_where(index)}: probability={p!r} must be a number in (0, 1]")
    sticky = raw.get("sticky", False)
    if not isinstance(sticky, bool):
        raise FaultPlanError(f"{_where(index)}: sticky={sticky!r} must be true or false")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise FaultPlanError(f"{_where(index)}: model={model!r} must be a NEFF name or uuid")
    if call == "device_lost" and raw.get("device") is None:
        raise FaultPlanError(f"{_where(index)}: a device_lost fault needs 'device' (the Neuron device index)")
    extra = {"uid": raw["uid"]} if isinstance(raw.get("uid"), str) and raw["uid"] else {}
    return Fault(call, status, nth=_int(raw, "nth", index, 1, 1), core=_int(raw, "core", index, 0, None),
                 device=_int(raw, "device", index, 0, None), model=model, probability=float(p),
                 seed=_int(raw, "seed", index, 0, 0), sticky=sticky, id=_int(raw, "id", index, 0, 0), **extra)


def parse_plan(data: Any) -> tuple[Fault, ...]:
    """A decoded plan (a list, or an object with "faults") → its faults, numbered from 1 when unnumbered."""
    items = data.get("faults") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise FaultPlanError(f"a fault plan must be {FORM}")
    faults = [parse_fault(raw, i) for i, raw in enumerate(items)]
    return tuple(f if f.id else _renumber(f, i + 1) for i, f in enumerate(faults))


def _renumber(fault: Fault, new_id: int) -> Fault:
    return Fault(**{**fault.__dict__, "id": new_id})


def load_plan_text(text: str) -> tuple[Fault, ...]:
    """NEURON_SIM_FAULTS: inline JSON (starting with ``[`` or ``{``) or the path of a JSON file."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        source, body = "inline JSON", stripped
    else:
        source = stripped
        try:
            fd = os.open(stripped, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                body = f.read(1 << 20).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FaultPlanError(f"cannot read the fault plan file {stripped}: "
                                 f"{getattr(exc, 'strerror', None) or exc}; expected a JSON file path or "
                                 "inline JSON") from None
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FaultPlanError(f"the fault plan ({source}) is not valid JSON: {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}; expected {FORM}") from None
    return parse_plan(data)
