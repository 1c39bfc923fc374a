"""NRT-style log lines: layout against the spec samples, levels per component, QUIET, sinks, JSON, threads."""
from __future__ import annotations

import json
import os
import re
import socket
import threading
from datetime import datetime
from types import MappingProxyType

import pytest

from neuron_sim import nrtlog
from neuron_sim.config import RuntimeConfig, load_config

SPEC_SAMPLE = (
    "2024-Dec-11 17:43:58.780308 45075:45075 ERROR   NRT:nrt_allocate_neuron_cores               "
    "Virtual Neuron Core(s) not available - Requested:2 Available:0 Virtual Core size 1"
)
SEED_SAMPLE_TAIL = (
    "15042:15042 ERROR  TDRV:exec_consume_infer_status_notifications (FATAL-RT-UNDEFINED-STATE) inference timeout "
    "(600000 ms) on Neuron Device 0 NC 0, waiting for execution completion notification"
)
LINE = re.compile(
    r"^(?P<ts>\d{4}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}) "
    r"(?P<pid>[ \d]{4}\d):(?P<tid>\d+ *) (?P<level>[ A-Z]{5}) (?P<module>[ A-Z]{5}):(?P<function>\S+ *) (?P<message>.*)$"
)


def _config(**kwargs) -> RuntimeConfig:
    for key in ("component_log_levels", "component_log_locations"):
        if key in kwargs:
            kwargs[key] = MappingProxyType(kwargs[key])
    return RuntimeConfig(**kwargs)


@pytest.fixture(autouse=True)
def _reset_logging():
    nrtlog.configure(RuntimeConfig())
    yield
    nrtlog.configure(RuntimeConfig())


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# ------------------------------------------------------------------------------------------ layout
def test_format_line_reproduces_the_spec_sample_exactly():
    line = nrtlog.format_line(
        "ERROR", "NRT", "nrt_allocate_neuron_cores",
        "Virtual Neuron Core(s) not available - Requested:2 Available:0 Virtual Core size 1",
        timestamp=datetime(2024, 12, 11, 17, 43, 58, 780308), pid=45075, tid=45075,
    )
    assert line == SPEC_SAMPLE


def test_format_line_matches_the_seed_sample_after_the_timestamp():
    line = nrtlog.format_line(
        "ERROR", "TDRV", "exec_consume_infer_status_notifications",
        "(FATAL-RT-UNDEFINED-STATE) inference timeout (600000 ms) on Neuron Device 0 NC 0, "
        "waiting for execution completion notification",
        timestamp=datetime(2023, 1, 9, 20, 27, 41, 59300), pid=15042, tid=15042,
    )
    assert line.startswith("2023-Jan-09 20:27:41.059300 ")
    assert line.split(" ", 2)[2] == SEED_SAMPLE_TAIL


def test_field_widths_for_short_values():
    line = nrtlog.format_line("WARN", "NMGR", "f", "m", timestamp=datetime(2025, 3, 4, 5, 6, 7, 8), pid=7, tid=12)
    assert line == "2025-Mar-04 05:06:07.000008     7:12     WARN  NMGR:f" + " " * 39 + "m"
    match = LINE.match(line)
    assert match and len(match.group("pid")) == 5 and len(match.group("tid")) == 5
    assert match.group("level") == " WARN" and match.group("module") == " NMGR"
    assert len(match.group("function")) == 39


def test_warning_is_printed_as_warn_and_unknown_levels_are_refused():
    line = nrtlog.format_line("warning", "NRT", "f", "m", timestamp=datetime(2025, 1, 1), pid=1, tid=1)
    assert " WARN   NRT:f" in line
    with pytest.raises(ValueError, match="not one of TRACE, DEBUG, INFO, WARN, ERROR"):
        nrtlog.format_line("FATAL", "NRT", "f", "m", timestamp=datetime(2025, 1, 1), pid=1, tid=1)
    with pytest.raises(ValueError):
        nrtlog.log("LOUD", "NRT", "f", "m")


def test_months_are_english_whatever_the_locale():
    names = [nrtlog.format_timestamp(datetime(2024, month, 1))[5:8] for month in range(1, 13)]
    assert names == ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def test_emitted_line_carries_pid_tid_and_layout(capsys):
    nrtlog.error("NRT", "nrt_init", "boom")
    (line,) = _lines(capsys.readouterr().err)
    match = LINE.match(line)
    assert match is not None
    assert int(match.group("pid")) == os.getpid()
    assert int(match.group("tid")) == threading.get_native_id()
    assert match.group("level") == "ERROR" and match.group("module") == "  NRT"
    assert match.group("function").rstrip() == "nrt_init" and match.group("message") == "boom"


