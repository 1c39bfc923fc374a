"""``neuron-sim demo`` (also plain ``neuron-sim``): the runtime at work on the simulated machine.

It builds an MLP NEFF in memory, reserves cores, loads copies on the least-used cores, executes one,
checks it against numpy, shows simulated time and device memory, then reproduces three failures on
demand (bad input size, execution timeout, cores held by another process).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import interface
from neuron_sim.runtime.interface import format_bytes

DEMO_CORES = 4   # at most; fewer on machines that have fewer (trn1.2xlarge, inf2.xlarge have 2)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="load, place and execute a model on the simulated machine")
    p.add_argument("--instance-type", help="simulated instance type (default: NEURON_SIM_INSTANCE_TYPE or trn1.32xlarge)")
    p.set_defaults(func=run)


def build_mlp(target: str, lnc: int, duration: float | None = None, name: str = "demo_mlp") -> bytes:
    """A two-layer MLP (x float32[8,256] → y float32[8,64]) with fixed-seed weights."""
    rng = np.random.default_rng(0)
    b = NeffBuilder(name, target=target)
    x = b.input("x", "float32", (8, 256))
    h = b.gelu(x @ b.weight("w1", rng.standard_normal((256, 128)).astype(np.float32) / 16)
               + b.weight("b1", np.zeros(128, np.float32)))
    b.output("y", b.softmax(h @ b.weight("w2", rng.standard_normal((128, 64)).astype(np.float32) / 11)))
    if duration is not None:
        b.declare(duration_s=duration)
    return b.build(lnc_size=lnc)


def reference(x: np.ndarray) -> np.ndarray:
    from neuron_sim.compute.ops import apply_op
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((256, 128)).astype(np.float32) / 16
    w2 = rng.standard_normal((128, 64)).astype(np.float32) / 11
    h = apply_op("gelu", [x @ w1])
    return apply_op("softmax", [h @ w2])


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with {nrt.nrt_get_status_as_str(status)}({status})")


def _failed(out, what: str, status: int) -> int:
    """Say what failed; the cause is on stderr when the runtime logged one (NEURON_RT_LOG_LEVEL=INFO shows more)."""
    out(f"{what} failed with {nrt.nrt_get_status_as_str(status)}({status}); the runtime's ERROR lines on stderr, "
        "if any, name the cause (NEURON_RT_LOG_LEVEL=INFO shows more).\n")
    return 1


def run(args: argparse.Namespace) -> int:
    if args.instance_type:
        os.environ["NEURON_SIM_INSTANCE_TYPE"] = args.instance_type
    pictures = Path(tempfile.mkdtemp(prefix="neuron_sim_demo_"))       # its Perfetto trace and drawing
    os.environ.setdefault("NEURON_SIM_TRACE", str(pictures / "trace.json"))
    out = sys.stdout.write
    if "NEURON_RT_VISIBLE_CORES" not in os.environ and "NEURON_RT_NUM_CORES" not in os.environ:
        status, total = nrt.nrt_get_total_nc_count()
        if status != 0:
            return _failed(out, "the machine description", status)
        os.environ["NEURON_RT_NUM_CORES"] = str(min(DEMO_CORES, total))
    status = nrt.nrt_init()
    if status != 0:
        return _failed(out, "nrt_init", status)
    try:
        m = interface.machine()
        out(f"neuron_sim demo on a simulated {m.instance_type}: {len(m.devices)} device(s), {m.total_cores} "
            f"logical NeuronCore(s) of NeuronCore-{m.generation.name} (LNC {m.lnc}), "
            f"{format_bytes(m.devices[0].memory_bytes)} HBM per device\n\n")
        ids = interface.global_core_ids()
        out(f"1. nrt_init reserved NeuronCores {ids[0]}-{ids[-1]} for pid {os.getpid()} "
            f"(NEURON_RT_NUM_CORES={os.environ.get('NEURON_RT_NUM_CORES', '-')}); other processes now get "
            f"NRT_RESOURCE for them\n")
        neff = build_mlp(m.generation.name, m.lnc)
        handles = []
        for _ in range(min(3, len(ids)) + 1):
            status, model = nrt.nrt_load(neff, -1, -1)
            _check(status, "nrt_load")
            handles.append(model)
        places = [nrt.nrt_get_model_info(h)[1].vnc for h in handles]
        out(f"2. nrt_load x{len(handles)} (NEFF of {len(neff)} bytes, built in memory): placed on least-used "
            f"cores {places}\n")
        model = handles[0]
        _, ins = nrt.nrt_allocate_tensor_set()
        _, outs = nrt.nrt_allocate_tensor_set()
        _, tx = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, places[0], 8 * 256 * 4, "x")
        _, ty = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, places[0], 8 * 64 * 4, "y")
        nrt.nrt_add_tensor_to_tensor_set(ins, "x", tx)
        nrt.nrt_add_tensor_to_tensor_set(outs, "y", ty)
        x = np.random.default_rng(1).standard_normal((8, 256)).astype(np.float32)
        _check(nrt.nrt_tensor_write(tx, x, 0, x.nbytes), "nrt_tensor_write")
        clock = interface.clock()
        t_sim, t0 = clock.now(), time.perf_counter()
        _check(nrt.nrt_execute(model, ins, outs), "nrt_execute")
        wall = time.perf_counter() - t0
        y = np.empty((8, 64), np.float32)
        _check(nrt.nrt_tensor_read(ty, y, 0, y.nbytes), "nrt_tensor_read")
        diff = float(np.abs(y - reference(x)).max())
        out(f"3. nrt_execute on NC {places[0]}: output matches numpy (max abs diff {diff:.2e}); simulated "
            f"{(clock.now() - t_sim) * 1e6:.1f} µs (cost model, {m.instance_type}), wall {wall * 1e6:.0f} µs\n")
        used = interface.memory_by_category(places[0])
        _, stats = nrt.nrt_get_vnc_memory_stats(places[0])
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in used.items() if v)
        out(f"4. device memory of NC {places[0]}: {format_bytes(stats.bytes_used)} used of "
            f"{format_bytes(stats.bytes_limit)} ({parts})\n")
        out("5. failures reproduced on demand (the runtime's own log lines go to stderr):\n")
        _, bad = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, places[0], 100, "x")
        nrt.nrt_add_tensor_to_tensor_set(ins, "x", bad)
        status = nrt.nrt_execute(model, ins, outs)
        out(f"   - input tensor of 100 bytes instead of {x.nbytes}: {nrt.nrt_get_status_as_str(status)}\n")
        nrt.nrt_add_tensor_to_tensor_set(ins, "x", tx)
        _, slow = nrt.nrt_load(build_mlp(m.generation.name, m.lnc, duration=40.0, name="slow_mlp"), places[0], -1)
        t0 = time.perf_counter()
        status = nrt.nrt_execute(slow, ins, outs)
        out(f"   - a model that runs 40 s (simulated) against NEURON_RT_EXEC_TIMEOUT={interface.config().exec_timeout_s:g}: "
            f"{nrt.nrt_get_status_as_str(status)} after {(time.perf_counter() - t0) * 1e3:.1f} ms of wall time "
            f"({clock.kind} clock)\n")
        sys.stdout.flush()
        child = subprocess.run(
            [sys.executable, "-c", "from neuron_sim import nrt; import sys; "
             "s = nrt.nrt_init(); print(nrt.nrt_get_status_as_str(s)); nrt.nrt_close()"],
            env={**{k: v for k, v in os.environ.items() if k != "NEURON_SIM_TRACE"},
                 "NEURON_RT_VISIBLE_CORES": str(ids[0]), "NEURON_RT_NUM_CORES": "0"},
            capture_output=True, text=True, timeout=120)
        reason = next((ln.split("NRT:nrt_allocate_neuron_cores", 1)[1].strip() for ln in child.stderr.splitlines()
                       if "not available" in ln), child.stderr.strip()[-200:])
        out(f"   - another process asking for NeuronCore {ids[0]}: {child.stdout.strip()} ({reason})\n")
        drawing = _draw_placement(m, pictures / "placement.svg")
    finally:
        nrt.nrt_close()
    out("6. nrt_close: models unloaded, device memory returned, cores released\n")
    out(f"7. the run as a timeline: {os.environ['NEURON_SIM_TRACE']} (open it in https://ui.perfetto.dev or "
        f"chrome://tracing); the placement: {drawing}\n")
    return 0


def _draw_placement(machine: object, path: Path) -> str:
    """Draw this machine's placement now (all processes); says how to get the drawing extra if it is missing."""
    from neuron_sim.draw import render, scene
    interface.publish_state()
    try:
        render.save(render.placement_figure(scene.placement_scene(interface.state_dir(), machine)), path)
    except render.DrawingUnavailable as exc:
        return f"not drawn ({exc})"
    return str(path)
