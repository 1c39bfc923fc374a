"""Names, release versions and fixed vocabularies of the runtime variables neuron_sim reads.

The default emulated runtime is 2.25.57.0: the newest release the project's seed documents describe
(the configuration table goes up to NEURON_RT_ALLOW_LEGACY_NEFF, 2.25, and the performance guide's
NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY arrived in 2.25.57), while NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS
is still documented as live (it was deprecated in 2.32.31 and removed in 2.34.10).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Version = tuple[int, int, int, int]

DEFAULT_RUNTIME_VERSION: Version = (2, 25, 57, 0)

#: Release that introduced each gated variable; a variable newer than the emulated runtime is ignored.
SINCE: Mapping[str, Version] = MappingProxyType(
    {
        "NEURON_RT_VISIBLE_CORES": (2, 0, 0, 0),
        "NEURON_RT_NUM_CORES": (2, 0, 0, 0),
        "NEURON_RT_LOG_LOCATION": (2, 0, 0, 0),
        "NEURON_RT_LOG_LEVEL": (2, 0, 0, 0),
        "NEURON_RT_EXEC_TIMEOUT": (2, 0, 0, 0),
        "NEURON_RT_VALIDATE_HASH": (2, 0, 0, 0),
        "NEURON_RT_RESET_CORES": (2, 10, 15, 0),
        "NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS": (2, 11, 0, 0),
        "NEURON_SCRATCHPAD_PAGE_SIZE": (2, 14, 0, 0),
        "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": (2, 15, 0, 0),
        "NEURON_RT_LOG_LEVEL_<C>": (2, 17, 0, 0),
        "NEURON_RT_LOG_LOCATION_<C>": (2, 17, 0, 0),
        "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY": (2, 24, 0, 0),
        "NEURON_FAIL_ON_NAN": (2, 24, 0, 0),
        "NEURON_RT_ALLOW_LEGACY_NEFF": (2, 25, 0, 0),
        "NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY": (2, 25, 57, 0),
    }
)

#: Releases that changed defaults (seed release notes): the trn1 release of 10/10/2022 (RT 2.9) "increased default
#: execution timeout from 2 seconds to 30 seconds"; the release of 10/26/2022 (RT 2.10.15) resets the cores at init.
EXEC_TIMEOUT_30S_SINCE: Version = (2, 9, 0, 0)
RESET_CORES_SINCE: Version = (2, 10, 15, 0)
#: First release of 2024 (Neuron 2.17): logs up to 2023 print 4 fraction digits and the timeout as "inference
#: timeout (N ms) on Neuron Device D NC C, waiting for execution completion notification"; later ones 6 digits
#: and "execution timeout (N ms) on Neuron Device D NC C, model x.neff, waiting for ..." (runtime-semantics §4).
LOG_2024_FORMAT_SINCE: Version = (2, 20, 0, 0)
ASYNC_DEPRECATED_SINCE: Version = (2, 32, 31, 0)
ASYNC_REMOVED_SINCE: Version = (2, 34, 10, 0)

#: Runtime modules whose level and location can be set one by one (the docs name NRT, TDRV, NMGR and KMGR;
#: NEFF, ENC and HAL appear as module names in real log lines).
COMPONENTS: tuple[str, ...] = ("NRT", "TDRV", "NMGR", "KMGR", "NEFF", "ENC", "HAL")

NUMERICAL_ERRORS_VERBOSITIES: Mapping[str, str] = MappingProxyType(
    {"none": "none", "critical": "critical", "debug": "debug", "verbose": "verbose"}
)
CLOCKS: Mapping[str, str] = MappingProxyType({"virtual": "virtual", "real": "real"})
LOG_FORMATS: Mapping[str, str] = MappingProxyType({"text": "text", "json": "json"})
FILLS: Mapping[str, str] = MappingProxyType({"zero": "zero", "nan": "nan"})
LNC_SIZES: Mapping[str, str] = MappingProxyType({"1": "1", "2": "2"})

DEFAULT_EXEC_TIMEOUT_S = 30.0
LEGACY_EXEC_TIMEOUT_S = 2.0
DEFAULT_SCRATCHPAD_PAGE_SIZE_MB = 512
MAX_PROCESS_TAG_LENGTH = 255


def version_string(version: tuple[int, ...]) -> str:
    """Dotted form of a version tuple, e.g. ``2.25.57.0``."""
    return ".".join(str(part) for part in version)


def short_version(version: tuple[int, ...]) -> str:
    """Dotted form without trailing zero parts beyond major.minor, e.g. ``2.17`` or ``2.25.57``."""
    parts = list(version)
    while len(parts) > 2 and parts[-1] == 0:
        parts.pop()
    return version_string(tuple(parts))
