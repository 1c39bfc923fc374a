"""pytest plugin of neuron_sim (entry point ``pytest11``): fixtures for code that drives Neuron devices.

Fixtures: ``neuron_machine`` (a private simulated machine; ``@pytest.mark.parametrize("neuron_machine",
["inf2.xlarge"], indirect=True)`` picks the type), ``nrt`` (the flat face, initialised), ``neuron_runtime``
(the Pythonic runtime, started), ``neuron_faults`` (the machine's fault plan), ``neuron_process`` (start another
real process on the machine). Marker: ``@pytest.mark.neuron(instance_type=..., env={...}, shared=False,
clock="virtual")``; option ``--neuron-instance-type``. Every test gets its own state directory, so pytest-xdist
workers never collide; ``shared=True`` puts the test on one machine shared by all workers of the run.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:      # the runtime is imported when a fixture is first used, not when pytest starts
    from neuron_sim.testing.machine import EmulatedMachine, FaultPlan

SHARED_DIR_NAME = "neuron_sim-shared-machine"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("neuron_sim", "simulated Neuron machines (neuron_sim)")
    group.addoption("--neuron-instance-type", default=None, metavar="TYPE",
                    help="instance type of the neuron_machine fixture when a test does not choose one "
                         "(default: NEURON_SIM_INSTANCE_TYPE's default, trn1.32xlarge)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "neuron(instance_type=None, env=None, shared=False, clock='virtual'): the simulated machine "
                   "of the neuron_machine fixture (instance type, extra NEURON_* variables, machine shared "
                   "by all xdist workers, clock)")


def _shared_state_dir(factory: pytest.TempPathFactory) -> str:
    """One directory for the whole run: above the per-worker base directory under xdist."""
    base = factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / SHARED_DIR_NAME
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture
def neuron_machine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator["EmulatedMachine"]:
    """An isolated simulated machine: private state directory, NEURON_* environment set and restored."""
    marker = request.node.get_closest_marker("neuron")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    unknown = set(options) - {"instance_type", "env", "shared", "clock"}
    if unknown:
        pytest.fail(f"@pytest.mark.neuron got unknown argument(s) {sorted(unknown)}; "
                    "accepted: instance_type, env, shared, clock", pytrace=False)
    if marker is not None and marker.args:
        options.setdefault("instance_type", marker.args[0])
    instance_type = (getattr(request, "param", None) or options.get("instance_type")
                     or request.config.getoption("neuron_instance_type"))
    state_dir = _shared_state_dir(tmp_path_factory) if options.get("shared") else None
    from neuron_sim.testing.emulate import emulate
    try:
        machine_cm = emulate(instance_type, options.get("env"), state_dir, options.get("clock", "virtual"))
    except (TypeError, ValueError) as exc:
        pytest.fail(f"@pytest.mark.neuron / --neuron-instance-type: {exc}", pytrace=False)
    with machine_cm as machine:
        yield machine


@pytest.fixture(autouse=True)
def _neuron_marked(request: pytest.FixtureRequest) -> None:
    """A test marked ``@pytest.mark.neuron`` runs on its machine even when it asks for no neuron fixture."""
    if request.node.get_closest_marker("neuron") is not None:
        request.getfixturevalue("neuron_machine")


@pytest.fixture
def nrt(neuron_machine: "EmulatedMachine") -> Iterator[Any]:
    """The flat libnrt face (``neuron_sim.nrt``) after a successful nrt_init; nrt_close afterwards."""
    from neuron_sim import nrt as flat
    status = flat.nrt_init(flat.NRT_FRAMEWORK_TYPE_NO_FW, "", "")
    if status != flat.NRT_SUCCESS:
        pytest.fail(f"nrt fixture: nrt_init returned {flat.nrt_get_status_as_str(status)} on "
                    f"{neuron_machine.instance_type} (see the log lines above)", pytrace=False)
    yield flat
    flat.nrt_close()


@pytest.fixture
def neuron_runtime(neuron_machine: "EmulatedMachine") -> Iterator[Any]:
    """A started ``neuron_sim.Runtime`` on the test's machine; closed afterwards."""
    from neuron_sim import Runtime
    with Runtime() as rt:
        yield rt


@pytest.fixture
def neuron_faults(neuron_machine: "EmulatedMachine") -> Iterator["FaultPlan"]:
    """The machine's fault plan: ``neuron_faults.add("execute", "NRT_TIMEOUT", nth=2)``; cleared afterwards."""
    plan = neuron_machine.faults
    before = {f.id for f in plan.list()}
    yield plan
    added = [f.id for f in plan.list() if f.id not in before]
    if added:
        plan.clear(*added)


@pytest.fixture
def neuron_process(neuron_machine: "EmulatedMachine") -> Iterator[Any]:
    """Start another real process on the machine: ``neuron_process(cores="0-1")`` holds those cores until
    the test ends; ``neuron_process(argv=[...])`` runs your own command with the machine's environment."""
    from neuron_sim.testing.processes import NeuronProcess, holder_argv
    started: list[NeuronProcess] = []

    def start(cores: str | None = None, num_cores: int | None = None, env: dict[str, str] | None = None,
              argv: list[str] | None = None) -> NeuronProcess:
        environ = neuron_machine.environ()
        if cores is not None:
            environ["NEURON_RT_VISIBLE_CORES"] = str(cores)
        if num_cores is not None:
            environ["NEURON_RT_NUM_CORES"] = str(num_cores)
        environ.update(env or {})
        proc = NeuronProcess(argv or holder_argv(), environ)
        started.append(proc)
        if argv is None:
            proc.wait_ready()
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
