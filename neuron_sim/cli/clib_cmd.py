"""``neuron-sim libnrt build``, ``neuron-sim run -- CMD`` and ``neuron-sim env``: the drop-in libnrt.so.1 at work.

``run`` replaces itself with the program (``exec``), so the program's exit status and signals are the
command's own; a program that cannot be found exits 127 (126 if it cannot be executed), as a shell does.
"""
from __future__ import annotations

import argparse
import os
import sys


def _machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instance-type", help="simulated instance type (sets NEURON_SIM_INSTANCE_TYPE)")
    p.add_argument("--state-dir", help="lock-file directory shared by runtime processes (sets NEURON_SIM_STATE_DIR)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("libnrt", help="the drop-in libnrt.so.1 for C and C++ programs")
    actions = p.add_subparsers(dest="libnrt_command", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="build libnrt.so.1 into the per-user cache (once) and print its directory")
    b.set_defaults(func=_build)

    r = subparsers.add_parser("run", help="run a program on the simulated machine with the drop-in libnrt.so.1",
                              usage="neuron-sim run [--instance-type T] [--state-dir D] [--trace FILE] -- CMD [ARGS ...]")
    _machine_options(r)
    r.add_argument("--trace", help="write a Perfetto trace of each runtime process (sets NEURON_SIM_TRACE; "
                                   "{pid} in the name is replaced by the process id)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="the program and its arguments, after --")
    r.set_defaults(func=_run)

    e = subparsers.add_parser("env", help="print the variables 'neuron-sim run' sets (--shell: for eval)")
    _machine_options(e)
    e.add_argument("--shell", action="store_true", help="print 'export NAME=value' lines for eval")
    e.set_defaults(func=_env)


def _build(args: argparse.Namespace) -> int:
    from neuron_sim.clib import build
    print(build.build())
    return 0


def _variables(args: argparse.Namespace) -> dict[str, str]:
    from neuron_sim.clib import build, environment
    return environment.settings(build.build(), args.instance_type, args.state_dir)


def _env(args: argparse.Namespace) -> int:
    from neuron_sim.clib import environment
    sys.stdout.write(environment.render(_variables(args), args.shell))
    return 0


def _run(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("neuron-sim run: error: no program given; usage: neuron-sim run [--instance-type T] "
              "[--state-dir D] -- CMD [ARGS ...]", file=sys.stderr)
        return 2
    env = {**os.environ, **_variables(args)}
    if args.trace:
        env["NEURON_SIM_TRACE"] = os.path.abspath(args.trace)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        print(f"neuron-sim run: {cmd[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"neuron-sim run: {cmd[0]}: permission denied", file=sys.stderr)
        return 126
