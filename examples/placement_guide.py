"""Every example of the placement guide, run literally on its 8-NeuronCore machine; prints where each model went.

    python examples/placement_guide.py

Each example runs in a fresh runtime with the guide's environment; docs/placement.md walks through them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

NEFFS = Path(__file__).resolve().parent.parent / "neffs"
os.environ.setdefault("NEURON_SIM_STATE_DIR", tempfile.mkdtemp(prefix="neuron_sim_placement_"))
os.environ["NEURON_SIM_TOPOLOGY"] = str(NEFFS / "inf1_8core.topology.json")     # the guide's 8 NeuronCores

import neuron_sim  # noqa: E402


def model_with(cores: int) -> str:
    """The guide's 'model-with-N-neuron-pipeline-cores.pt' (compiled with --neuroncore-pipeline-cores N)."""
    return str(NEFFS / f"pipeline_{cores}core_inf1.neff")


def where(rt: neuron_sim.Runtime, model: neuron_sim.Model) -> str:
    """ncA-ncB of every copy, machine-wide numbering as in the guide."""
    spans = []
    for copy in model.copies:
        first, last = rt.cores[copy[0]], rt.cores[copy[-1]]
        spans.append(f"nc{first}" if first == last else f"nc{first}-nc{last}")
    return ", ".join(spans)


def example(title: str, **env: str):
    """Run the decorated script in a runtime configured with ``env``; print the cores of what it returns."""
    def run(script):
        with neuron_sim.Runtime(env=env) as rt:
            models = script(rt)
            print(f"{title} ({' '.join(f'{k}={v}' for k, v in env.items()) or 'no configuration'}); "
                  f"process cores nc{rt.cores[0]}-nc{rt.cores[-1]}")
            for name, model in models.items():
                print(f"    {name}: {where(rt, model)}")
        return script
    return run


@example("Default")
def default(rt):
    return {"m0": rt.load(model_with(1)), "m1": rt.load(model_with(1))}


@example("NEURON_RT_NUM_CORES", NEURON_RT_NUM_CORES="2")
def num_cores(rt):
    return {"m0": rt.load(model_with(1)), "m1": rt.load(model_with(1))}


@example("NEURON_RT_VISIBLE_CORES", NEURON_RT_VISIBLE_CORES="4-5")
def visible_cores(rt):
    return {"m0": rt.load(model_with(1)), "m1": rt.load(model_with(1))}


@example("Overlapping Models", NEURON_RT_VISIBLE_CORES="0-1")
def overlapping(rt):
    return {"m0": rt.load(model_with(1)), "m1": rt.load(model_with(2)), "m2": rt.load(model_with(1))}


@example("Single NeuronCore Group", NEURONCORE_GROUP_SIZES="4")
def single_group(rt):
    return {"m0": rt.load(model_with(4))}


@example("Multiple NeuronCore Groups", NEURONCORE_GROUP_SIZES="3,4,1")
def multiple_groups(rt):
    return {"m0": rt.load(model_with(3)), "m1": rt.load(model_with(4)), "m2": rt.load(model_with(1))}


@example("Issue: Overlapping Models with Differing Model Sizes", NEURONCORE_GROUP_SIZES="2,2")
def differing_sizes(rt):
    sizes = (2, 2, 1, 1, 1)
    return {f"m{i}": rt.load(model_with(n)) for i, n in enumerate(sizes)}


@example("Issue: Incompatible Model Sizes", NEURONCORE_GROUP_SIZES="2,2")
def incompatible_sizes(rt):
    return {"m0": rt.load(model_with(2)), "m1": rt.load(model_with(2)), "m2": rt.load(model_with(3))}


@example("Issue: Multiple Model Copies", NEURONCORE_GROUP_SIZES="2,2,2,2")
def multiple_copies(rt):
    return {f"models[{i}]": rt.load(model_with(2)) for i in range(4)}


@example("Manual Core Selection", NEURON_RT_NUM_CORES="4")
def manual(rt):
    # NOTE: Order of loads does NOT matter
    with neuron_sim.neuron_cores_context(2):
        m1 = rt.load(model_with(2))
    with neuron_sim.neuron_cores_context(0):
        m2 = rt.load(model_with(3))
    with neuron_sim.neuron_cores_context(0):
        m0 = rt.load(model_with(2))
    with neuron_sim.neuron_cores_context(3):
        m3 = rt.load(model_with(1))
    return {"m0": m0, "m1": m1, "m2": m2, "m3": m3}


@example("Automatic Multicore", NEURON_RT_NUM_CORES="8")
def multicore(rt):
    with neuron_sim.multicore_context():
        m0 = rt.load(model_with(1))
    return {"m0": m0}


@example("Explicit Replication", NEURON_RT_NUM_CORES="8")
def replication(rt):
    with neuron_sim.neuron_cores_context(start_nc=2, nc_count=4):
        m0 = rt.load(model_with(2))
    return {"m0": m0}