# ------------------------------------------------------------------------------------------ levels
def test_default_level_is_error(capsys):
    for emit in (nrtlog.warn, nrtlog.info, nrtlog.debug, nrtlog.trace):
        emit("NRT", "f", "hidden")
    nrtlog.error("NRT", "f", "shown")
    lines = _lines(capsys.readouterr().err)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["shown"]


@pytest.mark.parametrize("level, shown", [("ERROR", 1), ("WARN", 2), ("INFO", 3), ("DEBUG", 4), ("TRACE", 5), ("QUIET", 0)])
def test_global_levels(capsys, level, shown):
    nrtlog.configure(_config(log_level=level))
    for emit in (nrtlog.error, nrtlog.warn, nrtlog.info, nrtlog.debug, nrtlog.trace):
        emit("TDRV", "f", "m")
    assert len(_lines(capsys.readouterr().err)) == shown


def test_component_level_overrides_global(capsys):
    nrtlog.configure(_config(log_level="ERROR", component_log_levels={"TDRV": "DEBUG", "NMGR": "QUIET"}))
    nrtlog.debug("TDRV", "f", "tdrv-debug")
    nrtlog.trace("TDRV", "f", "tdrv-trace")
    nrtlog.info("NRT", "f", "nrt-info")
    nrtlog.error("NRT", "f", "nrt-error")
    nrtlog.error("NMGR", "f", "nmgr-error")
    messages = [line.rsplit(" ", 1)[1] for line in _lines(capsys.readouterr().err)]
    assert messages == ["tdrv-debug", "nrt-error"]
    assert nrtlog.enabled("DEBUG", "TDRV") and not nrtlog.enabled("TRACE", "TDRV")
    assert not nrtlog.enabled("INFO", "NRT") and nrtlog.enabled("ERROR", "NRT")
    assert not nrtlog.enabled("ERROR", "NMGR")


def test_quiet_globally_with_one_component_enabled(capsys):
    nrtlog.configure(_config(log_level="QUIET", component_log_levels={"KMGR": "INFO"}))
    nrtlog.error("NRT", "f", "silenced")
    nrtlog.info("KMGR", "f", "kmgr")
    messages = [line.rsplit(" ", 1)[1] for line in _lines(capsys.readouterr().err)]
    assert messages == ["kmgr"]


def test_enabled_accepts_warning_alias_and_refuses_nonsense():
    nrtlog.configure(_config(log_level="WARN"))
    assert nrtlog.enabled("WARNING", "NRT") and nrtlog.enabled("WARN", "NRT") and not nrtlog.enabled("INFO", "NRT")
    with pytest.raises(ValueError):
        nrtlog.enabled("LOUD", "NRT")


def test_stderr_is_looked_up_at_emit_time(capsys):
    nrtlog.configure(_config())
    capsys.readouterr()
    nrtlog.error("NRT", "f", "after")
    assert "after" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ warn_once
def test_warn_once_until_next_configure(capsys):
    nrtlog.configure(_config(log_level="WARN"))
    for _ in range(3):
        nrtlog.warn_once("k", "NRT", "f", "only once")
    nrtlog.warn_once("other", "NRT", "f", "another key")
    assert len(_lines(capsys.readouterr().err)) == 2
    nrtlog.configure(_config(log_level="WARN"))
    nrtlog.warn_once("k", "NRT", "f", "only once")
    assert len(_lines(capsys.readouterr().err)) == 1


def test_log_config_warnings(capsys):
    config = load_config({"NEURONCORE_GROUP_SIZES": "1,1", "NEURON_RT_LOG_LEVEL": "WARN"})
    nrtlog.configure(config)
    nrtlog.log_config_warnings(config)
    nrtlog.log_config_warnings(config)
    (line,) = _lines(capsys.readouterr().err)
    assert " WARN   NRT:nrt_init" in line and line.endswith(config.warnings[0])


# ------------------------------------------------------------------------------------------ locations
def test_component_file_location_appends(tmp_path, capsys):
    log_file = tmp_path / "tdrv.log"
    log_file.write_text("earlier line\n")
    nrtlog.configure(_config(log_level="INFO", component_log_locations={"TDRV": str(log_file)}))
    nrtlog.info("TDRV", "tdrv_init", "to file")
    nrtlog.info("NRT", "nrt_init", "to console")
    nrtlog.configure(_config())
    content = log_file.read_text().splitlines()
    assert content[0] == "earlier line"
    assert len(content) == 2 and LINE.match(content[1]) and content[1].endswith("TDRV:tdrv_init" + " " * 30 + " to file")
    err = capsys.readouterr().err
    assert "to console" in err and "to file" not in err


