"""``neuron-sim faults add|list|clear``: change the fault plan of a running simulated machine.

The plan lives in the machine's state directory (NEURON_SIM_STATE_DIR, machine chosen by
NEURON_SIM_INSTANCE_TYPE / NEURON_SIM_TOPOLOGY or ``--instance-type``); every process of that machine
picks a change up within a fraction of a second, like an operator pulling a cable.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from neuron_sim.runtime import fault_store
from neuron_sim.runtime.fault_plan import CALLS, FaultPlanError, load_plan_text, parse_fault
from neuron_sim.runtime.faults import machine_state_dir


def _machine_dir(args: argparse.Namespace):
    env = dict(os.environ)
    if args.instance_type:
        env["NEURON_SIM_INSTANCE_TYPE"] = args.instance_type
    return machine_state_dir(env)


def _add(args: argparse.Namespace) -> int:
    if args.plan is not None:
        new = list(load_plan_text(args.plan))
    elif args.call is None:
        raise FaultPlanError(f"give a call ({', '.join(CALLS)}) or --plan JSON_OR_PATH")
    else:
        raw: dict[str, Any] = {"call": args.call, "nth": args.nth, "probability": args.probability,
                               "seed": args.seed, "sticky": args.sticky}
        for key in ("status", "core", "device", "model"):
            if getattr(args, key) is not None:
                raw[key] = getattr(args, key)
        new = [parse_fault(raw)]
    added = fault_store.add(_machine_dir(args), new)
    for f in added:
        print(f"added fault #{f.id}: {f.describe()}")
    return 0


def _list(args: argparse.Namespace) -> int:
    plan = fault_store.read(_machine_dir(args))
    if args.json:
        print(json.dumps([f.to_json() for f in plan.faults], indent=2))
    elif not plan.faults:
        print("no faults planned")
    for f in plan.faults if not args.json else ():
        print(f"#{f.id}: {f.describe()}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    removed = fault_store.clear(_machine_dir(args), args.ids or None)
    missing = sorted(set(args.ids) - {f.id for f in removed})
    print(f"removed {len(removed)} fault(s)" + ("" if args.ids else "; fallen-off devices reset"))
    if missing:
        print(f"no such fault: {', '.join(f'#{i}' for i in missing)}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add the ``faults`` subcommand to the ``neuron-sim`` parser."""
    parser = subparsers.add_parser("faults", help="add, list or clear injected faults of a running machine",
                                   description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="faults_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="plan a fault", description="Plan a fault: CALL fails with STATUS when the "
                         "trigger trips. Example: neuron-sim faults add execute --status NRT_TIMEOUT --nth 3")
    add.add_argument("call", nargs="?", choices=list(CALLS), help="where the fault strikes")
    add.add_argument("--status", help="NRT status to return (e.g. NRT_TIMEOUT; default for init, "
                     "tensor_allocate, device_lost)")
    add.add_argument("--nth", type=int, default=1, help="trip on the Nth matching call (default 1)")
    add.add_argument("--core", type=int, help="only calls on this machine-wide logical core")
    add.add_argument("--device", type=int, help="only calls on this device (device_lost: the device)")
    add.add_argument("--model", help="only this NEFF (name or uuid)")
    add.add_argument("--probability", type=float, default=1.0, help="trip with probability p (default 1)")
    add.add_argument("--seed", type=int, default=0, help="seed of the probability draws (default 0)")
    add.add_argument("--sticky", action="store_true", help="keep failing once tripped (default: one-shot)")
    add.add_argument("--plan", help="a whole plan: inline JSON or a JSON file path (as NEURON_SIM_FAULTS)")
    lst = sub.add_parser("list", help="show the machine's fault plan")
    lst.add_argument("--json", action="store_true", help="print the plan as JSON")
    clr = sub.add_parser("clear", help="remove faults (all, and reset fallen-off devices, when no id is given)")
    clr.add_argument("ids", nargs="*", type=int, help="fault ids to remove")
    for p in (add, lst, clr):
        p.add_argument("--instance-type", help="the machine (default: NEURON_SIM_INSTANCE_TYPE)")
    add.set_defaults(func=_add)
    lst.set_defaults(func=_list)
    clr.set_defaults(func=_clear)
