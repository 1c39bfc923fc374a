"""load_config: every variable's valid and invalid forms, defaults, precedence, version gating, deprecations."""
from __future__ import annotations

import dataclasses

import pytest

from neuron_sim.config import (
    DEFAULT_RUNTIME_VERSION,
    ConfigError,
    RuntimeConfig,
    check_cores_in_range,
    load_config,
    runtime_version_string,
)
from neuron_sim.status import NrtStatus


def _error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.status == NrtStatus.INVALID
    return info.value


def test_defaults_match_an_unset_environment():
    config = load_config({})
    assert config == RuntimeConfig()
    assert config.visible_cores is None
    assert config.num_cores == 0
    assert config.logical_nc_config is None
    assert config.log_level == "ERROR"
    assert config.log_location == "console"
    assert dict(config.component_log_levels) == {} and dict(config.component_log_locations) == {}
    assert config.exec_timeout_s == 30.0
    assert config.validate_hash is False
    assert config.shared_weights is False
    assert config.async_max_inflight == 0
    assert config.allow_legacy_neff is False
    assert config.reset_cores is True
    assert config.stochastic_rounding is False
    assert config.stochastic_rounding_seed == 0
    assert config.low_latency_cpu_affinity is None
    assert config.numerical_errors_verbosity == "none"
    assert config.neuroncore_group_sizes is None
    assert config.scratchpad_page_size_mb == 512
    assert config.process_tag is None
    assert (config.instance_type, config.topology_file, config.state_dir) == (None, None, None)
    assert config.clock == "virtual"
    assert config.runtime_version == (2, 25, 57, 0) == DEFAULT_RUNTIME_VERSION
    assert config.log_format == "text"
    assert config.fill == "zero"
    assert config.warnings == ()


def test_empty_values_count_as_unset():
    env = {name: "" for name in ("NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES", "NEURON_RT_LOG_LEVEL",
                                 "NEURON_RT_EXEC_TIMEOUT", "NEURON_SIM_CLOCK", "NEURON_RT_LOG_LEVEL_TDRV")}
    env["NEURON_RT_VALIDATE_HASH"] = "  "
    assert load_config(env) == RuntimeConfig()


