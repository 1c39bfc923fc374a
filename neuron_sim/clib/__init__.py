"""The C face: a drop-in ``libnrt.so.1`` (cffi embedding) whose functions call the same runtime as ``neuron_sim.nrt``.

``build`` compiles it into the per-user cache; ``exports`` is the Python side of each C function;
``handles`` maps opaque C pointers to runtime objects; ``environment`` gives the settings that put the
library in front of a program (``neuron-sim run`` / ``neuron-sim env``).
"""
