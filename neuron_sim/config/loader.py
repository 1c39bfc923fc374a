"""RuntimeConfig: every runtime variable neuron_sim honours, read once from the environment and frozen.

Decisions where the Neuron sources are silent or disagree (see docs/configuration.md for the full table):

- An empty value counts as unset.
- A variable introduced after the emulated runtime (``NEURON_SIM_RUNTIME_VERSION``) keeps its default and
  adds a message to ``warnings``; so does NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS from 2.34.10 on
  (it is honoured but flagged as deprecated from 2.32.31).
- Before 2.9 the runtime timed executions out after 2 s, and before 2.10.15 it did not reset cores at init;
  neuron_sim applies those defaults when emulating such a release. From 2.9 on the default timeout is 30 s
  (the configuration table and the release notes); the 2 s prose of the page and the 600 s of trn1 logs (an
  application's own NEURON_RT_EXEC_TIMEOUT=600) are not defaults.
- ``NEURON_RT_EXEC_TIMEOUT=0`` means no timeout.
- NEURON_LOGICAL_NC_CONFIG wins over its old name NEURON_RT_VIRTUAL_CORE_SIZE; using the old name warns.
- ``NEURON_FAIL_ON_NAN`` true, with no explicit NEURON_RT_NUMERICAL_ERRORS_VERBOSITY, selects ``critical``.
- NEURON_RT_LOG_LEVEL_<C> / NEURON_RT_LOG_LOCATION_<C> with an unknown component are ignored with a warning.
- The precedence NEURON_RT_VISIBLE_CORES over NEURON_RT_NUM_CORES is applied by the core allocator; both
  values are kept here so the allocator can log what was asked for.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from neuron_sim.config.parsers import (
    UINT32_MAX,
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
from neuron_sim.config.variables import (
    ASYNC_DEPRECATED_SINCE,
    ASYNC_REMOVED_SINCE,
    CLOCKS,
    COMPONENTS,
    DEFAULT_EXEC_TIMEOUT_S,
    DEFAULT_RUNTIME_VERSION,
    DEFAULT_SCRATCHPAD_PAGE_SIZE_MB,
    FILLS,
    LEGACY_EXEC_TIMEOUT_S,
    LNC_SIZES,
    LOG_FORMATS,
    MAX_PROCESS_TAG_LENGTH,
    NUMERICAL_ERRORS_VERBOSITIES,
    EXEC_TIMEOUT_30S_SINCE,
    RESET_CORES_SINCE,
    SINCE,
    short_version,
    version_string,
)
from neuron_sim.neff.package import DEFAULT_MAX_ARCHIVE_BYTES

T = TypeVar("T")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_LEVEL_PREFIX = "NEURON_RT_LOG_LEVEL_"
_LOCATION_PREFIX = "NEURON_RT_LOG_LOCATION_"


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime's view of its environment; every field defaults to what an unset variable means."""

    visible_cores: tuple[int, ...] | None = None
    num_cores: int = 0
    logical_nc_config: int | None = None
    log_level: str = "ERROR"
    log_location: str = "console"
    component_log_levels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    component_log_locations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    exec_timeout_s: float = DEFAULT_EXEC_TIMEOUT_S
    validate_hash: bool = False
    max_neff_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    shared_weights: bool = False
    async_max_inflight: int = 0
    allow_legacy_neff: bool = False
    reset_cores: bool = True
    stochastic_rounding: bool = False
    stochastic_rounding_seed: int = 0
    low_latency_cpu_affinity: tuple[int, ...] | None = None
    numerical_errors_verbosity: str = "none"
    fail_on_nan: bool = False
    neuroncore_group_sizes: tuple[int, ...] | None = None
    scratchpad_page_size_mb: int = DEFAULT_SCRATCHPAD_PAGE_SIZE_MB
    process_tag: str | None = None
    instance_type: str | None = None
    topology_file: str | None = None
    state_dir: str | None = None
    clock: str = "virtual"
    runtime_version: tuple[int, ...] = DEFAULT_RUNTIME_VERSION
    log_format: str = "text"
    fill: str = "zero"
    faults: str | None = None
    warnings: tuple[str, ...] = ()


