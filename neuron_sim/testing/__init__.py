"""Testing code against neuron_sim: ``emulate(...)`` (one switch, as a context manager or decorator), the
simulated machine it yields with its fault plan, and the pytest plugin (``neuron_sim.testing.pytest_plugin``,
registered through the ``pytest11`` entry point).
"""
from __future__ import annotations

from neuron_sim.runtime.fault_plan import Fault, FaultPlanError
from neuron_sim.runtime.interface import pause_core
from neuron_sim.testing.emulate import emulate
from neuron_sim.testing.machine import EmulatedMachine, FaultPlan

__all__ = ["EmulatedMachine", "Fault", "FaultPlan", "FaultPlanError", "emulate", "pause_core"]
