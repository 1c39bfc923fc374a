"""Pick the simulated machine from the emulator settings (instance type, topology file, LNC).

A topology file wins over an instance type; neither set means ``DEFAULT_INSTANCE_TYPE``. Empty strings
count as unset (an exported but empty variable). Every error is a ``SelectionError`` (a ValueError)
whose message starts with the variable at fault and says the accepted form.
"""
from __future__ import annotations

from neuron_sim.hardware.catalog import INSTANCE_TYPES, LncError, build_machine
from neuron_sim.hardware.model import Machine
from neuron_sim.hardware.topology_file import TopologyError, load_topology

DEFAULT_INSTANCE_TYPE = "trn1.32xlarge"

INSTANCE_TYPE_VAR = "NEURON_SIM_INSTANCE_TYPE"
TOPOLOGY_VAR = "NEURON_SIM_TOPOLOGY"
LNC_VAR = "NEURON_LOGICAL_NC_CONFIG"


class SelectionError(ValueError):
    """A machine setting that cannot be used; ``variable`` names the environment variable at fault."""

    def __init__(self, variable: str, value: object, message: str) -> None:
        super().__init__(f"{variable}={value}: {message}")
        self.variable = variable


def select_machine(instance_type: str | None = None, topology_file: str | None = None,
                   lnc: int | None = None) -> Machine:
    """The Machine described by a topology file, else by an instance type, else the default type."""
    if lnc is not None and (isinstance(lnc, bool) or lnc not in (1, 2)):
        raise SelectionError(LNC_VAR, lnc, "must be 1 or 2 (physical NeuronCores per logical core)")
    if topology_file:
        try:
            return load_topology(topology_file, lnc)
        except TopologyError as exc:
            raise SelectionError(TOPOLOGY_VAR, topology_file,
                                 f"{exc} (schema: docs/hardware.md)") from None
        except LncError as exc:
            raise SelectionError(LNC_VAR, lnc, str(exc)) from None
    name = instance_type.strip().lower() if instance_type and instance_type.strip() else DEFAULT_INSTANCE_TYPE
    if name not in INSTANCE_TYPES:
        raise SelectionError(INSTANCE_TYPE_VAR, instance_type,
                             f"unknown instance type; accepted: {', '.join(INSTANCE_TYPES)}")
    try:
        return build_machine(name, lnc)
    except LncError as exc:
        raise SelectionError(LNC_VAR, lnc, str(exc)) from None
