"""``neuron-ls`` / ``neuron-sim ls``: a neuron-ls look-alike for the simulated machine (runtime-semantics.md §5).

The renderers are pure functions of a Machine and a list of core holders (objects with ``pid``,
``command``, ``runtime_version``, machine-wide ``physical_cores`` and optionally ``tag``); a device's
processes are the holders owning any of its physical cores. The JSON follows the real ``neuron-ls -j`` of a
trn1.2xlarge byte for byte in its conventions: four-space indent, ``numa_node`` a string (``"-1"`` without a
node), ``connected_to`` null when a device has no link, ``logical_neuroncore_config`` only on trn2 (as the
table's header line), no trailing newline. Decisions where neuron-ls's exact output is unknown: commands are
put on one line and cut to 20 characters ("..." ending), ``-a`` and ``-w`` both add the process columns plus
a PROCESS TAG column (NEURON_PROCESS_TAG from the runtime's published state); ``-t`` draws an n×n torus
(trn1.32xlarge, trn2.48xlarge) with its wrap-around links, or lists each device's links on other machines.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
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
_PROCESS_COLUMNS = (("PID", ""), ("COMMAND", ""), ("RUNTIME", "VERSION"), ("PROCESS", "TAG"))
PROG = "neuron-ls"


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
    """A command line on one line (whitespace runs become one space), cut to MAX_COMMAND characters with ``...``."""
    command = " ".join(command.split())
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
            tail = ["", "", "", ""] if proc is None else [
                str(proc.pid), truncate_command(proc.command), str(proc.runtime_version),
                truncate_command(getattr(proc, "tag", "") or str(proc.pid))]
            rows.append(lead + tail)
        groups.append(rows)
    if show_processes:
        columns += _PROCESS_COLUMNS
    return "\n".join(header_lines(machine) + _table(columns, groups, separate=show_processes)) + "\n"


def render_json(machine: Machine, holders: Sequence[Any] = ()) -> list[dict]:
    """neuron-ls -j's document: one object per device with the real field names and value conventions."""
    out = []
    for device in machine.devices:
        ids = _core_ids(machine, device)
        entry: dict[str, Any] = {
            "neuron_device": device.index,
            "bdf": device.bdf,
            "cpu_affinity": device.cpu_affinity,
            "numa_node": str(device.numa_node),
            "connected_to": list(device.connected) or None,
            "nc_count": len(ids),
        }
        if machine.generation.name == "v3":
            entry["logical_neuroncore_config"] = machine.lnc
        entry.update({
            "memory_size": device.memory_bytes,
            "neuroncore_ids": ids,
            "neuron_processes": [
                {"pid": h.pid, "command": h.command, "neuron_runtime_version": str(h.runtime_version)}
                for h in device_holders(machine, device, holders)
            ],
        })
        out.append(entry)
    return out


def format_json(machine: Machine, holders: Sequence[Any] = ()) -> str:
    """The exact text of ``neuron-ls -j`` (no trailing newline, as the real tool)."""
    return json.dumps(render_json(machine, holders), indent=4)


def _torus_side(machine: Machine) -> int:
    """The side n when the devices form an n×n torus numbered row by row (trn1.32xlarge, trn2.48xlarge), else 0."""
    count = len(machine.devices)
    n = int(round(count ** 0.5))
    if n < 3 or n * n != count:
        return 0
    for d in machine.devices:
        r, c = divmod(d.index, n)
        ring = {r * n + (c + 1) % n, r * n + (c - 1) % n, ((r + 1) % n) * n + c, ((r - 1) % n) * n + c}
        if set(d.connected) != ring:
            return 0
    return n


