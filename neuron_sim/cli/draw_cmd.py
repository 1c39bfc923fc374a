"""``neuron-sim draw placement|memory``: pictures of a simulated machine (matplotlib, the ``draw`` extra).

The live state of a machine (every runtime process, from its state directory: NEURON_SIM_STATE_DIR and
NEURON_SIM_INSTANCE_TYPE / ``--instance-type``), or the state a scenario script leaves: ``--scenario FILE``
runs the Python file in a private machine and draws it when the script ends (its runtimes still open).
SVG by default, PNG with ``--format png`` or a ``.png`` output name.
"""
from __future__ import annotations

import argparse
import os
import runpy
from pathlib import Path
from typing import Any

WHAT = ("placement", "memory")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("draw", help="draw NeuronCore placement or HBM usage of a simulated machine (SVG/PNG)")
    p.add_argument("what", choices=WHAT, help="placement: cores, processes, groups, models; memory: HBM per bank "
                                               "and category")
    p.add_argument("-o", "--output", help="file to write (default: <what>.svg, or .png with --format png)")
    p.add_argument("--format", choices=("svg", "png"), help="drawing format (default: from -o, else svg)")
    p.add_argument("--instance-type", help="simulated instance type (sets NEURON_SIM_INSTANCE_TYPE)")
    p.add_argument("--state-dir", help="state directory of the machine (sets NEURON_SIM_STATE_DIR)")
    p.add_argument("--scenario", help="a Python script to run in a private machine; draw the state it leaves")
    p.add_argument("--title", default="", help="title of the drawing")
    p.set_defaults(func=_draw)


def scene_of(what: str, machine_dir: Path, machine: Any, title: str = "") -> Any:
    """The placement or memory scene of a machine's state directory."""
    from neuron_sim.draw import scene
    return (scene.placement_scene if what == "placement" else scene.memory_scene)(machine_dir, machine, title)


def figure_of(what: str, drawn: Any) -> Any:
    from neuron_sim.draw import render
    return render.placement_figure(drawn) if what == "placement" else render.memory_figure(drawn)


def run_scenario(path: str, what: str, instance_type: str | None, title: str = "") -> Any:
    """Run a scenario script in a private machine and return the scene it leaves."""
    from neuron_sim.runtime import interface
    from neuron_sim.testing import emulate
    if not os.path.isfile(path):
        raise ValueError(f"scenario script {path} does not exist")
    with emulate(instance_type=instance_type) as machine:
        kept = runpy.run_path(path, run_name="__scenario__")     # kept: the script's runtimes stay open
        if interface.state() == "initialized":
            interface.publish_state()
        drawn = scene_of(what, machine.machine_dir, machine.machine, title)
        del kept
    return drawn


def _live_machine(args: argparse.Namespace) -> tuple[Path, Any]:
    """The state directory and hardware model of the machine the environment and options name."""
    from neuron_sim.config import load_config
    from neuron_sim.hardware.select import select_machine
    from neuron_sim.runtime.faults import machine_state_dir
    env = dict(os.environ)
    env.update({k: v for k, v in (("NEURON_SIM_INSTANCE_TYPE", args.instance_type),
                                  ("NEURON_SIM_STATE_DIR", args.state_dir)) if v})
    config = load_config(env)
    return machine_state_dir(env), select_machine(config.instance_type, config.topology_file, config.logical_nc_config)


def _draw(args: argparse.Namespace) -> int:
    from neuron_sim.draw import render
    fmt = args.format or (Path(args.output).suffix[1:].lower() if args.output else "svg")
    if fmt not in render.FORMATS:
        raise ValueError(f"cannot write {args.output}: the format must be svg or png")
    output = args.output or f"{args.what}.{fmt}"
    if args.scenario:
        drawn = run_scenario(args.scenario, args.what, args.instance_type, args.title)
    else:
        drawn = scene_of(args.what, *_live_machine(args), args.title)
    render.save(figure_of(args.what, drawn), output, fmt)
    print(output)
    return 0
