"""Simulated hardware: the instance catalog, devices, NeuronCores and HBM banks."""
