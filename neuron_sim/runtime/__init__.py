"""The runtime layer: init/close, reservation, placement, memory, tensors, execution, async, clock."""