class _Reader:
    """Reads variables from one environment, applying the emulated version's gates and collecting warnings."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.version: tuple[int, ...] = DEFAULT_RUNTIME_VERSION
        self.warnings: list[str] = []

    def raw(self, name: str) -> str | None:
        """The variable's text, or None when unset or empty."""
        value = self.environ.get(name)
        if value is None or not value.strip():
            return None
        return value

    def too_new(self, name: str, since_key: str | None = None) -> bool:
        """True (and a warning) when the variable is set but postdates the emulated runtime."""
        since = SINCE[since_key or name]
        if self.version >= since:
            return False
        self.warnings.append(
            f"{name} is ignored: it was introduced in Neuron Runtime {short_version(since)} and neuron_sim "
            f"emulates {version_string(self.version)} (NEURON_SIM_RUNTIME_VERSION)"
        )
        return True

    def get(self, name: str, parse: Callable[[str, str], T], default: T) -> T:
        """Parse a set variable (raising ConfigError when malformed) or return the default."""
        text = self.raw(name)
        if text is None or (name in SINCE and self.too_new(name)):
            return default
        return parse(name, text)


_CACHE_SIZE = 8
_cache: dict[tuple[tuple[str, str], ...], RuntimeConfig] = {}   # by the NEURON* variables set: a config is frozen


def load_config(environ: Mapping[str, str] | None = None) -> RuntimeConfig:
    """Read every runtime variable from environ (None: os.environ); a malformed value raises ConfigError.

    Every variable read starts with ``NEURON``, so the same set of those gives the same (frozen) config: it is
    parsed once per process (a warm nrt_init does not parse again; a malformed value is never cached).
    """
    environ = os.environ if environ is None else environ
    key = _key(environ)
    config = _cache.get(key)
    if config is None:
        config = _parse(environ)
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = config
    return config


def _key(environ: Mapping[str, str]) -> tuple:
    """The NEURON* variables set, in order; for os.environ read from its bytes table (no decoding of every
    variable of the process, only the few that match)."""
    data = getattr(environ, "_data", None) if environ is os.environ else None
    if isinstance(data, dict) and os.supports_bytes_environ:
        return tuple(sorted((k, v) for k, v in data.items() if k[:6] == b"NEURON"))
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith("NEURON")))


