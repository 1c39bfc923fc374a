"""Pictures of a simulated machine: NeuronCore placement and HBM usage (``neuron-sim draw``).

``scene`` reads what to draw from the machine's state directory (published runtime records, the memory
ledger) without any plotting library; ``render`` draws it with matplotlib (the ``draw`` extra).
"""
