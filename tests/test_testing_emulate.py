"""neuron_sim.testing.emulate: one switch, as a context manager and as a decorator, leaving nothing behind."""
from __future__ import annotations

import os

import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.runtime import faults, lifecycle, references
from neuron_sim.testing import emulate


def test_context_manager_sets_and_restores_everything(monkeypatch):
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "7")
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "inf1.xlarge")
    neuron_sim.register_reference("outer", lambda inputs: {})
    with emulate("inf2.xlarge", env={"NEURON_RT_EXEC_TIMEOUT": 5}) as machine:
        assert "NEURON_RT_VISIBLE_CORES" not in os.environ
        assert os.environ["NEURON_SIM_INSTANCE_TYPE"] == "inf2.xlarge"
        assert os.environ["NEURON_RT_EXEC_TIMEOUT"] == "5"
        assert machine.state_dir.is_dir() and os.environ["NEURON_SIM_STATE_DIR"] == str(machine.state_dir)
        assert machine.machine.instance_type == "inf2.xlarge"
        assert machine.machine_dir == machine.state_dir / "inf2.xlarge"
        assert nrt.nrt_init() == 0 and nrt.nrt_get_visible_nc_count() == (0, 2)
        neuron_sim.register_reference("inner", lambda inputs: {})
        machine.faults.add("device_lost", device=0)
        assert nrt.nrt_tensor_allocate(0, 0, 8, "t")[0] == nrt.NRT_HW_ERROR
        state_dir = machine.state_dir
    assert lifecycle.peek() is None and faults.active is None
    assert not state_dir.exists()
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "7" and os.environ["NEURON_SIM_INSTANCE_TYPE"] == "inf1.xlarge"
    assert "NEURON_RT_EXEC_TIMEOUT" not in os.environ
    assert references.find_reference("inner", "") is None and references.find_reference("outer", "") is not None
    references.unregister_reference("outer")


def test_decorator_gives_each_call_a_fresh_machine():
    dirs = []

    @emulate(instance_type="trn1.2xlarge")
    def body():
        dirs.append(os.environ["NEURON_SIM_STATE_DIR"])
        assert lifecycle.peek() is None
        assert nrt.nrt_init() == 0                      # left open: emulate closes it
        return nrt.nrt_get_total_nc_count()[1]

    assert body() == 2 and body() == 2
    assert len(set(dirs)) == 2 and not any(os.path.exists(d) for d in dirs)
    assert lifecycle.peek() is None


def test_given_state_dir_is_kept_and_the_runtime_closed_even_on_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with emulate(state_dir=tmp_path / "mine") as machine:
            assert nrt.nrt_init() == 0
            1 / 0
    assert lifecycle.peek() is None
    assert (tmp_path / "mine").is_dir() and machine.instance_type == "trn1.32xlarge"


def test_a_closed_runtime_is_forgotten():
    with emulate():
        assert nrt.nrt_init() == 0
        nrt.nrt_close()
        assert nrt.nrt_load(b"", -1, -1)[0] == nrt.NRT_CLOSED
    with emulate():
        assert nrt.nrt_load(b"", -1, -1)[0] == nrt.NRT_UNINITIALIZED


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="emulate\\(clock='fast'\\): expected one of virtual, real"):
        emulate(clock="fast")
    outer = emulate()
    with outer:
        with pytest.raises(RuntimeError, match="already active"):
            outer.__enter__()


def test_real_clock_is_set():
    with emulate(clock="real"):
        assert os.environ["NEURON_SIM_CLOCK"] == "real"
        assert nrt.nrt_init() == 0
        from neuron_sim.runtime.clock import RealClock
        assert isinstance(lifecycle.peek().clock, RealClock)
