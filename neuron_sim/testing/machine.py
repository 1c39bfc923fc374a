"""The simulated machine ``emulate`` yields, and the handle on its machine-wide fault plan."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuron_sim.runtime import fault_store, interface
from neuron_sim.runtime.fault_plan import Fault, FaultPlanError, parse_fault, parse_plan
from neuron_sim.runtime.faults import machine_state_dir


class FaultPlan:
    """The machine's fault plan (``faults.json`` in its state directory): what ``neuron-sim faults`` edits.

    Every process of the machine sees a change; this process sees it at once.
    """

    def __init__(self, machine_dir: Path) -> None:
        self.machine_dir = Path(machine_dir)

    def add(self, call: str, status: str | int | None = None, *, nth: int = 1, core: int | None = None,
            device: int | None = None, model: str | None = None, probability: float = 1.0, seed: int = 0,
            sticky: bool = False) -> Fault:
        """Plan one fault, e.g. ``add("execute", "NRT_TIMEOUT", nth=3)``; returns it with its id."""
        raw: dict[str, Any] = {"call": call, "nth": nth, "probability": probability, "seed": seed, "sticky": sticky}
        raw.update({k: v for k, v in {"status": status, "core": core, "device": device, "model": model}.items()
                    if v is not None})
        return self._add([parse_fault(raw)])[0]

    def add_plan(self, plan: str | list | Mapping) -> tuple[Fault, ...]:
        """Plan several faults from a plan in its JSON form (text, a list, or ``{"faults": [...]}``)."""
        data = json.loads(plan) if isinstance(plan, str) else plan
        return self._add(list(parse_plan(dict(data) if isinstance(data, Mapping) else data)))

    def _add(self, new: list[Fault]) -> tuple[Fault, ...]:
        added = fault_store.add(self.machine_dir, [Fault(**{**f.__dict__, "id": 0}) for f in new])
        self._refresh()
        return added

    def list(self) -> tuple[Fault, ...]:
        """The faults planned for the machine now."""
        return fault_store.read(self.machine_dir).faults

    def clear(self, *ids: int) -> tuple[Fault, ...]:
        """Remove the given faults, or all of them (which also resets devices that fell off)."""
        removed = fault_store.clear(self.machine_dir, list(ids) if ids else None)
        self._refresh()
        return removed

    @property
    def injected(self) -> list[tuple[str, int, str, int]]:
        """The faults this process injected: (call, fault id, status name, device), oldest first."""
        return interface.injected_faults()

    def _refresh(self) -> None:
        interface.fault_plan_changed(self.machine_dir)


@dataclass
class EmulatedMachine:
    """An isolated simulated machine: its instance type, state directory, environment and fault plan."""

    instance_type: str
    state_dir: Path                       # NEURON_SIM_STATE_DIR (the machine's files are in machine_dir)
    env: dict[str, str] = field(default_factory=dict)   # the NEURON_* variables emulate set

    @property
    def machine(self):
        """The hardware model (devices, cores, memory) of this machine."""
        from neuron_sim.hardware.select import select_machine
        from neuron_sim.config import load_config
        config = load_config(self.environ())
        return select_machine(config.instance_type, config.topology_file, config.logical_nc_config)

    @property
    def machine_dir(self) -> Path:
        """Where the machine's lock files and fault plan live."""
        return machine_state_dir(self.environ())

    @property
    def faults(self) -> FaultPlan:
        return FaultPlan(self.machine_dir)

    def environ(self) -> dict[str, str]:
        """os.environ with this machine's settings: what a child process on this machine needs."""
        env = dict(os.environ)
        env.update(self.env)
        return env


__all__ = ["EmulatedMachine", "FaultPlan", "FaultPlanError"]
