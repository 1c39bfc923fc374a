"""NRT-style logging: the runtime's log line, levels per component, console/syslog/file sinks, via structlog.

Line layout (runtime-semantics.md §4.2)::

    <YYYY-Mon-DD HH:MM:SS.ffffff> <pid %5d>:<tid %-5d> <LEVEL %5s> <MODULE %5s>:<function %-39s> <message>

Decisions where the Neuron sources are silent:

- Levels are TRACE < DEBUG < INFO < WARN < ERROR; QUIET silences a module entirely. Lines print ``WARN``.
- The timestamp is local time with an English month (independent of the C locale) and 6 fraction digits;
  4 when emulating a runtime released up to 2023 (before 2.20), as the logs of those years show.
- Console means ``sys.stderr`` looked up when each line is written. A file location is opened for append
  when configured; if it cannot be opened the module logs to the console, after one warning line.
- Syslog sends ``<PRI>nrt[pid]: <line>`` (facility user) to the ``/dev/log`` datagram socket. Where no
  syslog socket exists the module logs to the console, after one warning line (unless that module is QUIET).
- ``NEURON_SIM_LOG_FORMAT=json`` writes one JSON object per line with keys timestamp (ISO 8601 local time
  with UTC offset), pid, tid, level, module, function, message.
- Modules without their own NEURON_RT_LOG_LEVEL_<C>/NEURON_RT_LOG_LOCATION_<C> use the global settings.
- ``notice`` writes a WARN line whatever the level, unless the module is QUIET.
- ``warn_once`` keys are forgotten on every ``configure`` (each nrt_init starts afresh, as a new runtime would).
- Before the first ``configure`` call, the first log call configures from os.environ, leniently: a malformed
  logging variable is skipped (nrt_init reports it as an error later) rather than breaking logging.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import structlog

from neuron_sim.config import ConfigError, RuntimeConfig, load_config
from neuron_sim.config.variables import LOG_2024_FORMAT_SINCE
from neuron_sim.status import NrtError, NrtStatus
from neuron_sim.regular_files import open_regular

LEVELS: tuple[str, ...] = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
SYSLOG_ADDRESS = "/dev/log"

_LEVEL_NO: Mapping[str, int] = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "WARNING": 3, "ERROR": 4}
_QUIET = 5
_THRESHOLD: Mapping[str, int] = {**_LEVEL_NO, "QUIET": _QUIET}
_SYSLOG_SEVERITY: Mapping[str, int] = {"ERROR": 3, "WARN": 4, "INFO": 6, "DEBUG": 7, "TRACE": 7}
_SYSLOG_FACILITY_USER = 1
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LOG_VARIABLE_PREFIX = "NEURON_RT_LOG_"
_LENIENT_EXTRA = ("NEURON_SIM_LOG_FORMAT", "NEURON_SIM_RUNTIME_VERSION")


def _canonical_level(level: str) -> str:
    """``WARNING`` → ``WARN``; anything outside LEVELS is a programming error."""
    upper = level.upper()
    if upper not in _LEVEL_NO:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return "WARN" if upper == "WARNING" else upper


def format_timestamp(timestamp: datetime, fraction_digits: int = 6) -> str:
    """``2024-Dec-11 17:43:58.780308`` (English month whatever the locale); 4 digits as runtimes up to 2023 print."""
    t = timestamp
    fraction = f"{t.microsecond:06d}" if fraction_digits == 6 else f"{t.microsecond // 100:04d}"
    return (
        f"{t.year:04d}-{_MONTHS[t.month - 1]}-{t.day:02d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{fraction}"
    )


def format_line(
    level: str, module: str, function: str, message: str, *, timestamp: datetime, pid: int, tid: int,
    fraction_digits: int = 6,
) -> str:
    """One runtime log line in the console layout (no trailing newline)."""
    return (
        f"{format_timestamp(timestamp, fraction_digits)} {pid:5d}:{tid:<5d} {_canonical_level(level):>5s} "
        f"{module:>5s}:{function:<39s} {message}"
    )


def _format_line_up_to_2023(*args: Any, **kwargs: Any) -> str:
    """The line as runtimes released up to 2023 print it: 4 fraction digits (``2023-Jan-09 20:27:41.0593``)."""
    return format_line(*args, fraction_digits=4, **kwargs)


def format_json(
    level: str, module: str, function: str, message: str, *, timestamp: datetime, pid: int, tid: int
) -> str:
    """One runtime log record as a single-line JSON object."""
    return json.dumps(
        {
            "timestamp": timestamp.astimezone().isoformat(timespec="microseconds"),
            "pid": pid,
            "tid": tid,
            "level": _canonical_level(level),
            "module": module,
            "function": function,
            "message": message,
        },
        ensure_ascii=False,
    )


# ----------------------------------------------------------------------------------------------- sinks
class _Sink(Protocol):
    def write(self, level: str, line: str) -> None: ...
    def close(self) -> None: ...


class _ConsoleSink:
    """Writes to whatever ``sys.stderr`` is at the moment of writing."""

    def write(self, level: str, line: str) -> None:
        stream = sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def close(self) -> None:
        return None


class _FileSink:
    """Appends to one regular file (or the null device), flushed per line; the console takes over from a
    file whose writes fail (a full disk), and a FIFO or other device is refused at open, never waited on."""

    def __init__(self, path: str) -> None:
        fd = open_regular(path, "a log location", os.O_WRONLY | os.O_APPEND | os.O_CREAT, allow_null=True)
        self.handle = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
        self.path = path
        self.failed = False

    def write(self, level: str, line: str) -> None:
        if not self.failed:
            try:
                self.handle.write(line + "\n")
                self.handle.flush()
                return
            except OSError as exc:
                self.failed = True
                _ConsoleSink().write("WARN", format_line(
                    "WARN", "NRT", "log_write", f"writing log file {self.path} failed ({exc.strerror or exc}); "
                    "logging to console", timestamp=datetime.now(), pid=os.getpid(), tid=threading.get_native_id()))
        _ConsoleSink().write(level, line)

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass



class _SyslogSink:
    """Sends each line as one datagram to the local syslog socket; the console takes over if it vanishes."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.connect(address)
        except OSError:
            self.sock.close()
            raise

    def write(self, level: str, line: str) -> None:
        priority = _SYSLOG_FACILITY_USER * 8 + _SYSLOG_SEVERITY[level]
        try:
            self.sock.send(f"<{priority}>nrt[{os.getpid()}]: {line}".encode("utf-8", "backslashreplace"))
        except OSError:
            _ConsoleSink().write(level, line)

    def close(self) -> None:
        self.sock.close()


