"""``neuron-sim ls``: a neuron-ls look-alike for the simulated machine (runtime-semantics.md §5).

The renderers are pure functions of a Machine and a list of core holders (objects with ``pid``,
``command``, ``runtime_version`` and machine-wide ``physical_cores``); a device's processes are the
holders owning any of its physical cores. Decisions where neuron-ls's exact output is unknown:
commands longer than 20 characters are cut to 17 plus "...", a device without links shows an empty
CONNECTED DEVICES cell, and ``-a`` and ``-w`` both add the process columns (the simulator only knows
runtime processes, so ``-a`` has no extra non-runtime rows to add).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterable, Sequence

from neuron_sim.hardware.model import GiB, Device, Machine
from neuron_sim.hardware.select import LNC_VAR, SelectionError, select_machine
from neuron_sim.ranges import format_ranges

MiB = 1 << 20
MAX_COMMAND = 20

_DEVICE_COLUMNS = (
    ("NEURON", "DEVICE"), ("NEURON", "CORES"), ("NEURON", "CORE IDS"), ("NEURON", "MEMORY"),
    ("CONNECTED", "DEVICES"), ("PCI", "BDF"), ("CPU", "AFFINITY"), ("NUMA", "NODE"),
)
_PROCESS_COLUMNS = (("PID", ""), ("COMMAND", ""), ("RUNTIME", "VERSION"))


def format_memory(nbytes: int) -> str:
    """Device memory as neuron-ls prints it: ``"32 GB"`` for 32 GiB (MB or bytes when not whole)."""
    if nbytes % GiB == 0:
        return f"{nbytes // GiB} GB"
    if nbytes % MiB == 0:
        return f"{nbytes // MiB} MB"
    return f"{nbytes} B"


def format_core_ids(ids: Sequence[int]) -> str:
    """A device's logical core ids as neuron-ls prints them: ``"4-7"`` (or ``"4"`` for one core)."""
    return format_ranges(ids)


def truncate_command(command: str) -> str:
    """Cut a command line to MAX_COMMAND characters, ending in ``...`` when cut."""
    return command if len(command) <= MAX_COMMAND else command[: MAX_COMMAND - 3] + "..."


def _physical_range(machine: Machine, device: Device) -> range:
    base = sum(d.physical_cores for d in machine.devices[: device.index])
    return range(base, base + device.physical_cores)


def device_holders(machine: Machine, device: Device, holders: Iterable[Any]) -> list[Any]:
    """The holders owning any physical core of ``device``, ordered by pid."""
    cores = _physical_range(machine, device)
    return sorted((h for h in holders if any(c in cores for c in h.physical_cores)), key=lambda h: h.pid)


def _core_ids(machine: Machine, device: Device) -> list[int]:
    return [c.global_id for c in machine.cores if c.device == device.index]


def _device_cells(machine: Machine, device: Device) -> list[str]:
    ids = _core_ids(machine, device)
    return [
        str(device.index), str(len(ids)), format_core_ids(ids), format_memory(device.memory_bytes),
        ", ".join(str(c) for c in device.connected), device.bdf, device.cpu_affinity, str(device.numa_node),
    ]


def header_lines(machine: Machine) -> list[str]:
    """The lines neuron-ls prints above its table."""
    lines = [f"instance-type: {machine.instance_type}", f"instance-id: {machine.instance_id}"]
    if machine.generation.name == "v3":
        lines.append(f"logical-neuroncore-config: {machine.lnc}")
    return lines


def _center(text: str, width: int) -> str:
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def _table(columns: Sequence[tuple[str, str]], groups: list[list[list[str]]], separate: bool) -> list[str]:
    widths = [max(len(top), len(bottom)) for top, bottom in columns]
    for group in groups:
        for row in group:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], centered: bool) -> str:
        parts = [_center(c, w + 2) if centered else f" {c.ljust(w)} " for c, w in zip(cells, widths)]
        return "|" + "|".join(parts) + "|"

    out = [border, line([t for t, _ in columns], True), line([b for _, b in columns], True), border]
    for i, group in enumerate(groups):
        if separate and i:
            out.append(border)
        out.extend(line(row, False) for row in group)
    out.append(border)
    return out


def render_table(machine: Machine, holders: Sequence[Any] = (), show_processes: bool = False) -> str:
    """neuron-ls's text output: header lines and the device table (with process rows if asked)."""
    columns = list(_DEVICE_COLUMNS)
    groups: list[list[list[str]]] = []
    for device in machine.devices:
        cells = _device_cells(machine, device)
        if not show_processes:
            groups.append([cells])
            continue
        procs = device_holders(machine, device, holders)
        rows = []
        for i, proc in enumerate(procs or [None]):
            lead = cells if i == 0 else [""] * len(cells)
            tail = ["", "", ""] if proc is None else [str(proc.pid), truncate_command(proc.command),
                                                      str(proc.runtime_version)]
            rows.append(lead + tail)
        groups.append(rows)
    if show_processes:
        columns += _PROCESS_COLUMNS
    return "\n".join(header_lines(machine) + _table(columns, groups, separate=show_processes)) + "\n"


