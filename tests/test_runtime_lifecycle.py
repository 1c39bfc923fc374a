"""nrt_init / nrt_close lifecycle, counts before init, configuration errors surfacing as init statuses."""
from __future__ import annotations

import pytest

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder


def tiny_neff(target: str = "v2", lnc: int = 1) -> bytes:
    b = NeffBuilder("tiny", target=target)
    x = b.input("x", "float32", (2, 3))
    b.output("y", b.relu(x))
    return b.build(lnc_size=lnc)


def test_calls_before_init_are_uninitialized(capsys):
    status, model = nrt.nrt_load(tiny_neff(), -1, -1)
    assert status == nrt.NRT_UNINITIALIZED and model is None
    assert "nrt_load called before nrt_init()" in capsys.readouterr().err


def test_calls_after_close_are_closed():
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    nrt.nrt_close()
    status, _ = nrt.nrt_allocate_tensor_set()
    assert status == nrt.NRT_CLOSED


def test_second_init_fails_and_init_after_close_works(capsys):
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    assert nrt.nrt_init() == nrt.NRT_FAILURE
    assert "already initialized" in capsys.readouterr().err
    nrt.nrt_close()
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    status, model = nrt.nrt_load(tiny_neff(), -1, -1)
    assert status == 0 and model is not None


def test_counts_before_init_follow_the_environment(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf1.6xlarge")
    assert nrt.nrt_get_total_nc_count() == (0, 16)
    assert nrt.nrt_get_visible_nc_count() == (0, 16)
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    assert nrt.nrt_get_visible_nc_count() == (0, 3)
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "4-5")
    assert nrt.nrt_get_visible_nc_count() == (0, 2)
    assert nrt.nrt_get_total_vnc_count() == (0, 16)


def test_visible_cores_are_renumbered_from_zero(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf1.6xlarge")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "3-5")
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "1")  # VISIBLE wins
    import neuron_sim
    with neuron_sim.Runtime() as rt:
        assert rt.cores == (3, 4, 5)
        model = rt.load(tiny_neff(target="v1"), core=2)
        assert model.core == 2
        assert nrt.nrt_get_visible_nc_count() == (0, 3)


@pytest.mark.parametrize("value", ["3,5,6", "5-3", "a", "1-", "-1"])
def test_bad_visible_cores_fail_init_with_invalid(monkeypatch, capsys, value):
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", value)
    assert nrt.nrt_init() == nrt.NRT_INVALID
    err = capsys.readouterr().err
    assert "NEURON_RT_VISIBLE_CORES" in err and "NRT:nrt_init" in err


def test_visible_cores_out_of_range_is_invalid(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "1-2")
    assert nrt.nrt_init() == nrt.NRT_INVALID
    assert "NEURON_RT_VISIBLE_CORES" in capsys.readouterr().err


def test_num_cores_larger_than_machine_is_resource(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    assert nrt.nrt_init() == nrt.NRT_RESOURCE
    err = capsys.readouterr().err
    assert "Logical Neuron Core(s) not available - Requested:3 Available:2" in err
    assert "NEURON_RT_NUM_CORES" in err


def test_bad_exec_timeout_fails_init(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "soon")
    assert nrt.nrt_init() == nrt.NRT_INVALID
    assert "NEURON_RT_EXEC_TIMEOUT" in capsys.readouterr().err


def test_unknown_instance_type_fails_init(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn9.huge")
    assert nrt.nrt_init() == nrt.NRT_INVALID
    assert "NEURON_SIM_INSTANCE_TYPE" in capsys.readouterr().err


def test_version_and_instance_info_before_init(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_RUNTIME_VERSION", "2.20.1.0")
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf2.48xlarge")
    status, version = nrt.nrt_get_version()
    assert status == 0 and (version.rt_major, version.rt_minor, version.rt_patch) == (2, 20, 1)
    status, info = nrt.nrt_get_instance_info()
    assert status == 0 and info.family == nrt.INSTANCE_FAMILIES["INF2"] and info.size == nrt.INSTANCE_SIZES["48XL"]


def test_status_as_str():
    assert nrt.nrt_get_status_as_str(4) == "NRT_RESOURCE"
    assert nrt.nrt_get_status_as_str(1003) == "NRT_EXEC_COMPLETED_WITH_NUM_ERR"
    assert nrt.nrt_get_status_as_str(8) == "UNKNOWN"


def test_close_releases_cores_for_the_next_init(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    from neuron_sim.hardware.select import select_machine
    from neuron_sim.runtime.reservation import default_state_dir, list_holders
    machine = select_machine("trn1.2xlarge")
    state = default_state_dir(machine)
    assert nrt.nrt_init() == 0
    assert [h.physical_cores for h in list_holders(state, machine)] == [(0, 1)]
    nrt.nrt_close()
    assert list_holders(state, machine) == []


def test_memory_returns_to_baseline_after_close_and_reinit(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == 0
    base = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 1 << 20, "t")
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == base + (1 << 20)
    nrt.nrt_close()
    assert nrt.nrt_init() == 0
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == base
