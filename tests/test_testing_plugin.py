"""The pytest plugin, run on user test files with pytester: fixtures, marker, option, isolation, xdist."""
from __future__ import annotations

import os

import pytest

from tests.conftest import NEFFS

pytestmark = pytest.mark.timeout(180)

HEADER = f'''
import os
import numpy as np
import pytest
import neuron_sim
NEFF = {str(NEFFS / "mlp_inf2.neff")!r}
'''


def test_user_file_with_only_the_marker_and_fixtures_runs_green(pytester):
    pytester.makepyfile(HEADER + '''
@pytest.mark.neuron(instance_type="inf2.xlarge", env={"NEURON_RT_EXEC_TIMEOUT": "5"})
def test_flat(nrt, neuron_machine):
    assert nrt.nrt_get_visible_nc_count() == (0, 2)
    assert os.environ["NEURON_RT_EXEC_TIMEOUT"] == "5"
    status, model = nrt.nrt_load(open(NEFF, "rb").read(), -1, -1)
    assert status == nrt.NRT_SUCCESS

@pytest.mark.neuron("inf2.xlarge")
def test_pythonic_and_faults(neuron_runtime, neuron_faults):
    model = neuron_runtime.load(NEFF)
    x = {name: np.ones(info.shape, info.dtype) for name, info in model.inputs.items()}
    model(**x)
    neuron_faults.add("execute", "NRT_TIMEOUT")
    with pytest.raises(neuron_sim.NrtError) as info:
        model(**x)
    assert info.value.status == neuron_sim.NrtStatus.TIMEOUT
    model(**x)

@pytest.mark.parametrize("neuron_machine", ["trn1.2xlarge", "inf2.24xlarge"], indirect=True)
def test_parametrised_machine(neuron_machine, nrt):
    assert nrt.nrt_get_total_nc_count()[1] == {"trn1.2xlarge": 2, "inf2.24xlarge": 12}[neuron_machine.instance_type]

def test_default_from_the_option(neuron_machine, nrt):
    assert neuron_machine.instance_type == "trn2.3xlarge"
    assert nrt.nrt_get_instance_info()[1].family == 5

@pytest.mark.neuron(instance_type="inf2.xlarge")
def test_other_process_holds_a_core(neuron_process, neuron_machine):
    holder = neuron_process(cores="0")
    assert holder.ready_line == "READY 1"
    from neuron_sim import nrt
    assert nrt.nrt_init() == nrt.NRT_RESOURCE
    os.environ["NEURON_RT_VISIBLE_CORES"] = "1"
    assert nrt.nrt_init() == nrt.NRT_SUCCESS

def test_own_command_on_the_machine(neuron_process, neuron_machine):
    import sys
    proc = neuron_process(argv=[sys.executable, "-c", "import os; print(os.environ['NEURON_SIM_STATE_DIR'])"])
    assert proc.popen.stdout.readline().strip() == str(neuron_machine.state_dir)
    assert proc.stop() == 0
''')
    result = pytester.runpytest("--neuron-instance-type", "trn2.3xlarge", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)


def test_isolation_between_tests(pytester):
    pytester.makepyfile(HEADER + '''
seen = {}

def test_a_leaves_a_mess(neuron_machine, neuron_faults):
    from neuron_sim import nrt
    os.environ["NEURON_RT_VISIBLE_CORES"] = "0"
    neuron_sim.register_reference("leaked", lambda inputs: {})
    neuron_faults.add("execute", "NRT_TIMEOUT", sticky=True)
    assert nrt.nrt_init() == 0                      # never closed
    seen["dir"] = neuron_machine.state_dir

def test_b_starts_clean(neuron_machine, neuron_faults):
    from neuron_sim.runtime import faults, lifecycle, references
    assert lifecycle.peek() is None
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ
    assert references.find_reference("leaked", "") is None
    assert faults.active is None and neuron_faults.list() == ()
    assert neuron_machine.state_dir != seen["dir"] and not seen["dir"].exists()
    from neuron_sim import nrt
    assert nrt.nrt_init() == 0 and nrt.nrt_get_visible_nc_count()[1] == 32

def test_c_no_machine_no_trace():
    from neuron_sim.runtime import lifecycle
    assert lifecycle.peek() is None and not any(k.startswith("NEURON_SIM_STATE") for k in os.environ
                                                if os.environ[k] == str(seen["dir"]))
''')
    before = {k: v for k, v in os.environ.items() if k.startswith("NEURON")}
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(passed=3)
    assert {k: v for k, v in os.environ.items() if k.startswith("NEURON")} == before


def test_shared_machine_is_one_state_directory(pytester):
    pytester.makepyfile('''
import pytest

@pytest.mark.neuron(shared=True)
def test_one(neuron_machine):
    (neuron_machine.state_dir / "left_by_one").write_text("x")

@pytest.mark.neuron(shared=True)
def test_two(neuron_machine):
    assert (neuron_machine.state_dir / "left_by_one").exists()

def test_private(neuron_machine):
    assert not (neuron_machine.state_dir / "left_by_one").exists()
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_bad_marker_argument_fails_with_the_accepted_ones(pytester):
    pytester.makepyfile('''
import pytest

@pytest.mark.neuron(instance="inf2.xlarge")
def test_typo(neuron_machine):
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "unknown argument(s) ['instance']; accepted: instance_type, env, shared, clock" in result.stdout.str()


def test_xdist_workers_run_in_parallel_without_collisions(pytester):
    """Every test takes all cores of the same instance type at the same time; private machines never collide."""
    pytester.makepyfile('''
import time
import pytest

@pytest.mark.parametrize("i", range(8))
@pytest.mark.neuron(instance_type="trn1.2xlarge")
def test_hold_every_core(nrt, neuron_faults, i):
    neuron_faults.add("load", "NRT_FAILURE", nth=99)
    assert nrt.nrt_get_visible_nc_count() == (0, 2)
    time.sleep(0.2)                       # overlap with the other worker's tests
    assert [f.nth for f in neuron_faults.list()] == [99]
''')
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*2 workers*"])
