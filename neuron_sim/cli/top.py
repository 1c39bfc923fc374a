"""``neuron-top``: a terminal UI of the simulated machine, refreshed every second (runtime-semantics.md §5).

Built on curses (the standard library's binding of ncurses: no extra dependency, and it works over ssh and
inside tmux/screen through terminfo). The screen is a pure function of one neuron-monitor record
(``render``), so it shows exactly what neuron-monitor would report: NeuronCore utilisation, vCPU use, memory
usage summary (host and device, by category), and the memory details per process and model. Tabs: ``all``
plus one per runtime process, shown ``>tag<`` when selected. Keys: ``q`` quits, ``a``/``d`` or the arrow
keys move between tabs, ``1``-``9`` pick a tab. The exact text of the real tool is not documented; the
section titles and column names are the documented ones.
"""
from __future__ import annotations

import argparse
import curses
import sys
import time
from typing import Any

from neuron_sim.cli.ls import machine_from_env
from neuron_sim.cli.monitor_report import MonitorConfig, Sampler
from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.publish import MonitorAttachment, read_runtimes
from neuron_sim.runtime.reservation import default_state_dir
from neuron_sim.status import NrtError

PROG = "neuron-top"
REFRESH_S = 1.0
BAR_WIDTH = 20
CORES_PER_LINE = 4


def human_bytes(n: int) -> str:
    """``1.5GB``, ``97.0MB``, ``12.0KB``, ``0B``."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def _bar(percent: float) -> str:
    filled = int(round(BAR_WIDTH * max(0.0, min(100.0, percent)) / 100))
    return "[" + "|" * filled + " " * (BAR_WIDTH - filled) + "]"


def _tabs(entries: list[dict], selected: int) -> str:
    names = ["all"] + [f"{i}:{e['neuron_runtime_tag']}" for i, e in enumerate(entries, 1)]
    return "Tabs: " + " ".join(f">{n}<" if i == selected else f" {n} " for i, n in enumerate(names))


def _utilisation_lines(machine: Machine, entries: list[dict]) -> list[str]:
    busy: dict[int, float] = {}
    for e in entries:
        for core, v in e["report"]["neuroncore_counters"]["neuroncores_in_use"].items():
            busy[int(core)] = v["neuroncore_utilization"]
    version = {"v1": "v1", "v2": "v2"}.get(machine.generation.name, "v3d" if machine.lnc == 2 else "v3")
    lines = [f"NeuronCore {version} Utilization"]
    cells = []
    for core in machine.cores:
        value = busy.get(core.global_id)
        shown = f"{value:6.2f}%" if value is not None else "     - "
        cells.append(f"NC{core.global_id:<3}{_bar(value or 0.0)}{shown}")
    for i in range(0, len(cells), CORES_PER_LINE):
        lines.append("  " + "  ".join(cells[i:i + CORES_PER_LINE]))
    return lines


def _vcpu_lines(sample: dict, entries: list[dict]) -> list[str]:
    avg = sample["system_data"].get("vcpu_usage", {}).get("average_usage")
    user = sum(e["report"]["neuron_runtime_vcpu_usage"]["vcpu_usage"]["user"] for e in entries)
    system = sum(e["report"]["neuron_runtime_vcpu_usage"]["vcpu_usage"]["system"] for e in entries)
    host = (f"user {avg['user']:6.2f}%  system {avg['system']:6.2f}%" if avg is not None
            else "user      -   system      - ")
    return ["VCPU Utilization", f"  System   {host}     Runtime  user {user:6.2f}%  system {system:6.2f}%"]


def _memory_lines(entries: list[dict]) -> list[str]:
    host = {"application_memory": 0, "constants": 0, "dma_buffers": 0, "tensors": 0}
    device = dict.fromkeys(("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors"), 0)
    for e in entries:
        used = e["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]
        for k, v in used["host"].items():
            host[k] += v
        for per_core in used["neuroncore_memory_usage"].values():
            for k, v in per_core.items():
                device[k] += v
    return [
        "Memory Usage Summary",
        f"  Host    Total {human_bytes(sum(host.values()))}  Tensors {human_bytes(host['tensors'])}  "
        f"Constants {human_bytes(host['constants'])}  DMA Buffers {human_bytes(host['dma_buffers'])}  "
        f"App. Memory {human_bytes(host['application_memory'])}",
        f"  Device  Total {human_bytes(sum(device.values()))}  Tensors {human_bytes(device['tensors'])}  "
        f"Constants {human_bytes(device['constants'])}  Model Code {human_bytes(device['model_code'])}  "
        f"Runtime Memory {human_bytes(device['runtime_memory'])}  "
        f"Model Scratchpad {human_bytes(device['model_shared_scratchpad'])}",
    ]


def _detail_lines(entries: list[dict]) -> list[str]:
    lines = ["Memory Usage Details", f"  {'Model ID':<44}{'Host Memory':>14}{'Device Memory':>16}"]
    for e in entries:
        used = e["report"]["memory_used"]
        totals = used["neuron_runtime_used_bytes"]
        label = f"{e['neuron_runtime_tag']} (pid {e['pid']})"
        lines.append(f"  {label[:44]:<44}{human_bytes(totals['host']):>14}{human_bytes(totals['neuron_device']):>16}")
        for model in used["loaded_models"]:
            sgs = model["subgraphs"].values()
            cores = ",".join(str(sg["neuroncore_index"]) for sg in sgs)
            device = sum(sg["memory_used_bytes"]["neuron_device"] for sg in sgs)
            name = f"\\_ {model['model_id']} {model['name']} (NC {cores})"
            lines.append(f"    {name[:42]:<42}{human_bytes(0):>14}{human_bytes(device):>16}")
    if len(lines) == 2:
        lines.append("  (no Neuron runtime is running on this machine)")
    return lines


def render(machine: Machine, sample: dict, selected: int) -> list[str]:
    """The screen's lines for one neuron-monitor record; tab 0 is all runtimes, tab i the i-th one."""
    entries = sample["neuron_runtime_data"]
    shown = entries if selected == 0 or selected > len(entries) else [entries[selected - 1]]
    versions = sorted({e.get("runtime_version", "") for e in entries} - {""})
    title = (f"neuron-top  neuron_sim runtime {', '.join(versions) or '-'}  instance {machine.instance_type} "
             f"({machine.instance_id})  runtimes: {len(entries)}")
    lines = [title, _tabs(entries, selected), ""]
    lines += _utilisation_lines(machine, shown) + [""]
    lines += _vcpu_lines(sample, shown) + [""]
    lines += _memory_lines(shown) + [""]
    lines += _detail_lines(shown) + [""]
    lines.append("q: quit   a/d or arrows: previous/next tab   1-9: select tab")
    return lines