def _parse(environ: Mapping[str, str]) -> RuntimeConfig:
    reader = _Reader(environ)
    reader.version = reader.get("NEURON_SIM_RUNTIME_VERSION", parse_runtime_version, DEFAULT_RUNTIME_VERSION)

    timeout = reader.get("NEURON_RT_EXEC_TIMEOUT", parse_int_range, None)
    fail_on_nan = reader.get("NEURON_FAIL_ON_NAN", parse_bool, False)
    levels, locations = _component_settings(reader)
    return RuntimeConfig(
        visible_cores=reader.get("NEURON_RT_VISIBLE_CORES", parse_core_list, None),
        num_cores=reader.get("NEURON_RT_NUM_CORES", parse_int_range, 0),
        logical_nc_config=_logical_nc_config(reader),
        log_level=reader.get("NEURON_RT_LOG_LEVEL", parse_log_level, "ERROR"),
        log_location=reader.get("NEURON_RT_LOG_LOCATION", parse_log_location, "console"),
        component_log_levels=levels,
        component_log_locations=locations,
        exec_timeout_s=float(timeout) if timeout is not None else (
            DEFAULT_EXEC_TIMEOUT_S if reader.version >= EXEC_TIMEOUT_30S_SINCE else LEGACY_EXEC_TIMEOUT_S
        ),
        validate_hash=reader.get("NEURON_RT_VALIDATE_HASH", parse_bool, False),
        max_neff_bytes=reader.get("NEURON_SIM_MAX_NEFF_BYTES", lambda n, t: parse_int_range(n, t, 1, 1 << 62),
                                  DEFAULT_MAX_ARCHIVE_BYTES),
        shared_weights=reader.get("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", parse_bool, False),
        async_max_inflight=_async_max_inflight(reader),
        allow_legacy_neff=reader.get("NEURON_RT_ALLOW_LEGACY_NEFF", parse_bool, False),
        reset_cores=reader.get("NEURON_RT_RESET_CORES", parse_bool, reader.version >= RESET_CORES_SINCE),
        stochastic_rounding=reader.get("NEURON_RT_STOCHASTIC_ROUNDING_EN", parse_bool, False),
        stochastic_rounding_seed=reader.get(
            "NEURON_RT_STOCHASTIC_ROUNDING_SEED", lambda n, t: parse_int_range(n, t, 0, UINT32_MAX), 0
        ),
        low_latency_cpu_affinity=reader.get("NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY", parse_cpu_list, None),
        numerical_errors_verbosity=_numerical_errors_verbosity(reader, fail_on_nan),
        fail_on_nan=fail_on_nan,
        neuroncore_group_sizes=_group_sizes(reader),
        scratchpad_page_size_mb=_scratchpad_page_size(reader),
        process_tag=reader.get(
            "NEURON_PROCESS_TAG", lambda n, t: parse_text(n, t, MAX_PROCESS_TAG_LENGTH), None
        ),
        instance_type=reader.get("NEURON_SIM_INSTANCE_TYPE", lambda n, t: parse_text(n, t, 64), None),
        topology_file=reader.get("NEURON_SIM_TOPOLOGY", parse_text, None),
        state_dir=reader.get("NEURON_SIM_STATE_DIR", parse_text, None),
        clock=reader.get("NEURON_SIM_CLOCK", lambda n, t: parse_choice(n, t, CLOCKS), "virtual"),
        runtime_version=reader.version,
        log_format=reader.get("NEURON_SIM_LOG_FORMAT", lambda n, t: parse_choice(n, t, LOG_FORMATS), "text"),
        fill=reader.get("NEURON_SIM_FILL", lambda n, t: parse_choice(n, t, FILLS), "zero"),
        faults=reader.get("NEURON_SIM_FAULTS", lambda n, t: parse_text(n, t, 1 << 20), None),
        warnings=tuple(reader.warnings),
    )


def _logical_nc_config(reader: _Reader) -> int | None:
    """NEURON_LOGICAL_NC_CONFIG, falling back to (and warning about) its old name NEURON_RT_VIRTUAL_CORE_SIZE."""
    parse = lambda n, t: int(parse_choice(n, t, LNC_SIZES))  # noqa: E731
    new = reader.get("NEURON_LOGICAL_NC_CONFIG", parse, None)
    old = reader.get("NEURON_RT_VIRTUAL_CORE_SIZE", parse, None)
    if old is None:
        return new
    if new is None:
        reader.warnings.append(
            "NEURON_RT_VIRTUAL_CORE_SIZE is the old name of NEURON_LOGICAL_NC_CONFIG; please use the new name"
        )
        return old
    if new != old:
        reader.warnings.append(
            f"NEURON_RT_VIRTUAL_CORE_SIZE={old} is ignored: NEURON_LOGICAL_NC_CONFIG={new} takes precedence"
        )
    return new


def _async_max_inflight(reader: _Reader) -> int:
    """The implicit async queue depth: live from 2.15, deprecated from 2.32.31, ignored from 2.34.10."""
    name = "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"
    if reader.raw(name) is not None and reader.version >= ASYNC_REMOVED_SINCE:
        reader.warnings.append(
            f"{name} is ignored: it was removed in Neuron Runtime {short_version(ASYNC_REMOVED_SINCE)}; "
            "use the explicit async API (nrt_register_async_exec_callback)"
        )
        return 0
    depth = reader.get(name, parse_int_range, 0)
    if reader.raw(name) is not None and reader.version >= ASYNC_DEPRECATED_SINCE:
        reader.warnings.append(
            f"{name} is deprecated since Neuron Runtime {short_version(ASYNC_DEPRECATED_SINCE)} and will be "
            "removed; use the explicit async API"
        )
    return depth