def render_json(machine: Machine, holders: Sequence[Any] = ()) -> list[dict]:
    """neuron-ls -j's document: one object per device with the real field names."""
    out = []
    for device in machine.devices:
        ids = _core_ids(machine, device)
        out.append({
            "neuron_device": device.index,
            "bdf": device.bdf,
            "cpu_affinity": device.cpu_affinity,
            "numa_node": str(device.numa_node),
            "connected_to": list(device.connected),
            "nc_count": len(ids),
            "logical_neuroncore_config": machine.lnc,
            "memory_size": device.memory_bytes,
            "neuroncore_ids": ids,
            "neuron_processes": [
                {"pid": h.pid, "command": h.command, "neuron_runtime_version": str(h.runtime_version)}
                for h in device_holders(machine, device, holders)
            ],
        })
    return out


def parse_lnc(text: str | None) -> int | None:
    """NEURON_LOGICAL_NC_CONFIG's text as an int (None when unset or empty)."""
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise SelectionError(LNC_VAR, text, "must be 1 or 2 (physical NeuronCores per logical core)") from None


def machine_from_env(environ: dict[str, str] | None = None) -> Machine:
    """The simulated machine named by NEURON_SIM_TOPOLOGY / NEURON_SIM_INSTANCE_TYPE / NEURON_LOGICAL_NC_CONFIG."""
    env = os.environ if environ is None else environ
    return select_machine(env.get("NEURON_SIM_INSTANCE_TYPE"), env.get("NEURON_SIM_TOPOLOGY"),
                          parse_lnc(env.get(LNC_VAR)))


def current_holders(machine: Machine) -> tuple[Any, ...]:
    """The processes holding cores of ``machine`` now; none when the reservation module is unavailable."""
    try:
        from neuron_sim.runtime import reservation
        list_holders = reservation.list_holders
        default_state_dir = reservation.default_state_dir
    except (ImportError, AttributeError):
        return ()
    return tuple(list_holders(default_state_dir(machine), machine))


def machine_memory(machine: Machine) -> list[Any]:
    """Machine-wide device memory per HBM bank from the ledger; none when the runtime modules are unavailable."""
    try:
        from neuron_sim.runtime.memory_ledger import read_machine_memory
        from neuron_sim.runtime.reservation import default_state_dir
    except (ImportError, AttributeError):
        return []
    return read_machine_memory(default_state_dir(machine), machine)


def render_memory(banks: Sequence[Any]) -> str:
    """Lines of device memory held on each HBM bank by every process of the machine (``-a``)."""
    from neuron_sim.runtime.memory import format_bytes
    lines = ["device memory in use by all processes of this machine:"]
    for b in banks:
        holders = "; ".join(f"PID {e.pid} ({truncate_command(e.command)}) {format_bytes(e.nbytes)}"
                            for e in b.entries)
        lines.append(f"ND {b.device} HBM {b.bank}: {format_bytes(b.used)} of {format_bytes(b.capacity)}"
                     + (f" - {holders}" if holders else ""))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Handler of ``neuron-sim ls``."""
    from neuron_sim.status import NrtError
    machine = machine_from_env()
    show_processes = bool(args.show_all_procs or args.wide)
    try:
        if args.json_output:
            doc = render_json(machine, current_holders(machine))
            for b in machine_memory(machine):
                doc[b.device]["memory_used"] = doc[b.device].get("memory_used", 0) + b.used
            sys.stdout.write(json.dumps(doc, indent=4) + "\n")
        else:
            holders = current_holders(machine) if show_processes else ()
            sys.stdout.write(render_table(machine, holders, show_processes))
            if show_processes:
                banks = machine_memory(machine)
                sys.stdout.write(render_memory(banks) if banks else "")
    except NrtError as exc:
        sys.stderr.write(f"neuron-sim ls: {exc.message}\n")
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add the ``ls`` subcommand to the ``neuron-sim`` parser."""
    parser = subparsers.add_parser(
        "ls", help="list the simulated Neuron devices (like neuron-ls)",
        description="List the devices of the simulated machine chosen by NEURON_SIM_TOPOLOGY, "
                    "NEURON_SIM_INSTANCE_TYPE and NEURON_LOGICAL_NC_CONFIG, like neuron-ls.",
    )
    parser.add_argument("-j", "--json-output", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-a", "--show-all-procs", action="store_true",
                        help="add PID, COMMAND and RUNTIME VERSION columns, a separator between devices")
    parser.add_argument("-w", dest="wide", action="store_true", help="same process columns as -a")
    parser.set_defaults(func=run)
