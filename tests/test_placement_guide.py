"""The placement guide (spec seed 002), example by example, on its 8-NeuronCore machine; seed 003's alignment advice.

Every test is named after the guide's example and asserts the exact machine-wide cores of every model.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from tests.conftest import NEFFS, REPO

MACHINE = {"NEURON_SIM_TOPOLOGY": str(NEFFS / "inf1_8core.topology.json")}
M1, M2, M3, M4 = (str(NEFFS / f"pipeline_{n}core_inf1.neff") for n in (1, 2, 3, 4))


def runtime(**env: str) -> neuron_sim.Runtime:
    return neuron_sim.Runtime(env={**MACHINE, **env}).start()


def on(rt: neuron_sim.Runtime, model: neuron_sim.Model) -> list[int]:
    """Machine-wide cores of the model's first copy (the guide's ncN)."""
    return [rt.cores[v] for v in model.cores]


def copies_on(rt: neuron_sim.Runtime, model: neuron_sim.Model) -> list[list[int]]:
    return [[rt.cores[v] for v in copy] for copy in model.copies]


def nc(a: int, b: int | None = None) -> list[int]:
    return list(range(a, (a if b is None else b) + 1))


# ---- Default Core Allocation & Placement ---------------------------------------------------------------------------
def test_example_default():
    rt = runtime()
    m0, m1 = rt.load(M1), rt.load(M1)
    assert rt.cores == tuple(nc(0, 7))              # the process owns all NeuronCores, 6 left idle
    assert (on(rt, m0), on(rt, m1)) == (nc(0), nc(1))


def test_example_neuron_rt_num_cores():
    rt = runtime(NEURON_RT_NUM_CORES="2")
    m0, m1 = rt.load(M1), rt.load(M1)
    assert rt.cores == (0, 1)
    assert (on(rt, m0), on(rt, m1)) == (nc(0), nc(1))


def test_example_neuron_rt_visible_cores():
    rt = runtime(NEURON_RT_VISIBLE_CORES="4-5")
    m0, m1 = rt.load(M1), rt.load(M1)
    assert (on(rt, m0), on(rt, m1)) == (nc(4), nc(5))


def test_example_overlapping_models():
    rt = runtime(NEURON_RT_VISIBLE_CORES="0-1")
    m0, m1, m2 = rt.load(M1), rt.load(M2), rt.load(M1)
    assert (on(rt, m0), on(rt, m1), on(rt, m2)) == (nc(0), nc(0, 1), nc(1))


SCRIPT = """
import json, neuron_sim
rt = neuron_sim.Runtime().start()
m0, m1 = rt.load({m1!r}), rt.load({m1!r})
print(json.dumps([rt.cores, [rt.cores[m0.core], rt.cores[m1.core]]]))
rt.close()
"""


def test_example_multiple_processes(isolated_runtime):
    """The script run twice with NEURON_RT_NUM_CORES=2: nc0-1 for the first process, nc2-3 for the second."""
    first = runtime(NEURON_RT_NUM_CORES="2")
    m0, m1 = first.load(M1), first.load(M1)
    env = {**os.environ, **MACHINE, "NEURON_RT_NUM_CORES": "2", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(m1=M1)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert (first.cores, on(first, m0), on(first, m1)) == ((0, 1), nc(0), nc(1))
    assert out.stdout.strip() == "[[2, 3], [2, 3]]"


# ---- NEURONCORE_GROUP_SIZES ----------------------------------------------------------------------------------------
def test_example_single_neuroncore_group():
    rt = runtime(NEURONCORE_GROUP_SIZES="4")
    m0 = rt.load(M4)
    assert rt.cores == (0, 1, 2, 3)                  # the process takes sum(sizes) NeuronCores
    assert on(rt, m0) == nc(0, 3)


def test_example_multiple_neuroncore_groups():
    rt = runtime(NEURONCORE_GROUP_SIZES="3,4,1")
    m0, m1, m2 = rt.load(M3), rt.load(M4), rt.load(M1)
    assert rt.cores == tuple(nc(0, 7))
    assert (on(rt, m0), on(rt, m1), on(rt, m2)) == (nc(0, 2), nc(3, 6), nc(7))


def test_issue_overlapping_models_with_differing_model_sizes():
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2")
    models = [rt.load(p) for p in (M2, M2, M1, M1, M1)]
    assert [on(rt, m) for m in models] == [nc(0, 1), nc(2, 3), nc(0), nc(2), nc(0)]   # m4 not on nc1


def test_issue_overlapping_models_load_order_changes_groups():
    """"If the order of the load statements is changed, models may be assigned to different groups"."""
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2")
    models = [rt.load(p) for p in (M1, M2, M2, M1, M1)]
    assert [on(rt, m) for m in models] == [nc(0), nc(2, 3), nc(0, 1), nc(2), nc(0)]


def test_issue_incompatible_model_sizes(capsys):
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2", NEURON_RT_LOG_LEVEL="WARN")
    m0, m1, m2 = rt.load(M2), rt.load(M2), rt.load(M3)
    assert (on(rt, m0), on(rt, m1), on(rt, m2)) == (nc(0, 1), nc(2, 3), nc(0, 2))
    assert "fits in no NeuronCore group of NEURONCORE_GROUP_SIZES=2,2: placed across groups on NC 0-2" \
        in capsys.readouterr().err


def test_issue_multiple_model_copies():
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2,2,2")
    models = [rt.load(M2) for _ in range(4)]
    assert [on(rt, m) for m in models] == [nc(0, 1), nc(2, 3), nc(4, 5), nc(6, 7)]
    assert all(m.instance_count == 1 for m in models)   # manual replication: four handles


def test_neuroncore_group_sizes_deprecation_warning(capsys):
    runtime(NEURONCORE_GROUP_SIZES="4", NEURON_RT_LOG_LEVEL="WARN")
    err = capsys.readouterr().err
    assert "WARN   NRT:nrt_init" in err
    assert "NEURONCORE_GROUP_SIZES is being deprecated in a future release and should be avoided in favor of " \
           "newer placement methods" in err


def test_neuroncore_groups_lie_over_visible_cores():
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2", NEURON_RT_VISIBLE_CORES="4-7")
    models = [rt.load(p) for p in (M2, M2, M1)]
    assert [on(rt, m) for m in models] == [nc(4, 5), nc(6, 7), nc(4)]


def test_neuroncore_groups_larger_than_visible_cores_fail_init(capsys):
    with pytest.raises(neuron_sim.NrtError) as err:
        runtime(NEURONCORE_GROUP_SIZES="2,2,2", NEURON_RT_VISIBLE_CORES="4-7")
    assert err.value.status == neuron_sim.NrtStatus.INVALID
    assert "NEURONCORE_GROUP_SIZES=2,2,2 needs 6 NeuronCores but NEURON_RT_VISIBLE_CORES gives 4" in err.value.message


def test_explicit_start_wins_over_neuroncore_groups():
    rt = runtime(NEURONCORE_GROUP_SIZES="2,2")
    assert on(rt, rt.load(M1, start_core=3)) == nc(3)


# ---- Explicit Core Placement ---------------------------------------------------------------------------------------
MANUAL = {"m1": (2, M2, nc(2, 3)), "m2": (0, M3, nc(0, 2)), "m0": (0, M2, nc(0, 1)), "m3": (3, M1, nc(3))}


def test_example_manual_core_selection():
    rt = runtime(NEURON_RT_NUM_CORES="4")
    with neuron_sim.neuron_cores_context(2):
        m1 = rt.load(M2)
    with neuron_sim.neuron_cores_context(0):
        m2 = rt.load(M3)
    with neuron_sim.neuron_cores_context(0):
        m0 = rt.load(M2)
    with neuron_sim.neuron_cores_context(3):
        m3 = rt.load(M1)
    assert (on(rt, m0), on(rt, m1), on(rt, m2), on(rt, m3)) == (nc(0, 1), nc(2, 3), nc(0, 2), nc(3))


@pytest.mark.parametrize("order", list(itertools.permutations(MANUAL)), ids="-".join)
def test_example_manual_core_selection_order_of_loads_does_not_matter(order):
    rt = runtime(NEURON_RT_NUM_CORES="4")
    for name in order:
        start, path, expected = MANUAL[name]
        with neuron_sim.neuron_cores_context(start):
            assert on(rt, rt.load(path)) == expected, name
    rt.close()


def test_example_automatic_multicore():
    rt = runtime(NEURON_RT_NUM_CORES="8")
    with neuron_sim.multicore_context():
        m0 = rt.load(M1)
    assert copies_on(rt, m0) == [nc(i) for i in range(8)]
    assert m0.instance_count == 8
    x = np.ones((4, 32), np.float32)
    expected = m0(x=x)["y"]
    for _ in range(15):
        np.testing.assert_array_equal(m0(x=x)["y"], expected)
    calls = [copy.cores[0].stats["completed"] for copy in m0.handle.copies]
    assert calls == [2] * 8                                   # 16 calls spread over the 8 copies


def test_example_automatic_multicore_same_code_on_a_smaller_machine():
    """"The exact same loading logic can be used on an inf1.xlarge or an inf1.6xlarge"."""
    for instance, cores in (("inf1.xlarge", 4), ("inf1.6xlarge", 16)):
        rt = neuron_sim.Runtime(env={"NEURON_SIM_INSTANCE_TYPE": instance}).start()
        with neuron_sim.multicore_context():
            m0 = rt.load(M1)
        assert copies_on(rt, m0) == [nc(i) for i in range(cores)]
        rt.close()


def test_example_explicit_replication():
    rt = runtime(NEURON_RT_NUM_CORES="8")
    with neuron_sim.neuron_cores_context(start_nc=2, nc_count=4):
        m0 = rt.load(M2)
    assert copies_on(rt, m0) == [nc(2, 3), nc(4, 5)]          # floor(4 / 2) = 2 replications on nc2-nc5
    assert m0.instance_count == 2


def test_load_keywords_equal_the_context():
    rt = runtime()
    assert copies_on(rt, rt.load(M2, start_core=2, core_count=5)) == [nc(2, 3), nc(4, 5)]
    with pytest.raises(neuron_sim.NrtError) as err:
        rt.load(M3, start_core=0, core_count=2)
    assert err.value.status == neuron_sim.NrtStatus.LOAD_NOT_ENOUGH_NC


def test_flat_face_replicated_load_runs_on_the_copy_holding_the_inputs():
    os.environ.update(MACHINE)      # emulate() restores the environment after the test
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    status, model = nrt.nrt_load(open(M1, "rb").read(), 0, 8)
    assert status == 0 and nrt.nrt_get_model_instance_count(model) == (0, 8)
    tensors = {}
    for vnc in (0, 5):
        ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
        x = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, vnc, 512, "x")[1]
        y = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, vnc, 512, "y")[1]
        nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
        nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
        tensors[vnc] = (ins, outs)
    for vnc, (ins, outs) in tensors.items():
        assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS   # not "incorrect HBM": copy vnc ran it
    assert nrt.nrt_unload(model) == 0
    nrt.nrt_close()


# ---- seed 003: alignment of multi-core jobs ------------------------------------------------------------------------
@pytest.mark.parametrize("visible, warned", [("1-2", True), ("2-3", False), ("0-7", False), ("3", False)])
def test_misaligned_multicore_reservation_warns(capsys, visible, warned):
    runtime(NEURON_RT_VISIBLE_CORES=visible, NEURON_RT_LOG_LEVEL="WARN")
    err = capsys.readouterr().err
    assert ("not a multiple of 2" in err) is warned
    if warned:
        assert "NEURON_RT_VISIBLE_CORES=0-1" in err