def _numerical_errors_verbosity(reader: _Reader, fail_on_nan: bool) -> str:
    """NEURON_RT_NUMERICAL_ERRORS_VERBOSITY, or ``critical`` when only NEURON_FAIL_ON_NAN is true."""
    verbosity = reader.get(
        "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY",
        lambda n, t: parse_choice(n, t, NUMERICAL_ERRORS_VERBOSITIES),
        None,
    )
    if verbosity is not None:
        return verbosity
    return "critical" if fail_on_nan else "none"


def _group_sizes(reader: _Reader) -> tuple[int, ...] | None:
    """NEURONCORE_GROUP_SIZES is honoured (runtime.placement) and always warned about in the guide's words."""
    sizes = reader.get("NEURONCORE_GROUP_SIZES", parse_positive_int_list, None)
    if sizes is not None:
        reader.warnings.append(
            "NEURONCORE_GROUP_SIZES is being deprecated in a future release and should be avoided in favor of "
            "newer placement methods. Use NEURON_RT_NUM_CORES or NEURON_RT_VISIBLE_CORES with default placement "
            "if possible"
        )
    return sizes


def _scratchpad_page_size(reader: _Reader) -> int:
    """NEURON_SCRATCHPAD_PAGE_SIZE in MB, falling back to (and warning about) NEURON_RT_ONE_TMPBUF_PAGE_SIZE_MB."""
    parse = lambda n, t: parse_int_range(n, t, 1, 1 << 20)  # noqa: E731
    old_name = "NEURON_RT_ONE_TMPBUF_PAGE_SIZE_MB"
    new = reader.get("NEURON_SCRATCHPAD_PAGE_SIZE", parse, None)
    old = reader.get(old_name, parse, None)
    if new is not None:
        return new
    if old is not None:
        reader.warnings.append(f"{old_name} is the old name of NEURON_SCRATCHPAD_PAGE_SIZE; please use the new name")
        return old
    return DEFAULT_SCRATCHPAD_PAGE_SIZE_MB


def _component_settings(reader: _Reader) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """NEURON_RT_LOG_LEVEL_<C> and NEURON_RT_LOG_LOCATION_<C> for each known component C."""
    levels: dict[str, str] = {}
    locations: dict[str, str] = {}
    for name in sorted(reader.environ):
        for prefix, kind, target in ((_LEVEL_PREFIX, "LEVEL", levels), (_LOCATION_PREFIX, "LOCATION", locations)):
            if not name.startswith(prefix) or reader.raw(name) is None:
                continue
            component = name[len(prefix):]
            if component not in COMPONENTS:
                reader.warnings.append(
                    f"{name} is ignored: {component!r} is not a runtime component "
                    f"(known components: {', '.join(COMPONENTS)})"
                )
                continue
            if reader.too_new(name, f"NEURON_RT_LOG_{kind}_<C>"):
                continue
            text = reader.environ[name]
            if kind == "LEVEL":
                target[component] = parse_log_level(name, text)
            else:
                target[component] = parse_log_location(name, text, allow_path=True)
    return MappingProxyType(levels), MappingProxyType(locations)


def check_cores_in_range(config: RuntimeConfig, total_cores: int) -> None:
    """Raise ConfigError when NEURON_RT_VISIBLE_CORES names a core the machine does not have."""
    cores = config.visible_cores
    if not cores or cores[-1] < total_cores:
        return
    shown = str(cores[0]) if len(cores) == 1 else f"{cores[0]}-{cores[-1]}"
    if total_cores <= 0:
        accepted = "this machine has no NeuronCores"
    else:
        accepted = f"cores must lie in 0-{total_cores - 1} on this machine ({total_cores} NeuronCores)"
    raise ConfigError("NEURON_RT_VISIBLE_CORES", shown, accepted)


def runtime_version_string(config: RuntimeConfig) -> str:
    """The emulated runtime version as printed in logs, e.g. ``2.25.57.0``."""
    return version_string(config.runtime_version)