def test_two_components_share_one_file(tmp_path):
    log_file = tmp_path / "rt.log"
    nrtlog.configure(_config(log_level="INFO", component_log_locations={"TDRV": str(log_file), "NMGR": str(log_file)}))
    nrtlog.info("TDRV", "f", "a")
    nrtlog.info("NMGR", "f", "b")
    nrtlog.configure(_config())
    assert [line.rsplit(" ", 1)[1] for line in log_file.read_text().splitlines()] == ["a", "b"]


def test_unopenable_file_falls_back_to_console_with_one_warning(tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "tdrv.log"
    nrtlog.configure(_config(component_log_locations={"TDRV": str(missing)}))
    nrtlog.error("TDRV", "f", "still shown")
    nrtlog.error("TDRV", "f", "still shown")
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 3
    assert f"cannot open log file {missing}" in lines[0] and " WARN  TDRV:log_init" in lines[0]
    assert lines[1].endswith("still shown")


def test_syslog_sends_datagrams(tmp_path, capsys):
    address = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(5)
    try:
        nrtlog.configure(_config(log_level="INFO", log_location="syslog"), syslog_address=address)
        nrtlog.error("NRT", "nrt_init", "via syslog")
        nrtlog.info("TDRV", "f", "info via syslog")
        first, second = server.recv(4096).decode(), server.recv(4096).decode()
    finally:
        nrtlog.configure(_config())
        server.close()
    assert first.startswith(f"<11>nrt[{os.getpid()}]: ") and first.endswith("via syslog")
    assert LINE.match(first.split(": ", 1)[1])
    assert second.startswith("<14>nrt[")
    assert capsys.readouterr().err == ""


def test_syslog_missing_falls_back_to_console_with_one_warning(tmp_path, capsys):
    nrtlog.configure(_config(log_location="syslog"), syslog_address=str(tmp_path / "absent"))
    nrtlog.error("NRT", "f", "one")
    nrtlog.error("TDRV", "f", "two")
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 3
    assert f"cannot open syslog socket {tmp_path / 'absent'}" in lines[0] and "logging to console" in lines[0]
    assert lines[1].endswith("one") and lines[2].endswith("two")


def test_syslog_fallback_warning_respects_quiet(tmp_path, capsys):
    nrtlog.configure(_config(log_location="syslog", log_level="QUIET"), syslog_address=str(tmp_path / "absent"))
    nrtlog.error("NRT", "f", "x")
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------ json
def test_json_format(capsys):
    nrtlog.configure(_config(log_format="json", log_level="INFO"))
    nrtlog.info("NRT", "nrt_init", 'Neuron Runtime 2.25.57.0 "quoted"')
    (line,) = _lines(capsys.readouterr().err)
    record = json.loads(line)
    assert set(record) == {"timestamp", "pid", "tid", "level", "module", "function", "message"}
    assert record["pid"] == os.getpid() and record["tid"] == threading.get_native_id()
    assert (record["level"], record["module"], record["function"]) == ("INFO", "NRT", "nrt_init")
    assert record["message"] == 'Neuron Runtime 2.25.57.0 "quoted"'
    datetime.fromisoformat(record["timestamp"])


# ------------------------------------------------------------------------------------------ environment
def test_configure_none_reads_environment_leniently(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL_TDRV", "INFO")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "3,5,6")
    nrtlog.configure()
    nrtlog.info("TDRV", "f", "tdrv info")
    nrtlog.warn("NRT", "f", "nrt warn hidden")
    nrtlog.error("NRT", "f", "nrt error")
    messages = [LINE.match(line).group("message") for line in _lines(capsys.readouterr().err)]
    assert messages == ["tdrv info", "nrt error"]


def test_configure_none_honours_json_format(monkeypatch, capsys):
    monkeypatch.setenv("NEURON_SIM_LOG_FORMAT", "json")
    nrtlog.configure()
    nrtlog.error("NRT", "f", "m")
    assert json.loads(capsys.readouterr().err)["message"] == "m"


# ------------------------------------------------------------------------------------------ threads
def test_concurrent_logging_keeps_lines_whole(tmp_path):
    log_file = tmp_path / "all.log"
    nrtlog.configure(_config(log_level="INFO", component_log_locations={"NRT": str(log_file)}))

    def worker(index: int) -> None:
        for n in range(100):
            nrtlog.info("NRT", f"worker_{index}", f"message {index}-{n}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nrtlog.configure(_config())
    lines = log_file.read_text().splitlines()
    assert len(lines) == 600
    assert all(LINE.match(line) for line in lines)
    assert {line.rsplit(" ", 1)[1] for line in lines} == {f"{i}-{n}" for i in range(6) for n in range(100)}
    assert len({LINE.match(line).group("tid") for line in lines}) == 6
