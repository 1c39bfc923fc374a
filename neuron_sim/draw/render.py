"""Draw a placement or memory scene with matplotlib (the optional ``draw`` extra): SVG by default, or PNG.

Placement is drawn as the placement guide draws it: one box per NeuronCore (``nc<id>``), a coloured band
under the cores each process holds, a dashed outline around each NeuronCore group, and one bar per model
over the cores it occupies (overlapping models stack). Memory: one stacked bar per HBM bank, one colour per
category. SVG output keeps text as text and gives each shape an id (``model-<label>-nc<first>-<last>``,
``core-nc<id>``, ``process-<pid>``, ``bank-nd<d>-hbm<b>-<category>``), and is byte-reproducible.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from neuron_sim.draw.scene import MemoryScene, PlacementScene

FORMATS = ("svg", "png")
PROCESS_COLOURS = ("#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#d9d2e9", "#fce5cd")
MODEL_COLOURS = ("#3d85c6", "#6aa84f", "#e69138", "#cc0000", "#674ea7", "#45818e", "#a64d79", "#bf9000")
CATEGORY_COLOURS = ("#3d85c6", "#6aa84f", "#e69138", "#cc0000", "#674ea7", "#45818e", "#a64d79", "#bf9000",
                    "#999999", "#76a5af")


class DrawingUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DrawingUnavailable("drawing needs matplotlib: pip install 'neuron_sim[draw]'") from None
    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "neuron_sim", "font.size": 9,
                                "font.family": "DejaVu Sans"})
    import matplotlib.pyplot as plt
    return plt


def _lanes(models: list[Any], position: dict[int, int]) -> list[int]:
    """First-fit lane per model so that models sharing a core stack instead of hiding each other."""
    taken: list[set[int]] = []
    out = []
    for m in models:
        cols = {position[c] for c in m.cores if c in position}
        for lane, used in enumerate(taken):
            if not used & cols:
                used |= cols
                out.append(lane)
                break
        else:
            taken.append(set(cols))
            out.append(len(taken) - 1)
    return out


def placement_figure(scene: PlacementScene) -> Any:
    """A matplotlib figure of the scene (cores in a row per device)."""
    plt = _pyplot()
    from matplotlib.patches import FancyBboxPatch, Rectangle
    devices = sorted({c.device for c in scene.cores})
    per_row = max(sum(1 for c in scene.cores if c.device == d) for d in devices) if devices else 1
    position = {c.core: c.local for c in scene.cores}
    row_of = {c.core: devices.index(c.device) for c in scene.cores}
    models = [m for p in scene.processes for m in p.models]
    lanes = _lanes(models, {c: row_of[c] * 1000 + position[c] for c in position})
    depth = max(lanes, default=-1) + 1
    row_h = 1.35 + 0.45 * depth
    fig_w = max(6.0, 1.1 * per_row + 1.5)
    fig, ax = plt.subplots(figsize=(fig_w, 0.9 + row_h * len(devices) * 0.9))
    ax.set_xlim(-0.8, per_row + 0.1)
    ax.set_ylim(-0.2, row_h * (len(devices) - 1) + 0.95 + 0.45 * depth)
    ax.axis("off")
    ax.set_title(scene.title or f"NeuronCore placement on {scene.instance_type}", loc="left")

    def y0(core: int) -> float:
        return (len(devices) - 1 - row_of[core]) * row_h

    for row, d in enumerate(devices):
        ax.text(-0.75, (len(devices) - 1 - row) * row_h + 0.4, f"nd{d}", va="center", ha="left", color="#555555")
    for n, p in enumerate(scene.processes):
        colour = PROCESS_COLOURS[n % len(PROCESS_COLOURS)]
        for c in p.cores:
            if c in position:
                band = Rectangle((position[c] - 0.02, y0(c) - 0.1), 1.04, 0.2, color=colour, lw=0)
                band.set_gid(f"process-{p.pid}-nc{c}")
                ax.add_patch(band)
        first = min((c for c in p.cores if c in position), default=None)
        if first is not None:
            ax.text(position[first] + 0.05, y0(first) - 0.08, f"process {p.tag}", fontsize=7, va="center",
                    gid=f"process-{p.pid}")
    for c in scene.cores:
        box = Rectangle((position[c.core] + 0.08, y0(c.core) + 0.12), 0.84, 0.56, fill=False, ec="#333333", lw=1.2)
        box.set_gid(f"core-nc{c.core}")
        ax.add_patch(box)
        owned = c.core in scene.owners()
        ax.text(position[c.core] + 0.5, y0(c.core) + 0.4, f"nc{c.core}", ha="center", va="center",
                color="#000000" if owned else "#999999")
    for p in scene.processes:
        for g, cores in enumerate(p.groups):
            cols = [position[c] for c in cores if c in position]
            if not cols:
                continue
            outline = Rectangle((min(cols) + 0.03, y0(cores[0]) + 0.07), max(cols) - min(cols) + 0.94, 0.66,
                                fill=False, ec="#7f6000", lw=1.5, ls="--")
            outline.set_gid(f"group-{p.pid}-ncg{g}")
            ax.add_patch(outline)
            ax.text(min(cols) + 0.1, y0(cores[0]) + 0.66, f"ncg{g}", fontsize=7, color="#7f6000", va="top")
    colours = {name: MODEL_COLOURS[n % len(MODEL_COLOURS)] for n, name in enumerate(dict.fromkeys(m.name for m in models))}
    for m, lane in zip(models, lanes):
        cores = [c for c in m.cores if c in position]
        if not cores:
            continue
        cols = [position[c] for c in cores]
        y = y0(cores[0]) + 0.85 + 0.45 * lane
        bar = FancyBboxPatch((min(cols) + 0.1, y), max(cols) - min(cols) + 0.8, 0.34,
                             boxstyle="round,pad=0,rounding_size=0.08", color=colours[m.name])
        span = f"nc{cores[0]}" if len(cores) == 1 else f"nc{cores[0]}-{cores[-1]}"
        bar.set_gid(f"model-{m.label}-{span}")
        ax.add_patch(bar)
        ax.text((min(cols) + max(cols)) / 2 + 0.5, y + 0.17, m.label, ha="center", va="center", color="white",
                fontweight="bold")
    return fig


def memory_figure(scene: MemoryScene) -> Any:
    """Stacked bars: HBM bytes per bank and category (MiB), each bar labelled with its total and capacity."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(scene.banks) + 2.5), 4.0))
    categories: list[str] = []
    for b in scene.banks:
        categories += [c for c in b.categories if c not in categories]
    labels = [f"nd{b.device}\nhbm{b.bank}" for b in scene.banks]
    bottom = [0.0] * len(scene.banks)
    for k, cat in enumerate(categories):
        heights = [b.categories.get(cat, 0) / 2**20 for b in scene.banks]
        bars = ax.bar(range(len(scene.banks)), heights, bottom=bottom, label=cat,
                      color=CATEGORY_COLOURS[k % len(CATEGORY_COLOURS)])
        for b, rect in zip(scene.banks, bars.patches):
            rect.set_gid(f"bank-nd{b.device}-hbm{b.bank}-{cat}")
        bottom = [x + h for x, h in zip(bottom, heights)]
    for i, b in enumerate(scene.banks):
        ax.text(i, bottom[i], f"{b.used / 2**20:.0f} MiB\nof {b.capacity / 2**30:.0f} GiB", ha="center",
                va="bottom", fontsize=7)
    ax.set_xticks(range(len(scene.banks)), labels)
    ax.set_ylabel("MiB")
    ax.set_ylim(0, max(bottom + [1.0]) * 1.3)
    ax.set_title(scene.title or f"HBM usage by category, all processes ({scene.instance_type})", loc="left")
    if categories:
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def render(fig: Any, fmt: str = "svg") -> bytes:
    """The figure as SVG (reproducible: no date, fixed ids) or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown drawing format {fmt!r}: expected svg or png")
    plt = _pyplot()
    buf = io.BytesIO()
    metadata = {"Date": None, "Creator": "neuron_sim"} if fmt == "svg" else {"Software": "neuron_sim"}
    fig.savefig(buf, format=fmt, metadata=metadata, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def save(fig: Any, path: str | Path, fmt: str | None = None) -> Path:
    """Write the figure; the format comes from ``fmt`` or the file's suffix (.svg/.png)."""
    path = Path(path)
    fmt = fmt or (path.suffix[1:].lower() if path.suffix else "svg")
    path.write_bytes(render(fig, fmt))
    return path
