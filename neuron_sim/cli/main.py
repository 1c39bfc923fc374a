"""The ``neuron-sim`` program: one argparse parser with a subcommand per module in ``SUBCOMMANDS``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=<handler(args) -> int>``. Any error a handler raises becomes one line on stderr and exit code 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from neuron_sim.cli import demo, faults_cmd, ls, neff_cmd

PROG = "neuron-sim"
SUBCOMMANDS: tuple[ModuleType, ...] = (demo, ls, neff_cmd, faults_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="Tools for the simulated Neuron machine.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def _silence_stdout() -> None:
    """After a closed pipe (``neuron-sim ls | head``) point stdout at /dev/null so exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``neuron-sim`` with ``argv`` (default: the process arguments); returns the exit code."""
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
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract is "a message, never a traceback"
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