def test_config_is_frozen():
    config = load_config({"NEURON_RT_LOG_LEVEL_TDRV": "DEBUG"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_cores = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.component_log_levels["NRT"] = "INFO"  # type: ignore[index]


def test_reads_os_environ_when_none(monkeypatch):
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    assert load_config().num_cores == 3
    assert load_config(None).num_cores == 3


# ------------------------------------------------------------------------------------------ cores
@pytest.mark.parametrize("text, cores", [("3", (3,)), ("3-5", (3, 4, 5)), ("3-5,6", (3, 4, 5, 6)), ("3,4,5", (3, 4, 5))])
def test_visible_cores_forms(text, cores):
    assert load_config({"NEURON_RT_VISIBLE_CORES": text}).visible_cores == cores


def test_visible_cores_invalid_message():
    error = _error({"NEURON_RT_VISIBLE_CORES": "3,5,6"})
    assert error.variable == "NEURON_RT_VISIBLE_CORES"
    assert "NEURON_RT_VISIBLE_CORES=3,5,6 is invalid: cores must be a single index, an inclusive range a-b, " \
           "or a contiguous increasing list such as 3-5,6" in str(error)


def test_visible_cores_and_num_cores_are_both_kept_for_the_allocator():
    config = load_config({"NEURON_RT_VISIBLE_CORES": "0-1", "NEURON_RT_NUM_CORES": "4"})
    assert config.visible_cores == (0, 1) and config.num_cores == 4


def test_num_cores_forms():
    assert load_config({"NEURON_RT_NUM_CORES": "0"}).num_cores == 0
    assert load_config({"NEURON_RT_NUM_CORES": "16"}).num_cores == 16
    assert "NEURON_RT_NUM_CORES=-1 is invalid: expected an integer from 0" in str(_error({"NEURON_RT_NUM_CORES": "-1"}))
    assert _error({"NEURON_RT_NUM_CORES": "all"}).variable == "NEURON_RT_NUM_CORES"


def test_check_cores_in_range():
    config = load_config({"NEURON_RT_VISIBLE_CORES": "6-7"})
    check_cores_in_range(config, 8)
    check_cores_in_range(RuntimeConfig(), 0)
    with pytest.raises(ConfigError) as info:
        check_cores_in_range(config, 4)
    assert info.value.status == NrtStatus.INVALID
    assert "NEURON_RT_VISIBLE_CORES=6-7 is invalid: cores must lie in 0-3 on this machine (4 NeuronCores)" in str(info.value)
    with pytest.raises(ConfigError, match="NEURON_RT_VISIBLE_CORES=7 is invalid: cores must lie in 0-6"):
        check_cores_in_range(load_config({"NEURON_RT_VISIBLE_CORES": "7"}), 7)
    with pytest.raises(ConfigError, match="this machine has no NeuronCores"):
        check_cores_in_range(load_config({"NEURON_RT_VISIBLE_CORES": "0"}), 0)


# ------------------------------------------------------------------------------------------ LNC
@pytest.mark.parametrize("value", ["1", "2"])
def test_logical_nc_config(value):
    assert load_config({"NEURON_LOGICAL_NC_CONFIG": value}).logical_nc_config == int(value)


def test_logical_nc_config_rejects_other_sizes():
    error = _error({"NEURON_LOGICAL_NC_CONFIG": "4"})
    assert "NEURON_LOGICAL_NC_CONFIG=4 is invalid: expected one of 1, 2" in str(error)


def test_old_lnc_name_works_with_warning():
    config = load_config({"NEURON_RT_VIRTUAL_CORE_SIZE": "2"})
    assert config.logical_nc_config == 2
    assert any("old name of NEURON_LOGICAL_NC_CONFIG" in w for w in config.warnings)


def test_new_lnc_name_wins_over_old():
    config = load_config({"NEURON_RT_VIRTUAL_CORE_SIZE": "2", "NEURON_LOGICAL_NC_CONFIG": "1"})
    assert config.logical_nc_config == 1
    assert any("NEURON_RT_VIRTUAL_CORE_SIZE=2 is ignored" in w for w in config.warnings)
    assert load_config({"NEURON_RT_VIRTUAL_CORE_SIZE": "1", "NEURON_LOGICAL_NC_CONFIG": "1"}).warnings == ()
    assert _error({"NEURON_RT_VIRTUAL_CORE_SIZE": "3"}).variable == "NEURON_RT_VIRTUAL_CORE_SIZE"


# ------------------------------------------------------------------------------------------ logging
@pytest.mark.parametrize("text, level", [("WARN", "WARN"), ("WARNING", "WARN"), ("info", "INFO"), ("QUIET", "QUIET"),
                                         ("TRACE", "TRACE"), ("DEBUG", "DEBUG"), ("ERROR", "ERROR")])
def test_log_level(text, level):
    assert load_config({"NEURON_RT_LOG_LEVEL": text}).log_level == level


def test_log_level_invalid():
    assert "NEURON_RT_LOG_LEVEL=LOUD is invalid: expected one of ERROR, WARN, WARNING, INFO, DEBUG, TRACE, QUIET" in str(
        _error({"NEURON_RT_LOG_LEVEL": "LOUD"})
    )


def test_log_location():
    assert load_config({"NEURON_RT_LOG_LOCATION": "syslog"}).log_location == "syslog"
    assert load_config({"NEURON_RT_LOG_LOCATION": "console"}).log_location == "console"
    assert "expected console or syslog" in str(_error({"NEURON_RT_LOG_LOCATION": "/tmp/x.log"}))


def test_component_levels_and_locations():
    config = load_config({
        "NEURON_RT_LOG_LEVEL_TDRV": "DEBUG",
        "NEURON_RT_LOG_LEVEL_NMGR": "error",
        "NEURON_RT_LOG_LEVEL_KMGR": "WARNING",
        "NEURON_RT_LOG_LOCATION_TDRV": "tdrv.log",
        "NEURON_RT_LOG_LOCATION_NRT": "syslog",
        "NEURON_RT_LOG_LOCATION_NEFF": "Console",
    })
    assert dict(config.component_log_levels) == {"TDRV": "DEBUG", "NMGR": "ERROR", "KMGR": "WARN"}
    assert dict(config.component_log_locations) == {"TDRV": "tdrv.log", "NRT": "syslog", "NEFF": "console"}
    assert config.warnings == ()


def test_component_invalid_level_names_the_component_variable():
    error = _error({"NEURON_RT_LOG_LEVEL_TDRV": "chatty"})
    assert error.variable == "NEURON_RT_LOG_LEVEL_TDRV"
    assert "NEURON_RT_LOG_LEVEL_TDRV=chatty is invalid: expected one of ERROR" in str(error)


def test_unknown_component_is_ignored_with_warning():
    config = load_config({"NEURON_RT_LOG_LEVEL_FOO": "DEBUG", "NEURON_RT_LOG_LOCATION_tdrv": "x.log"})
    assert dict(config.component_log_levels) == {} and dict(config.component_log_locations) == {}
    assert len(config.warnings) == 2
    assert any("NEURON_RT_LOG_LEVEL_FOO is ignored: 'FOO' is not a runtime component" in w for w in config.warnings)


# ------------------------------------------------------------------------------------------ execution & load
def test_exec_timeout():
    assert load_config({"NEURON_RT_EXEC_TIMEOUT": "5"}).exec_timeout_s == 5.0
    assert load_config({"NEURON_RT_EXEC_TIMEOUT": "0"}).exec_timeout_s == 0.0
    assert isinstance(load_config({"NEURON_RT_EXEC_TIMEOUT": "600"}).exec_timeout_s, float)
    assert "NEURON_RT_EXEC_TIMEOUT=2.5 is invalid: expected an integer from 0 to 2147483647" in str(
        _error({"NEURON_RT_EXEC_TIMEOUT": "2.5"})
    )


@pytest.mark.parametrize(
    "name, field",
    [
        ("NEURON_RT_VALIDATE_HASH", "validate_hash"),
        ("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "shared_weights"),
        ("NEURON_RT_ALLOW_LEGACY_NEFF", "allow_legacy_neff"),
        ("NEURON_RT_STOCHASTIC_ROUNDING_EN", "stochastic_rounding"),
        ("NEURON_RT_RESET_CORES", "reset_cores"),
    ],
)
def test_boolean_variables(name, field):
    for text, expected in [("TRUE", True), ("true", True), ("1", True), ("FALSE", False), ("false", False), ("0", False)]:
        assert getattr(load_config({name: text}), field) is expected
    error = _error({name: "sometimes"})
    assert f"{name}=sometimes is invalid: expected a boolean" in str(error)


def test_async_inflight():
    assert load_config({"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "3"}).async_max_inflight == 3
    assert load_config({"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "0"}).async_max_inflight == 0
    assert _error({"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "three"}).variable == \
        "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"


def test_stochastic_rounding_seed():
    assert load_config({"NEURON_RT_STOCHASTIC_ROUNDING_SEED": "1234"}).stochastic_rounding_seed == 1234
    assert load_config({"NEURON_RT_STOCHASTIC_ROUNDING_SEED": str(2**32 - 1)}).stochastic_rounding_seed == 2**32 - 1
    assert "expected an integer from 0 to 4294967295" in str(_error({"NEURON_RT_STOCHASTIC_ROUNDING_SEED": "-5"}))


def test_low_latency_cpu_affinity():
    config = load_config({"NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY": "40-47,88-95"})
    assert config.low_latency_cpu_affinity == tuple(range(40, 48)) + tuple(range(88, 96))
    assert "such as 40-47,88-95" in str(_error({"NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY": "47-40"}))


def test_numerical_errors_verbosity():
    for value in ("none", "critical", "debug", "verbose", "CRITICAL"):
        assert load_config({"NEURON_RT_NUMERICAL_ERRORS_VERBOSITY": value}).numerical_errors_verbosity == value.lower()
    error = _error({"NEURON_RT_NUMERICAL_ERRORS_VERBOSITY": "loud"})
    assert "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY=loud is invalid: expected one of none, critical, debug, verbose" in str(error)


def test_fail_on_nan_selects_critical_unless_verbosity_is_set():
    assert load_config({"NEURON_FAIL_ON_NAN": "1"}).numerical_errors_verbosity == "critical"
    assert load_config({"NEURON_FAIL_ON_NAN": "0"}).numerical_errors_verbosity == "none"
    both = {"NEURON_FAIL_ON_NAN": "1", "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY": "verbose"}
    assert load_config(both).numerical_errors_verbosity == "verbose"


def test_neuroncore_group_sizes_parsed_and_deprecated():
    config = load_config({"NEURONCORE_GROUP_SIZES": "3,4,1"})
    assert config.neuroncore_group_sizes == (3, 4, 1)
    assert config.warnings == (
        "NEURONCORE_GROUP_SIZES is being deprecated in a future release and should be avoided in favor of newer "
        "placement methods. Use NEURON_RT_NUM_CORES or NEURON_RT_VISIBLE_CORES with default placement if possible",
    )
    assert "such as 3,4,1" in str(_error({"NEURONCORE_GROUP_SIZES": "3,0"}))


def test_scratchpad_page_size_and_old_name():
    assert load_config({"NEURON_SCRATCHPAD_PAGE_SIZE": "256"}).scratchpad_page_size_mb == 256
    old = load_config({"NEURON_RT_ONE_TMPBUF_PAGE_SIZE_MB": "128"})
    assert old.scratchpad_page_size_mb == 128
    assert any("old name of NEURON_SCRATCHPAD_PAGE_SIZE" in w for w in old.warnings)
    both = load_config({"NEURON_RT_ONE_TMPBUF_PAGE_SIZE_MB": "128", "NEURON_SCRATCHPAD_PAGE_SIZE": "64"})
    assert both.scratchpad_page_size_mb == 64
    assert "from 1 to 1048576" in str(_error({"NEURON_SCRATCHPAD_PAGE_SIZE": "0"}))


def test_process_tag():
    assert load_config({"NEURON_PROCESS_TAG": "my-job"}).process_tag == "my-job"
    assert "at most 255 characters" in str(_error({"NEURON_PROCESS_TAG": "x" * 256}))


# ------------------------------------------------------------------------------------------ emulator variables
def test_emulator_paths_and_instance_type():
    config = load_config({
        "NEURON_SIM_INSTANCE_TYPE": "trn2.48xlarge",
        "NEURON_SIM_TOPOLOGY": "/tmp/topo.json",
        "NEURON_SIM_STATE_DIR": "/tmp/state",
    })
    assert (config.instance_type, config.topology_file, config.state_dir) == (
        "trn2.48xlarge", "/tmp/topo.json", "/tmp/state")


@pytest.mark.parametrize(
    "name, field, good, bad",
    [
        ("NEURON_SIM_CLOCK", "clock", ["virtual", "real", "REAL"], "wall"),
        ("NEURON_SIM_LOG_FORMAT", "log_format", ["text", "json", "JSON"], "xml"),
        ("NEURON_SIM_FILL", "fill", ["zero", "nan", "NaN"], "ones"),
    ],
)
def test_emulator_choices(name, field, good, bad):
    for value in good:
        assert getattr(load_config({name: value}), field) == value.lower()
    error = _error({name: bad})
    assert f"{name}={bad} is invalid: expected one of" in str(error)


def test_runtime_version_and_string():
    config = load_config({"NEURON_SIM_RUNTIME_VERSION": "2.22.14"})
    assert config.runtime_version == (2, 22, 14, 0)
    assert runtime_version_string(config) == "2.22.14.0"
    assert runtime_version_string(RuntimeConfig()) == "2.25.57.0"
    assert "NEURON_SIM_RUNTIME_VERSION=1.9 is invalid" in str(_error({"NEURON_SIM_RUNTIME_VERSION": "1.9"}))


# ------------------------------------------------------------------------------------------ version gating
@pytest.mark.parametrize(
    "name, value, field, since, before",
    [
        ("NEURON_RT_RESET_CORES", "1", "reset_cores", "2.10.15", "2.10.14"),
        ("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "1", "shared_weights", "2.11", "2.10.15"),
        ("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "3", "async_max_inflight", "2.15", "2.14.99"),
        ("NEURON_RT_NUMERICAL_ERRORS_VERBOSITY", "debug", "numerical_errors_verbosity", "2.24", "2.23.9"),
        ("NEURON_FAIL_ON_NAN", "1", "numerical_errors_verbosity", "2.24", "2.23"),
        ("NEURON_RT_ALLOW_LEGACY_NEFF", "1", "allow_legacy_neff", "2.25", "2.24.7.0"),
        ("NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY", "1-2", "low_latency_cpu_affinity", "2.25.57", "2.25.56"),
        ("NEURON_SCRATCHPAD_PAGE_SIZE", "64", "scratchpad_page_size_mb", "2.14", "2.13"),
    ],
)
def test_variables_newer_than_the_emulated_runtime_are_ignored(name, value, field, since, before):
    honoured = load_config({name: value, "NEURON_SIM_RUNTIME_VERSION": since})
    ignored = load_config({name: value, "NEURON_SIM_RUNTIME_VERSION": before})
    unset = load_config({"NEURON_SIM_RUNTIME_VERSION": before})
    assert getattr(honoured, field) != getattr(unset, field)
    assert getattr(ignored, field) == getattr(unset, field)
    assert not any(name in w for w in honoured.warnings)
    assert len(ignored.warnings) == 1
    assert ignored.warnings[0].startswith(f"{name} is ignored: it was introduced in Neuron Runtime {since} ")


def test_ignored_variable_is_not_validated():
    config = load_config({"NEURON_RT_ALLOW_LEGACY_NEFF": "garbage", "NEURON_SIM_RUNTIME_VERSION": "2.20"})
    assert config.allow_legacy_neff is False and len(config.warnings) == 1


def test_component_log_variables_need_2_17():
    env = {"NEURON_RT_LOG_LEVEL_TDRV": "DEBUG", "NEURON_RT_LOG_LOCATION_NMGR": "nmgr.log"}
    assert dict(load_config({**env, "NEURON_SIM_RUNTIME_VERSION": "2.17"}).component_log_levels) == {"TDRV": "DEBUG"}
    old = load_config({**env, "NEURON_SIM_RUNTIME_VERSION": "2.16.18"})
    assert dict(old.component_log_levels) == {} and dict(old.component_log_locations) == {}
    assert len(old.warnings) == 2 and all("introduced in Neuron Runtime 2.17" in w for w in old.warnings)


def test_defaults_follow_the_release_notes():
    """2 s before RT 2.9 ("increased default execution timeout from 2 seconds to 30 seconds"), reset from 2.10.15."""
    old = load_config({"NEURON_SIM_RUNTIME_VERSION": "2.8"})
    assert old.reset_cores is False
    assert old.exec_timeout_s == 2.0
    assert load_config({"NEURON_SIM_RUNTIME_VERSION": "2.8", "NEURON_RT_EXEC_TIMEOUT": "7"}).exec_timeout_s == 7.0
    trn1_ga = load_config({"NEURON_SIM_RUNTIME_VERSION": "2.9"})
    assert trn1_ga.reset_cores is False and trn1_ga.exec_timeout_s == 30.0
    new = load_config({"NEURON_SIM_RUNTIME_VERSION": "2.10.15"})
    assert new.reset_cores is True and new.exec_timeout_s == 30.0


def test_async_deprecated_then_removed():
    name = "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"
    live = load_config({name: "3", "NEURON_SIM_RUNTIME_VERSION": "2.32.30"})
    assert live.async_max_inflight == 3 and live.warnings == ()
    deprecated = load_config({name: "3", "NEURON_SIM_RUNTIME_VERSION": "2.32.31"})
    assert deprecated.async_max_inflight == 3
    assert deprecated.warnings[0].startswith(f"{name} is deprecated since Neuron Runtime 2.32.31")
    removed = load_config({name: "3", "NEURON_SIM_RUNTIME_VERSION": "2.34.10.0"})
    assert removed.async_max_inflight == 0
    assert removed.warnings[0].startswith(f"{name} is ignored: it was removed in Neuron Runtime 2.34.10")
    assert load_config({"NEURON_SIM_RUNTIME_VERSION": "2.34.10"}).warnings == ()


def test_always_available_variables_are_honoured_on_the_oldest_2x():
    config = load_config({"NEURON_SIM_RUNTIME_VERSION": "2.0", "NEURON_RT_VISIBLE_CORES": "1", "NEURON_RT_LOG_LEVEL": "INFO",
                          "NEURON_RT_VALIDATE_HASH": "TRUE", "NEURON_RT_EXEC_TIMEOUT": "9"})
    assert (config.visible_cores, config.log_level, config.validate_hash, config.exec_timeout_s) == ((1,), "INFO", True, 9.0)
    assert config.warnings == ()
