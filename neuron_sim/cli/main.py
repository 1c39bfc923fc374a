"""The ``neuron-sim`` program: one argparse parser with a subcommand per module in ``SUBCOMMANDS``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=<handler(args) -> int>``. Any error a handler raises becomes one line on stderr and exit code 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from neuron_sim.cli.pipes import silence_stdout

PROG = "neuron-sim"
# imported only when the parser is built, so `neuron-sim ls` loads neither numpy nor the runtime
SUBCOMMANDS: tuple[str, ...] = ("neuron_sim.cli.demo", "neuron_sim.cli.neff_cmd", "neuron_sim.cli.clib_cmd",
                                "neuron_sim.cli.faults_cmd", "neuron_sim.cli.trace_cmd",
                                "neuron_sim.cli.draw_cmd")
# look-alike tools with their own real command lines: ``neuron-sim ls ARGS`` is ``neuron-ls ARGS``
TOOLS: dict[str, tuple[str, str]] = {
    "ls": ("neuron_sim.cli.ls", "list the simulated Neuron devices and the processes holding them (neuron-ls)"),
    "monitor": ("neuron_sim.cli.monitor", "one JSON record per period about the runtimes (neuron-monitor)"),
    "top": ("neuron_sim.cli.top", "terminal UI of utilisation, memory and models (neuron-top)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="Tools for the simulated Neuron machine.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    for name, (_, summary) in TOOLS.items():
        subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def run_tool(name: str, argv: list[str]) -> int:
    """Run a look-alike tool's own entry point with its real flags."""
    import importlib
    module = importlib.import_module(TOOLS[name][0])
    return int(module.main(argv, prog=f"{PROG} {name}"))


def main(argv: list[str] | None = None) -> int:
    """Run ``neuron-sim`` with ``argv`` (default: the process arguments); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        try:
            return run_tool(argv[0], argv[1:])
        except BrokenPipeError:
            silence_stdout()
            return 0
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage/help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:  # plain ``neuron-sim`` runs the demo
        args = parser.parse_args(["demo"])
    try:
        return int(args.func(args))
    except BrokenPipeError:
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract is "a message, never a traceback"
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
