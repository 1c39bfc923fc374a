"""The runtime layer: init/close, reservation, placement, memory, tensors, execution, async, clock.

Faces enter through ``neuron_sim.runtime.interface`` only.

State owned here: none (a package marker).
"""
