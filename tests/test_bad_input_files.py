"""Files that are not regular files (a FIFO, /dev/zero, a directory) and malformed specs given to the new
faces and tools: each gets a message naming the cause and the accepted form, never a hang or a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from neuron_sim.cli import monitor, neff_cmd
from neuron_sim.runtime import fault_plan, interface
from neuron_sim.runtime.fault_plan import FaultPlanError

NOT_REGULAR = ["fifo", "/dev/zero", "dir"]


@pytest.fixture
def not_regular(tmp_path):
    """Path of a FIFO, /dev/zero or a directory: reading any of them as a file would block or never end."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    return lambda name: name if name.startswith("/") else str(tmp_path / name)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", NOT_REGULAR)
def test_monitor_config_must_be_a_regular_file(not_regular, name):
    with pytest.raises(monitor.ConfigError, match="regular file|Is a directory"):
        monitor.load_config(not_regular(name))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", NOT_REGULAR)
def test_fault_plan_file_must_be_a_regular_file(not_regular, name):
    with pytest.raises(FaultPlanError, match="must be a regular file.*expected a JSON file path"):
        fault_plan.load_plan_text(not_regular(name))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", NOT_REGULAR)
def test_neff_file_must_be_a_regular_file(not_regular, name):
    with pytest.raises(OSError, match="a NEFF must be a regular file"):
        interface.read_neff_file(not_regular(name))


@pytest.mark.timeout(60)
def test_nrtpy_load_from_fifo_is_an_nrt_error_not_a_hang(not_regular):
    code = ("from neuron_sim.nrtpy import NrtpyModel, NrtError\n"
            f"try:\n    NrtpyModel.load_from_neff({not_regular('fifo')!r})\n"
            "except NrtError as e:\n    print('STATUS', e.status.name)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert "STATUS FAILURE" in proc.stdout, proc.stderr
    assert "a NEFF must be a regular file" in proc.stderr


@pytest.mark.timeout(20)
def test_neff_build_refuses_a_fifo_spec(not_regular, tmp_path, capsys):
    assert neff_cmd.main(["build", not_regular("fifo"), str(tmp_path / "o.neff")]) == 1
    assert "is not a regular file; SPEC is a .py file" in capsys.readouterr().err
    assert not (tmp_path / "o.neff").exists()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(doc=JSON)
def test_neff_build_json_spec_garbage_names_the_form(tmp_path_factory, doc):
    spec = tmp_path_factory.mktemp("spec") / "s.json"
    spec.write_text(json.dumps(doc))
    with pytest.raises(neff_cmd.CliError, match="expected a JSON object"):
        neff_cmd._build_json(str(spec), neff_cmd.argparse.Namespace(name=None, target=None, lnc_size=None))


@settings(max_examples=150, deadline=None)
@given(call=JSON)
def test_fault_call_of_any_json_value_is_a_plan_error(call):
    try:
        fault_plan.parse_plan([{"call": call, "status": "NRT_TIMEOUT"}])
    except FaultPlanError as exc:
        assert "expected one of" in str(exc) or "cannot be injected" in str(exc)
        if call is not None and not isinstance(call, str):
            assert "is not a name" in str(exc)


def test_libnrt_cache_dir_that_is_a_file_is_named(tmp_path, monkeypatch):
    pytest.importorskip("cffi")
    from neuron_sim.clib import build
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("NEURON_SIM_CACHE_DIR", str(tmp_path / "file"))
    monkeypatch.setattr(build, "check_toolchain", lambda *a, **k: None)
    with pytest.raises(build.LibnrtBuildError, match="cannot create the library cache .*NEURON_SIM_CACHE_DIR"):
        build.build()


def test_relative_cache_dir_becomes_absolute(tmp_path, monkeypatch):
    from neuron_sim.clib import build
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEURON_SIM_CACHE_DIR", "rel")
    assert build.cache_root() == tmp_path / "rel"


MARKED = '''
import os, pytest

@pytest.mark.neuron(instance_type={arg})
def test_marked():
    assert os.environ["NEURON_SIM_INSTANCE_TYPE"] == "inf2.xlarge"
'''


@pytest.mark.parametrize("arg, message", [
    ('"bogus"', "unknown instance type; accepted: inf1.xlarge"),
    ("3", "expected a name such as 'trn1.2xlarge'"),
    ('"inf2.xlarge", env="X=1"', "expected a dict of variable name -> value"),
])
def test_marker_bad_arguments_fail_setup_naming_the_form(pytester, arg, message):
    pytester.makepyfile(MARKED.format(arg=arg))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.neuron*{message}*"])
    assert "Traceback" not in result.stdout.str()


def test_marker_alone_gives_the_test_its_machine(pytester):
    """A marked test that asks for no neuron fixture still runs on the marked machine."""
    pytester.makepyfile(MARKED.format(arg='"inf2.xlarge"'))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_emulate_refuses_bad_arguments_before_touching_the_environment(monkeypatch):
    from neuron_sim.testing import emulate
    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "7")
    before = dict(os.environ)
    for kwargs in ({"instance_type": 3}, {"env": "X=1"}, {"env": {1: "x"}}, {"instance_type": "nope"}):
        with pytest.raises((TypeError, ValueError), match="emulate"):
            with emulate(**kwargs):
                pass
    assert dict(os.environ) == before