def next_tab(key: int, selected: int, tabs: int) -> int | None:
    """The tab after a key press; None when the key quits."""
    if key in (ord("q"), ord("Q")):
        return None
    if key in (ord("d"), curses.KEY_RIGHT):
        return (selected + 1) % tabs
    if key in (ord("a"), curses.KEY_LEFT):
        return (selected - 1) % tabs
    if ord("1") <= key <= ord("9") and key - ord("0") < tabs:
        return key - ord("0")
    return selected


def _draw(screen: Any, lines: list[str]) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    for y, line in enumerate(lines[: height - 1]):
        attr = curses.A_BOLD if line and not line.startswith(" ") and y != 1 else curses.A_NORMAL
        screen.addnstr(y, 0, line, max(0, width - 1), attr)
        if y == 1 and ">" in line and curses.has_colors():
            start = line.index(">")
            end = line.index("<", start) + 1
            screen.addnstr(y, start, line[start:end], max(0, width - 1 - start), curses.color_pair(1))
    screen.refresh()


def _loop(screen: Any, machine: Machine, refresh_s: float) -> int:
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    if curses.has_colors():
        curses.start_color()
        curses.init_pair(1, curses.COLOR_GREEN, curses.COLOR_BLACK)
    screen.timeout(100)
    state_dir = default_state_dir(machine)
    sampler = Sampler(machine, MonitorConfig(period_s=refresh_s))
    selected, sample, due = 0, None, 0.0
    while True:
        now = time.monotonic()
        if now >= due:
            records = read_runtimes(state_dir)
            sample = sampler.sample(records, now)
            versions = {r["pid"]: r.get("runtime_version", "") for r in records}
            for entry in sample["neuron_runtime_data"]:
                entry["runtime_version"] = versions.get(entry["pid"], "")
            due = now + refresh_s
        _draw(screen, render(machine, sample, selected))
        key = screen.getch()
        if key == -1:
            continue
        if key == curses.KEY_RESIZE:
            continue
        tab = next_tab(key, selected, len(sample["neuron_runtime_data"]) + 1)
        if tab is None:
            return 0
        selected = tab


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of the ``neuron-top`` console script and of ``neuron-sim top``."""
    parser = argparse.ArgumentParser(prog=prog, description="Terminal UI of the simulated Neuron machine.")
    parser.add_argument("--refresh", type=float, default=REFRESH_S, metavar="SECONDS",
                        help="seconds between refreshes (default 1)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    if not args.refresh > 0:
        print(f"{prog}: error: --refresh must be a positive number of seconds, got {args.refresh}", file=sys.stderr)
        return 2
    if not sys.stdout.isatty():
        print(f"{prog}: error: neuron-top needs a terminal; use neuron-monitor for a stream", file=sys.stderr)
        return 2
    try:
        machine = machine_from_env()
        attachment = MonitorAttachment(default_state_dir(machine))
    except (ValueError, NrtError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return curses.wrapper(_loop, machine, args.refresh)
    except KeyboardInterrupt:
        return 0
    finally:
        attachment.close()


if __name__ == "__main__":
    sys.exit(main())
