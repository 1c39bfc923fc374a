"""Trace and profile files: neuron_sim's profile format, the Perfetto trace-event writer and merger."""
