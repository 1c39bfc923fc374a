"""Small, total parsers for Neuron runtime environment values: each returns a value or raises ConfigError.

Every parser takes the variable name (for the message) and the raw text. Decisions where the Neuron docs
are silent:

- Surrounding whitespace is ignored, and so is whitespace around ``,`` and ``-`` in lists.
- Numbers are ASCII decimal digits only (no sign, no ``0x``, no other scripts' digits).
- Booleans are case-insensitive: ``1 true yes on`` / ``0 false no off``. The docs show ``TRUE``/``FALSE``,
  ``true``/``false`` and ``0``/``1``; the extra spellings cost nothing and match common C ``getenv`` helpers.
- Core lists (``NEURON_RT_VISIBLE_CORES``) must be contiguous and increasing (the developer guide's rule;
  an unordered list such as ``2-3,1`` is rejected). Indices stop at 511: the driver's table holds
  64 devices x 8 NeuronCores.
- CPU lists accept any order and overlaps (cpuset style); the result is sorted and de-duplicated.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from neuron_sim.status import NrtError, NrtStatus

INT_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
MAX_CORE_INDEX = 64 * 8 - 1
MAX_CPU_INDEX = 8191
_MAX_DIGITS = 12

_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_ITEM = re.compile(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?", re.ASCII)
_VERSION = re.compile(r"\s*([0-9]+(?:\.[0-9]+){1,3})\s*", re.ASCII)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
BOOL_FORM = "a boolean: 1, true, yes, on or 0, false, no, off (any case)"

LOG_LEVELS: Mapping[str, str] = {
    "ERROR": "ERROR",
    "WARN": "WARN",
    "WARNING": "WARN",
    "INFO": "INFO",
    "DEBUG": "DEBUG",
    "TRACE": "TRACE",
    "QUIET": "QUIET",
}


class ConfigError(NrtError):
    """A runtime variable holds a value the runtime does not accept (status NRT_INVALID)."""

    def __init__(self, variable: str, value: str, accepted: str) -> None:
        self.variable = variable
        self.value = value
        shown = value if value.isprintable() else repr(value)
        super().__init__(NrtStatus.INVALID, f"{variable}={shown} is invalid: {accepted}")


def _to_int(name: str, text: str, digits: str, accepted: str, lo: int, hi: int) -> int:
    """Convert an ASCII digit string, refusing values outside [lo, hi] (and absurdly long ones)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > _MAX_DIGITS:
        raise ConfigError(name, text, accepted)
    number = int(significant)
    if not lo <= number <= hi:
        raise ConfigError(name, text, accepted)
    return number


