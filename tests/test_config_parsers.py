"""Each configuration parser: valid forms, invalid forms with their messages, and fuzzing (value or ConfigError)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim.config import (
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
from neuron_sim.config.parsers import MAX_CORE_INDEX, MAX_CPU_INDEX
from neuron_sim.status import NrtError, NrtStatus

# Text biased towards the characters these parsers care about, plus arbitrary unicode.
_ALPHABET = st.sampled_from(list("0123456789,-. ") + ["x", "٣", "\x00", "\n", "+", "TRUE", "on", "2."])
fuzz_text = st.one_of(st.text(), st.lists(_ALPHABET, max_size=30).map("".join))

PARSERS = [
    parse_bool,
    parse_int_range,
    parse_core_list,
    parse_cpu_list,
    parse_positive_int_list,
    parse_log_level,
    parse_log_location,
    lambda n, t: parse_log_location(n, t, allow_path=True),
    parse_runtime_version,
    parse_text,
    lambda n, t: parse_choice(n, t, {"virtual": "virtual", "real": "real"}),
]


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=150, deadline=None)
@given(text=fuzz_text)
def test_fuzz_parser_returns_value_or_config_error(parser, text):
    try:
        parser("NEURON_TEST_VAR", text)
    except ConfigError as exc:
        assert exc.status == NrtStatus.INVALID
        assert exc.variable == "NEURON_TEST_VAR"
        assert "NEURON_TEST_VAR=" in str(exc)


def test_config_error_is_an_nrt_invalid_error():
    with pytest.raises(NrtError) as info:
        parse_bool("NEURON_RT_VALIDATE_HASH", "maybe")
    assert info.value.status == NrtStatus.INVALID
    assert str(info.value).startswith("NRT Error NRT_INVALID(2): NEURON_RT_VALIDATE_HASH=maybe is invalid: ")


def test_config_error_shows_unprintable_values_escaped():
    with pytest.raises(ConfigError, match=r"NEURON_X='1\\n2' is invalid"):
        parse_int_range("NEURON_X", "1\n2")


# ------------------------------------------------------------------------------------------ booleans
@pytest.mark.parametrize("text", ["1", "true", "TRUE", "True", "yes", "ON", " true "])
def test_bool_true_spellings(text):
    assert parse_bool("V", text) is True


@pytest.mark.parametrize("text", ["0", "false", "FALSE", "False", "no", "off", "OFF "])
def test_bool_false_spellings(text):
    assert parse_bool("V", text) is False


@pytest.mark.parametrize("text", ["2", "tru", "", "y", "enable", "-1"])
def test_bool_rejects_other_words(text):
    with pytest.raises(ConfigError, match="expected a boolean: 1, true, yes, on or 0, false, no, off"):
        parse_bool("V", text)


@given(st.booleans(), st.sampled_from(["{}", "{} ", " {}"]), st.booleans())
def test_bool_roundtrip_any_case(value, pad, upper):
    word = ("true" if value else "false")
    word = word.upper() if upper else word
    assert parse_bool("V", pad.format(word)) is value


# ------------------------------------------------------------------------------------------ integers
def test_int_range_accepts_bounds_and_whitespace():
    assert parse_int_range("V", "0") == 0
    assert parse_int_range("V", " 42 ") == 42
    assert parse_int_range("V", "007") == 7
    assert parse_int_range("V", str(2**31 - 1)) == 2**31 - 1
    assert parse_int_range("V", "5", 5, 5) == 5


@pytest.mark.parametrize("text", ["-1", "+3", "3.0", "0x10", "1e3", "٣", "abc", str(2**31), "9" * 5000, "0" * 5000 + "1x"])
def test_int_range_rejects(text):
    with pytest.raises(ConfigError, match="expected an integer from 0 to 2147483647"):
        parse_int_range("V", text)


def test_int_range_leading_zeros_do_not_overflow():
    assert parse_int_range("V", "0" * 5000 + "1") == 1


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_int_range_roundtrip(number):
    assert parse_int_range("V", str(number)) == number


# ------------------------------------------------------------------------------------------ core lists
@pytest.mark.parametrize(
    "text, cores",
    [
        ("3", (3,)),
        ("0", (0,)),
        ("3-5", (3, 4, 5)),
        ("3-3", (3,)),
        ("3,4,5", (3, 4, 5)),
        ("3-5,6", (3, 4, 5, 6)),
        ("3,4-5,6-7", (3, 4, 5, 6, 7)),
        (" 3 - 5 , 6 ", (3, 4, 5, 6)),
        (f"0-{MAX_CORE_INDEX}", tuple(range(MAX_CORE_INDEX + 1))),
    ],
)
def test_core_list_valid_forms(text, cores):
    assert parse_core_list("NEURON_RT_VISIBLE_CORES", text) == cores


@pytest.mark.parametrize(
    "text",
    ["3,5,6", "2-3,1", "5-3", "3,3", "3-5,5", "", ",", "3,", ",3", "3-", "-3", "3--5", "a", "3 4", "1.5",
     f"{MAX_CORE_INDEX + 1}", "0-99999999999999999999"],
)
def test_core_list_invalid_forms_name_variable_and_form(text):
    with pytest.raises(ConfigError) as info:
        parse_core_list("NEURON_RT_VISIBLE_CORES", text)
    message = str(info.value)
    assert f"NEURON_RT_VISIBLE_CORES={text} is invalid" in message or "NEURON_RT_VISIBLE_CORES='" in message
    assert "contiguous increasing list such as 3-5,6" in message


def test_core_list_message_matches_the_brief_example():
    with pytest.raises(ConfigError) as info:
        parse_core_list("NEURON_RT_VISIBLE_CORES", "3,5,6")
    assert info.value.message.startswith(
        "NEURON_RT_VISIBLE_CORES=3,5,6 is invalid: cores must be a single index, an inclusive range a-b, "
        "or a contiguous increasing list such as 3-5,6"
    )


@given(st.integers(0, MAX_CORE_INDEX), st.lists(st.integers(1, 4), min_size=1, max_size=6), st.data())
def test_core_list_any_contiguous_split_gives_the_whole_range(start, widths, data):
    pieces, first = [], start
    for width in widths:
        last = min(first + width - 1, MAX_CORE_INDEX)
        single = first == last and data.draw(st.booleans())
        pieces.append(str(first) if single else f"{first}-{last}")
        if last == MAX_CORE_INDEX:
            break
        first = last + 1
    assert parse_core_list("V", ",".join(pieces)) == tuple(range(start, last + 1))


# ------------------------------------------------------------------------------------------ CPU lists
def test_cpu_list_valid_forms():
    assert parse_cpu_list("V", "40-47,88-95") == tuple(range(40, 48)) + tuple(range(88, 96))
    assert parse_cpu_list("V", "5") == (5,)
    assert parse_cpu_list("V", "9,1-3,2") == (1, 2, 3, 9)
    assert parse_cpu_list("V", "40-47,88-95,136-143,184-191")[-1] == 191


@pytest.mark.parametrize("text", ["", "47-40", "1,,2", "a-b", "1-", f"{MAX_CPU_INDEX + 1}", "-1"])
def test_cpu_list_invalid_forms(text):
    with pytest.raises(ConfigError, match="expected a CPU list of indices and inclusive ranges such as 40-47,88-95"):
        parse_cpu_list("NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY", text)


@given(st.sets(st.integers(0, MAX_CPU_INDEX), min_size=1, max_size=20))
def test_cpu_list_roundtrip(cpus):
    assert parse_cpu_list("V", ",".join(map(str, cpus))) == tuple(sorted(cpus))


# ------------------------------------------------------------------------------------------ positive int lists
def test_positive_int_list():
    assert parse_positive_int_list("NEURONCORE_GROUP_SIZES", "3,4,1") == (3, 4, 1)
    assert parse_positive_int_list("NEURONCORE_GROUP_SIZES", "16") == (16,)


@pytest.mark.parametrize("text", ["0", "3,0", "3,,4", "-1", "a", "1-2", "", "513"])
def test_positive_int_list_rejects(text):
    with pytest.raises(ConfigError, match="comma-separated list of integers from 1 to 512, such as 3,4,1"):
        parse_positive_int_list("NEURONCORE_GROUP_SIZES", text)


# ------------------------------------------------------------------------------------------ words
@pytest.mark.parametrize(
    "text, level",
    [("ERROR", "ERROR"), ("error", "ERROR"), ("WARN", "WARN"), ("WARNING", "WARN"), ("warning", "WARN"),
     ("INFO", "INFO"), ("Debug", "DEBUG"), ("TRACE", "TRACE"), ("QUIET", "QUIET")],
)
def test_log_levels(text, level):
    assert parse_log_level("NEURON_RT_LOG_LEVEL", text) == level


def test_log_level_rejects_unknown():
    with pytest.raises(ConfigError, match=r"NEURON_RT_LOG_LEVEL=VERBOSE is invalid: expected one of ERROR, WARN"):
        parse_log_level("NEURON_RT_LOG_LEVEL", "VERBOSE")


def test_log_location_global_and_component():
    assert parse_log_location("V", "CONSOLE") == "console"
    assert parse_log_location("V", "syslog") == "syslog"
    with pytest.raises(ConfigError, match="expected console or syslog$"):
        parse_log_location("NEURON_RT_LOG_LOCATION", "tdrv.log")
    assert parse_log_location("V", "tdrv.log", allow_path=True) == "tdrv.log"
    assert parse_log_location("V", "Syslog", allow_path=True) == "syslog"
    with pytest.raises(ConfigError, match="expected console, syslog or a file path"):
        parse_log_location("V", "a\x00b", allow_path=True)


def test_choice_is_case_insensitive_unless_asked():
    choices = {"virtual": "virtual", "real": "real"}
    assert parse_choice("NEURON_SIM_CLOCK", " REAL ", choices) == "real"
    with pytest.raises(ConfigError, match="NEURON_SIM_CLOCK=wall is invalid: expected one of virtual, real"):
        parse_choice("NEURON_SIM_CLOCK", "wall", choices)
    with pytest.raises(ConfigError):
        parse_choice("V", "REAL", choices, case_sensitive=True)


# ------------------------------------------------------------------------------------------ versions, text
@pytest.mark.parametrize(
    "text, version",
    [("2.25.57.0", (2, 25, 57, 0)), ("2.25", (2, 25, 0, 0)), ("2.10.15", (2, 10, 15, 0)), (" 2.34.10.0 ", (2, 34, 10, 0))],
)
def test_runtime_version_valid(text, version):
    assert parse_runtime_version("NEURON_SIM_RUNTIME_VERSION", text) == version


@pytest.mark.parametrize("text", ["2", "1.0.6905.0", "3.0", "2.25.57.0.1", "2..3", "v2.25", "2.25-rc1", ""])
def test_runtime_version_invalid(text):
    with pytest.raises(ConfigError, match="expected a Neuron Runtime 2.x version of 2 to 4 dot-separated numbers"):
        parse_runtime_version("NEURON_SIM_RUNTIME_VERSION", text)


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_runtime_version_roundtrip(rest):
    text = ".".join(["2", *map(str, rest)])
    assert parse_runtime_version("V", text) == tuple([2, *rest] + [0] * (3 - len(rest)))


def test_text():
    assert parse_text("NEURON_SIM_STATE_DIR", " /tmp/x ") == "/tmp/x"
    for bad in ["", "   ", "a\x00", "x" * 5000]:
        with pytest.raises(ConfigError, match="expected non-empty text of at most 4096 characters without NUL"):
            parse_text("NEURON_SIM_STATE_DIR", bad)
