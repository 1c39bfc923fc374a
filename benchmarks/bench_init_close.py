"""Time NeuronCore reservation (init) and release (close) with 1, 8 and 32 concurrent processes on trn1.32xlarge.

Each process asks for NEURON_RT_NUM_CORES=1 and repeats init/close ``--iterations`` times; all processes start
together behind a barrier. The table gives, per scenario, the median and p95 of the per-call init and close
latencies pooled over every process, and the total wall time from the barrier to the last process done.
Two layers are timed side by side: the full nrt_init/nrt_close, and the reservation alone (reserve/release).

    python benchmarks/bench_init_close.py [--iterations 20] [--procs 1,8,32]
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from neuron_sim.hardware.catalog import build_machine
from neuron_sim.hardware.model import Machine
from neuron_sim.runtime.reservation import reserve

INSTANCE_TYPE = "trn1.32xlarge"


@dataclass(frozen=True)
class BenchContext:
    """What one process needs to init and close: the state directory and the instance type."""

    state_dir: Path
    instance_type: str


@functools.lru_cache(maxsize=None)
def _machine(instance_type: str) -> Machine:
    return build_machine(instance_type)


def reserve_release(ctx: BenchContext) -> tuple[float, float]:
    """One init (reserve NUM_CORES=1) and close (release); returns (init seconds, close seconds)."""
    machine = _machine(ctx.instance_type)
    t0 = time.perf_counter()
    res = reserve(ctx.state_dir, machine, visible=None, num_cores=1, runtime_version="bench")
    t1 = time.perf_counter()
    res.release()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def nrt_init_close(ctx: BenchContext) -> tuple[float, float]:
    """The full runtime: nrt_init (config, machine, reservation, device memory) and nrt_close."""
    import os
    from neuron_sim import nrt
    os.environ["NEURON_SIM_STATE_DIR"] = str(ctx.state_dir.parent)
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = ctx.instance_type
    os.environ["NEURON_RT_NUM_CORES"] = "1"
    t0 = time.perf_counter()
    status = nrt.nrt_init()
    t1 = time.perf_counter()
    if status != 0:
        raise SystemExit(f"nrt_init failed with {nrt.nrt_get_status_as_str(status)}")
    nrt.nrt_close()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


LAYERS: dict[str, Callable[[BenchContext], tuple[float, float]]] = {
    "nrt_init/nrt_close": nrt_init_close,
    "reserve/release": reserve_release,
}
WORK: Callable[[BenchContext], tuple[float, float]] = nrt_init_close


def _process(ctx: BenchContext, iterations: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    WORK(ctx)                                   # warm-up: imports, machine build, file creation
    barrier.wait()
    results.put([WORK(ctx) for _ in range(iterations)])


@dataclass(frozen=True)
class Row:
    procs: int
    calls: int
    init_median: float
    init_p95: float
    close_median: float
    close_p95: float
    wall: float


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run_scenario(procs: int, iterations: int, state_dir: Path) -> Row:
    """Start ``procs`` processes together and gather their init/close latencies."""
    ctx_mp = mp.get_context("fork")
    barrier = ctx_mp.Barrier(procs + 1)
    results = ctx_mp.Queue()
    ctx = BenchContext(state_dir, INSTANCE_TYPE)
    workers = [ctx_mp.Process(target=_process, args=(ctx, iterations, barrier, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    samples = [s for _ in workers for s in results.get(timeout=300)]
    wall = time.perf_counter() - start
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"a benchmark process failed with exit code {w.exitcode}")
    inits, closes = [s[0] for s in samples], [s[1] for s in samples]
    return Row(procs, len(samples), statistics.median(inits), _p95(inits), statistics.median(closes),
               _p95(closes), wall)


def format_table(rows: list[Row], layer: str = "nrt_init/nrt_close") -> str:
    head = f"{'procs':>5} {'calls':>6} {'init median':>12} {'init p95':>10} {'close median':>13} {'close p95':>10} {'wall':>9}"
    lines = [f"{layer} on {INSTANCE_TYPE}, NEURON_RT_NUM_CORES=1 per process", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.procs:>5} {r.calls:>6} {r.init_median * 1e3:>10.3f}ms {r.init_p95 * 1e3:>8.3f}ms "
                     f"{r.close_median * 1e3:>11.3f}ms {r.close_p95 * 1e3:>8.3f}ms {r.wall:>8.3f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="init/close pairs per process (default 20)")
    parser.add_argument("--procs", default="1,8,32", help="comma-separated process counts (default 1,8,32)")
    args = parser.parse_args(argv)
    try:
        counts = [int(p) for p in args.procs.split(",")]
    except ValueError:
        parser.error(f"--procs takes comma-separated integers such as 1,8,32, got {args.procs!r}")
    global WORK
    for layer, work in LAYERS.items():
        WORK = work
        rows = []
        for procs in counts:
            with tempfile.TemporaryDirectory(prefix="neuron_sim-bench-") as tmp:
                rows.append(run_scenario(procs, args.iterations, Path(tmp) / INSTANCE_TYPE))
        print(format_table(rows, layer))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