def parse_bool(name: str, text: str) -> bool:
    """Parse a boolean spelling (case-insensitive)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(name, text, f"expected {BOOL_FORM}")


def parse_int_range(name: str, text: str, lo: int = 0, hi: int = INT_MAX) -> int:
    """Parse a decimal integer in the inclusive range [lo, hi]."""
    accepted = f"expected an integer from {lo} to {hi}"
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise ConfigError(name, text, accepted)
    return _to_int(name, text, stripped, accepted, lo, hi)


def _items(name: str, text: str, accepted: str, hi: int) -> list[tuple[int, int]]:
    """Split ``a,b-c,...`` into inclusive (first, last) pairs, each first <= last <= hi."""
    pairs = []
    for piece in text.split(","):
        match = _ITEM.fullmatch(piece)
        if match is None:
            raise ConfigError(name, text, accepted)
        first = _to_int(name, text, match.group(1), accepted, 0, hi)
        last = first if match.group(2) is None else _to_int(name, text, match.group(2), accepted, 0, hi)
        if last < first:
            raise ConfigError(name, text, accepted)
        pairs.append((first, last))
    return pairs


CORE_LIST_FORM = (
    "cores must be a single index, an inclusive range a-b, or a contiguous increasing list such as 3-5,6"
    f" (indices 0-{MAX_CORE_INDEX})"
)


def parse_core_list(name: str, text: str) -> tuple[int, ...]:
    """Parse NEURON_RT_VISIBLE_CORES: ``3``, ``3-5``, ``3,4,5`` or ``3-5,6`` (contiguous, increasing)."""
    pairs = _items(name, text, CORE_LIST_FORM, MAX_CORE_INDEX)
    for (_, previous_last), (first, _) in zip(pairs, pairs[1:]):
        if first != previous_last + 1:
            raise ConfigError(name, text, CORE_LIST_FORM)
    return tuple(range(pairs[0][0], pairs[-1][1] + 1))


CPU_LIST_FORM = f"expected a CPU list of indices and inclusive ranges such as 40-47,88-95 (indices 0-{MAX_CPU_INDEX})"


def parse_cpu_list(name: str, text: str) -> tuple[int, ...]:
    """Parse a cpuset-style CPU list (``40-47,88-95``) into sorted, distinct CPU indices."""
    cpus: set[int] = set()
    for first, last in _items(name, text, CPU_LIST_FORM, MAX_CPU_INDEX):
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def parse_positive_int_list(name: str, text: str, hi: int = MAX_CORE_INDEX + 1) -> tuple[int, ...]:
    """Parse a comma list of positive integers such as ``3,4,1`` (NEURONCORE_GROUP_SIZES)."""
    accepted = f"expected a comma-separated list of integers from 1 to {hi}, such as 3,4,1"
    values = []
    for piece in text.split(","):
        stripped = piece.strip()
        if not _NUMBER.fullmatch(stripped):
            raise ConfigError(name, text, accepted)
        values.append(_to_int(name, text, stripped, accepted, 1, hi))
    return tuple(values)


def parse_choice(name: str, text: str, choices: Mapping[str, str], *, case_sensitive: bool = False) -> str:
    """Map one of a fixed set of words to its canonical spelling."""
    word = text.strip() if case_sensitive else text.strip().lower()
    keys = choices if case_sensitive else {key.lower(): value for key, value in choices.items()}
    if word in keys:
        return keys[word]
    raise ConfigError(name, text, "expected one of " + ", ".join(choices))


def parse_log_level(name: str, text: str) -> str:
    """Parse a log level (case-insensitive); WARNING is returned as WARN."""
    return parse_choice(name, text, LOG_LEVELS)


def parse_log_location(name: str, text: str, *, allow_path: bool = False) -> str:
    """Parse ``console`` or ``syslog``; per-component variables may also name a file (returned as given)."""
    word = text.strip()
    if word.lower() in ("console", "syslog"):
        return word.lower()
    if allow_path and word and "\x00" not in word:
        return word
    accepted = "expected console, syslog or a file path" if allow_path else "expected console or syslog"
    raise ConfigError(name, text, accepted)


VERSION_FORM = "expected a Neuron Runtime 2.x version of 2 to 4 dot-separated numbers, such as 2.25.57.0"


def parse_runtime_version(name: str, text: str) -> tuple[int, int, int, int]:
    """Parse ``2.25.57.0`` (or ``2.25``, ``2.25.57``) into a 4-tuple padded with zeros; major must be 2."""
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ConfigError(name, text, VERSION_FORM)
    parts = [_to_int(name, text, part, VERSION_FORM, 0, INT_MAX) for part in match.group(1).split(".")]
    if parts[0] != 2:
        raise ConfigError(name, text, VERSION_FORM)
    parts += [0] * (4 - len(parts))
    return (parts[0], parts[1], parts[2], parts[3])


def parse_text(name: str, text: str, max_length: int = 4096) -> str:
    """Accept free text such as a path or tag: non-empty after stripping, no NUL, at most max_length chars."""
    stripped = text.strip()
    if not stripped or "\x00" in stripped or len(stripped) > max_length:
        raise ConfigError(name, text, f"expected non-empty text of at most {max_length} characters without NUL")
    return stripped
