"""Command-line faces: neuron-sim ls / neff / run."""