class _SinkAdapter:
    """The logger structlog wraps: each level's method receives the rendered line."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    def error(self, line: str) -> None:
        self.sink.write("ERROR", line)

    def warn(self, line: str) -> None:
        self.sink.write("WARN", line)

    def info(self, line: str) -> None:
        self.sink.write("INFO", line)

    def debug(self, line: str) -> None:
        self.sink.write("DEBUG", line)

    def trace(self, line: str) -> None:
        self.sink.write("TRACE", line)


# ----------------------------------------------------------------------------------------------- structlog
def _stamp(_logger: object, _method: str, event: dict) -> dict:
    """Add the time, process and OS thread ids, unless the caller supplied them."""
    event.setdefault("timestamp", datetime.now())
    event.setdefault("pid", os.getpid())
    event.setdefault("tid", threading.get_native_id())
    return event


def _renderer(formatter: Callable[..., str]) -> Callable[[object, str, dict], str]:
    """A final structlog processor producing one line with formatter (format_line or format_json)."""

    def render(_logger: object, _method: str, event: dict) -> str:
        return formatter(
            event["level"], event["module"], event["function"], event["event"],
            timestamp=event["timestamp"], pid=event["pid"], tid=event["tid"],
        )

    return render


def _bound(sink: _Sink, formatter: Callable[..., str]) -> structlog.BoundLogger:
    return structlog.BoundLogger(_SinkAdapter(sink), processors=[_stamp, _renderer(formatter)], context={})


# ----------------------------------------------------------------------------------------------- state
class _State:
    """Everything one configure() call decided: thresholds and a structlog logger per module."""

    def __init__(self, config: RuntimeConfig, syslog_address: str) -> None:
        self.formatter = format_json if config.log_format == "json" else (
            format_line if config.runtime_version >= LOG_2024_FORMAT_SINCE else _format_line_up_to_2023)
        self.global_threshold = _THRESHOLD[config.log_level]
        self.thresholds = {module: _THRESHOLD[level] for module, level in config.component_log_levels.items()}
        self.sinks: dict[str, _Sink] = {"console": _ConsoleSink()}
        self.console = _bound(self.sinks["console"], self.formatter)
        self.notices: list[tuple[str, str]] = []
        self.default_logger = self._logger_for(config.log_location, None, syslog_address)
        self.loggers = {
            module: self._logger_for(location, module, syslog_address)
            for module, location in config.component_log_locations.items()
        }

    def threshold(self, module: str) -> int:
        return self.thresholds.get(module, self.global_threshold)

    def _logger_for(self, location: str, module: str | None, syslog_address: str) -> structlog.BoundLogger:
        """A logger writing to location, falling back to the console with a notice when it cannot be opened."""
        key = location if location in ("console", "syslog") else "file:" + os.path.abspath(location)
        if key not in self.sinks:
            try:
                self.sinks[key] = _SyslogSink(syslog_address) if location == "syslog" else _FileSink(location)
            except OSError as exc:
                what = f"syslog socket {syslog_address}" if location == "syslog" else f"log file {location}"
                reason = exc.strerror or str(exc)
                self.notices.append((module or "NRT", f"cannot open {what} ({reason}); logging to console"))
                self.sinks[key] = self.sinks["console"]
        return self.console if self.sinks[key] is self.sinks["console"] else _bound(self.sinks[key], self.formatter)

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()


_lock = threading.RLock()
_state: _State | None = None
_once: set[str] = set()


def _lenient_config(environ: Mapping[str, str]) -> RuntimeConfig:
    """Read only the logging variables, dropping any malformed one."""
    env = {k: v for k, v in environ.items() if k.startswith(_LOG_VARIABLE_PREFIX) or k in _LENIENT_EXTRA}
    for _ in range(len(env) + 1):
        try:
            return load_config(env)
        except ConfigError as exc:
            if env.pop(exc.variable, None) is None:
                break
    return RuntimeConfig()


def configure(config: RuntimeConfig | None = None, *, syslog_address: str | None = None) -> None:
    """(Re)apply log levels, locations and format from config (None: a lenient read of os.environ)."""
    global _state
    new = _State(config if config is not None else _lenient_config(os.environ), syslog_address or SYSLOG_ADDRESS)
    with _lock:
        old, _state = _state, new
        _once.clear()
        if old is not None:
            old.close()
        for module, message in new.notices:
            if new.threshold(module) < _QUIET:
                new.console.warn(message, level="WARN", module=module, function="log_init")


def _current() -> _State:
    state = _state
    if state is None:
        with _lock:
            if _state is None:
                configure()
            state = _state
    assert state is not None
    return state


def enabled(level: str, module: str) -> bool:
    """Whether a line at level from module would be written (cheap: call it before building messages)."""
    state = _state if _state is not None else _current()
    try:
        number = _LEVEL_NO[level]
    except KeyError:
        number = _LEVEL_NO[_canonical_level(level)]
    return number >= state.thresholds.get(module, state.global_threshold)


def log(level: str, module: str, function: str, message: str) -> None:
    """Write one line at level for module (``NRT``, ``TDRV``, ``NMGR``, ``KMGR``, ``NEFF``...)."""
    level = _canonical_level(level)
    with _lock:
        state = _current()
        if _LEVEL_NO[level] < state.threshold(module):
            return
        logger = state.loggers.get(module, state.default_logger)
        getattr(logger, level.lower())(message, level=level, module=module, function=function)


def error(module: str, function: str, message: str) -> None:
    """Log at ERROR."""
    log("ERROR", module, function, message)


def fail(status: NrtStatus | int, module: str, function: str, message: str) -> NrtError:
    """Log ``message`` at ERROR and return the NrtError to raise: ``raise fail(NrtStatus.INVALID, "NRT", fn, msg)``."""
    error(module, function, message)
    return NrtError(status, message)


def warn(module: str, function: str, message: str) -> None:
    """Log at WARN."""
    log("WARN", module, function, message)


def info(module: str, function: str, message: str) -> None:
    """Log at INFO."""
    log("INFO", module, function, message)


def debug(module: str, function: str, message: str) -> None:
    """Log at DEBUG."""
    log("DEBUG", module, function, message)


def trace(module: str, function: str, message: str) -> None:
    """Log at TRACE."""
    log("TRACE", module, function, message)


def warn_once(key: str, module: str, function: str, message: str) -> None:
    """Log at WARN the first time key is seen since the last configure(); later calls are silent."""
    with _lock:
        _current()
        if key in _once:
            return
        _once.add(key)
    log("WARN", module, function, message)


def notice(module: str, function: str, message: str) -> None:
    """A WARN line shown even at the default ERROR level (only QUIET hides it): for results that look
    successful but are not real, which a user must not miss."""
    with _lock:
        state = _current()
        if state.threshold(module) >= _QUIET:
            return
        logger = state.loggers.get(module, state.default_logger)
        logger.warn(message, level="WARN", module=module, function=function)


def log_config_warnings(config: RuntimeConfig) -> None:
    """Log each of config.warnings once, as nrt_init does for deprecated or ignored variables."""
    for message in config.warnings:
        warn_once(message, "NRT", "nrt_init", message)
