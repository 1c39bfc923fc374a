"""Runtime configuration: NEURON_RT_* and NEURON_SIM_* variables parsed once into a frozen RuntimeConfig."""
from neuron_sim.config.loader import RuntimeConfig, check_cores_in_range, load_config, runtime_version_string
from neuron_sim.config.parsers import (
    ConfigError,
    parse_bool,
    parse_choice,
    parse_core_list,
    parse_cpu_list,
    parse_int_range,
    parse_log_level,
    parse_log_location,
    parse_positive_int_list,
    parse_runtime_version,
    parse_text,
)
from neuron_sim.config.variables import COMPONENTS, DEFAULT_RUNTIME_VERSION

__all__ = [
    "COMPONENTS",
    "DEFAULT_RUNTIME_VERSION",
    "ConfigError",
    "RuntimeConfig",
    "check_cores_in_range",
    "load_config",
    "parse_bool",
    "parse_choice",
    "parse_core_list",
    "parse_cpu_list",
    "parse_int_range",
    "parse_log_level",
    "parse_log_location",
    "parse_positive_int_list",
    "parse_runtime_version",
    "parse_text",
    "runtime_version_string",
]