def render_topology(machine: Machine) -> str:
    """``-t``: the links between devices: a torus grid with wrap-around links, or each device's links."""
    n = _torus_side(machine)
    lines = [""]
    if not n:
        for device in machine.devices:
            links = ", ".join(str(c) for c in device.connected)
            lines.append(f"[ {device.index} ]" + (f" ◄––► {links}" if links else " (no links)"))
        return "\n".join(lines) + "\n"
    width = max(len(str(d.index)) for d in machine.devices)
    size = width + 4                                   # "[ " + id + " ]"
    mark = lambda ch: "".join(" " * 4 + " " * (size // 2) + ch + " " * (size - size // 2 - 1)  # noqa: E731
                              for _ in range(n)).rstrip()
    lines.append(mark("*"))
    for r in range(n):
        lines.append(mark("▲"))
        lines.append("*––►" + "◄––►".join(f"[ {str(r * n + c).rjust(width)} ]" for c in range(n)) + "◄––*")
        lines.append(mark("▼"))
    lines.append(mark("*"))
    lines += ["", "Legend:", "", "        *––► = Wrap-around link"]
    return "\n".join(lines) + "\n"


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


@dataclass(frozen=True)
class TaggedHolder:
    """A core holder with the NEURON_PROCESS_TAG its runtime published (its pid when it published none)."""

    pid: int
    command: str
    runtime_version: str
    physical_cores: tuple[int, ...]
    tag: str


def current_holders(machine: Machine) -> tuple[Any, ...]:
    """The processes holding cores of ``machine`` now, tagged; none when the reservation module is unavailable."""
    try:
        from neuron_sim.runtime import reservation
        list_holders = reservation.list_holders
        default_state_dir = reservation.default_state_dir
    except (ImportError, AttributeError):
        return ()
    state_dir = default_state_dir(machine)
    holders = list_holders(state_dir, machine)
    try:
        from neuron_sim.runtime.publish import read_runtimes
        tags = {r["pid"]: r["tag"] for r in read_runtimes(state_dir)}
    except (ImportError, OSError, TypeError):
        tags = {}
    return tuple(TaggedHolder(h.pid, h.command, str(h.runtime_version), tuple(h.physical_cores),
                              tags.get(h.pid, str(h.pid))) for h in holders)


class _Parser(argparse.ArgumentParser):
    """neuron-ls prints a usage error on stdout and exits 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stdout)
        sys.stdout.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(1)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="List the devices of the simulated machine chosen by "
                     "NEURON_SIM_TOPOLOGY, NEURON_SIM_INSTANCE_TYPE and NEURON_LOGICAL_NC_CONFIG, like neuron-ls.")
    parser.add_argument("-j", "--json-output", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-a", "--show-all-procs", action="store_true",
                        help="add PID, COMMAND, RUNTIME VERSION and PROCESS TAG columns, a separator between devices")
    parser.add_argument("-w", "--wide", action="store_true", help="same process columns as -a")
    parser.add_argument("-t", "--topology", action="store_true", help="also show the links between devices")
    parser.set_defaults(prog=prog)
    return parser


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
    from neuron_sim.sizes import format_bytes
    lines = ["device memory in use by all processes of this machine:"]
    for b in banks:
        holders = "; ".join(f"PID {e.pid} ({truncate_command(e.command)}) {format_bytes(e.nbytes)}"
                            for e in b.entries)
        lines.append(f"ND {b.device} HBM {b.bank}: {format_bytes(b.used)} of {format_bytes(b.capacity)}"
                     + (f" - {holders}" if holders else ""))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the listing; exit 1 with nothing on stdout when the machine has no Neuron device."""
    from neuron_sim.status import NrtError
    prog = getattr(args, "prog", PROG)
    try:
        machine = machine_from_env()
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if not machine.devices:
        print(f"{prog}: error: no Neuron device found on the simulated machine {machine.instance_type}",
              file=sys.stderr)
        return 1
    show_processes = bool(args.show_all_procs or args.wide)
    try:
        if args.json_output:
            sys.stdout.write(format_json(machine, current_holders(machine)))
        else:
            holders = current_holders(machine) if show_processes else ()
            sys.stdout.write(render_table(machine, holders, show_processes))
            if show_processes:
                banks = machine_memory(machine)
                sys.stdout.write(render_memory(banks) if banks else "")
            if args.topology:
                sys.stdout.write(render_topology(machine))
    except NrtError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of the ``neuron-ls`` console script and of ``neuron-sim ls``."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return run(args)
