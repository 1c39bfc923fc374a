"""``neuron-monitor [-c config.json]``: one JSON record per period on stdout about the simulated machine.

The configuration file is the real one (runtime-semantics.md §5): ``period`` ("1s", "500ms", "2m"),
``neuron_runtimes`` (``tag_filter`` regular expressions, matched against the whole NEURON_PROCESS_TAG, with
their ``metrics``) and ``system_metrics`` (each with an optional own ``period``). Without ``-c`` every group
is reported every 5 s for every runtime. The first record is written at start, then one per period.
With ``--prometheus PORT`` the records are served as Prometheus metrics instead (neuron_sim.cli.prometheus).
While it runs the monitor holds ``monitor.lock`` so runtimes publish their state four times a second.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from neuron_sim.cli.ls import machine_from_env
from neuron_sim.cli.pipes import silence_stdout
from neuron_sim.cli.monitor_report import (
    RUNTIME_GROUPS, SYSTEM_GROUPS, MonitorConfig, RuntimeGroupSpec, Sampler,
)
from neuron_sim.runtime.publish import MonitorAttachment, read_runtimes
from neuron_sim.runtime.reservation import default_state_dir
from neuron_sim.status import NrtError

PROG = "neuron-monitor"
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the field and the accepted form."""


def parse_period(value: object, where: str) -> float:
    """``"1s"`` / ``"500ms"`` / ``"2m"`` / ``"1h"`` as seconds (at least 10 ms)."""
    match = _PERIOD.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected a duration such as \"1s\", \"500ms\" or \"2m\", got {value!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0.01:
        raise ConfigError(f"{where}: the period must be at least 10ms, got {value!r}")
    return seconds


def _types(items: object, accepted: tuple[str, ...], where: str) -> list[dict]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of {{\"type\": ...}} objects, got {items!r}")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") not in accepted:
            got = item.get("type") if isinstance(item, dict) else item
            raise ConfigError(f"{where}[{i}].type: expected one of {', '.join(accepted)}, got {got!r}")
    return items


def parse_config(document: object) -> MonitorConfig:
    """A MonitorConfig from the parsed JSON of a configuration file."""
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a JSON object with period, neuron_runtimes, system_metrics")
    unknown = sorted(set(document) - {"period", "neuron_runtimes", "system_metrics"})
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)}; accepted: period, neuron_runtimes, "
                          "system_metrics")
    period = parse_period(document.get("period", "5s"), "period")
    runtimes = []
    raw_runtimes = document.get("neuron_runtimes", [])
    if not isinstance(raw_runtimes, list):
        raise ConfigError(f"neuron_runtimes: expected a list, got {raw_runtimes!r}")
    for i, entry in enumerate(raw_runtimes):
        where = f"neuron_runtimes[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with tag_filter and metrics, got {entry!r}")
        pattern = entry.get("tag_filter", ".*")
        try:
            regex = re.compile(pattern) if isinstance(pattern, str) else None
        except re.error as exc:
            raise ConfigError(f"{where}.tag_filter: invalid regular expression {pattern!r}: {exc}") from None
        if regex is None:
            raise ConfigError(f"{where}.tag_filter: expected a regular expression string, got {pattern!r}")
        metrics = _types(entry.get("metrics", []), RUNTIME_GROUPS, f"{where}.metrics")
        runtimes.append(RuntimeGroupSpec(regex, tuple(dict.fromkeys(m["type"] for m in metrics))))
    system = []
    for i, item in enumerate(_types(document.get("system_metrics", []), SYSTEM_GROUPS, "system_metrics")):
        own = parse_period(item["period"], f"system_metrics[{i}].period") if "period" in item else None
        system.append((item["type"], own))
    return MonitorConfig(period, tuple(runtimes), tuple(system))


def load_config(path: str | None) -> MonitorConfig:
    """The configuration of ``-c PATH``, or the default one."""
    if path is None:
        return MonitorConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    try:
        return parse_config(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_json(out: Any) -> Callable[[dict], None]:
    """A sink writing each record as one compact JSON line, flushed at once."""
    def emit(document: dict) -> None:
        out.write(json.dumps(document, separators=(",", ":")) + "\n")
        out.flush()
    return emit


def run(config: MonitorConfig, emit: Callable[[dict], None] | None = None, records: int | None = None) -> int:
    """Produce one record now and one per period (``records`` of them, or until interrupted)."""
    emit = write_json(sys.stdout) if emit is None else emit
    machine = machine_from_env()
    state_dir = default_state_dir(machine)
    attachment = MonitorAttachment(state_dir)
    try:
        sampler = Sampler(machine, config)
        deadline = time.monotonic()
        written = 0
        while records is None or written < records:
            emit(sampler.sample(read_runtimes(state_dir)))
            written += 1
            if records is not None and written >= records:
                break
            deadline += config.period_s
            time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        attachment.close()
    return 0


def prometheus_sink(port: int, prog: str) -> Callable[[dict], None]:
    """Serve the records as Prometheus metrics on 127.0.0.1:``port`` (needs the ``prometheus`` extra)."""
    try:
        from neuron_sim.cli.prometheus import start_exporter
        collector = start_exporter(port)
    except ImportError:
        raise ConfigError("--prometheus needs prometheus-client: pip install 'neuron_sim[prometheus]'") from None
    except OSError as exc:
        raise ConfigError(f"--prometheus {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    print(f"{prog}: serving Prometheus metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr, flush=True)
    return collector.update


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Report the simulated Neuron machine's runtimes and "
                                     "system figures as one JSON record per period.")
    parser.add_argument("-c", "--config-file", metavar="CONFIG", help="neuron-monitor configuration (JSON)")
    parser.add_argument("--prometheus", type=int, metavar="PORT",
                        help="serve the records as Prometheus metrics on 127.0.0.1:PORT instead of printing them")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of the ``neuron-monitor`` console script and of ``neuron-sim monitor``."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    try:
        config = load_config(args.config_file)
        if args.prometheus is not None and not 0 < args.prometheus < 65536:
            raise ConfigError(f"--prometheus: expected a TCP port 1-65535, got {args.prometheus}")
        emit = prometheus_sink(args.prometheus, prog) if args.prometheus is not None else None
        return run(config, emit)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, NrtError) as exc:        # the simulated machine's settings, an unusable state directory
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        silence_stdout()
        return 0


if __name__ == "__main__":
    sys.exit(main())
