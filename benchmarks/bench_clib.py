"""Per-call overhead of the C library against the flat Python face, measured side by side in one run.

    python benchmarks/bench_clib.py

Builds (or reuses) libnrt.so.1, compiles a small C client, and times the same calls both ways on the same
tiny NEFF: ``nrt_execute`` (the hot path) and ``nrt_tensor_get_size`` (the bare cost of crossing from C
into the runtime). Each figure is the best of 5 rounds of N calls, and the two sides alternate 3 times
(best kept) so a busy machine disturbs both alike; the C client times itself with ``clock_gettime``, so
process start and library load are not counted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STATE = tempfile.mkdtemp(prefix="neuron_sim_bench_")
os.environ.setdefault("NEURON_SIM_STATE_DIR", STATE)
os.environ.setdefault("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")

from neuron_sim import nrt  # noqa: E402
from neuron_sim.clib import build, environment  # noqa: E402
from neuron_sim.neff.builder import NeffBuilder  # noqa: E402

ROUNDS, EXECUTES, SIZE_CALLS, REPEATS = 5, 10000, 100000, 3

C_CLIENT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <nrt/nrt.h>
#include <nrt/nrt_experimental.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv)
{
    int rounds = atoi(argv[2]), executes = atoi(argv[3]), size_calls = atoi(argv[4]);
    FILE *f = fopen(argv[1], "rb");
    fseek(f, 0, SEEK_END); size_t size = ftell(f); fseek(f, 0, SEEK_SET);
    void *neff = malloc(size);
    if (fread(neff, 1, size, f) != size) return 1;
    nrt_model_t *model; nrt_tensor_info_array_t *info; nrt_tensor_set_t *sets[2];
    if (nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") || nrt_load(neff, size, 0, -1, &model)
        || nrt_get_model_tensor_info(model, &info) || nrt_allocate_tensor_set(&sets[0])
        || nrt_allocate_tensor_set(&sets[1])) return 1;
    nrt_tensor_t *t = NULL;
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        nrt_tensor_info_t *ti = &info->tensor_array[i];
        if (nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, ti->size, ti->name, &t)
            || nrt_add_tensor_to_tensor_set(sets[ti->usage], ti->name, t)) return 1;
    }
    double best_exec = 1e9, best_size = 1e9;
    size_t sink = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < executes; i++)
            if (nrt_execute(model, sets[0], sets[1])) return 1;
        double t1 = now();
        for (int i = 0; i < size_calls; i++) sink += nrt_tensor_get_size(t);
        double t2 = now();
        if ((t1 - t0) / executes < best_exec) best_exec = (t1 - t0) / executes;
        if ((t2 - t1) / size_calls < best_size) best_size = (t2 - t1) / size_calls;
    }
    printf("%.9f %.9f %zu\n", best_exec, best_size, sink);
    nrt_unload(model);
    nrt_close();
    return 0;
}
"""


def best_of(fn, rounds: int, number: int) -> float:
    """Seconds per call: the best of ``rounds`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def tiny_neff() -> bytes:
    rng = np.random.default_rng(0)
    b = NeffBuilder("tiny", target="v2")
    x = b.input("x", "float32", (1, 16))
    b.output("y", b.relu(x @ b.weight("w", rng.standard_normal((16, 16)).astype(np.float32))))
    return b.build()


def python_face(neff: bytes) -> tuple[float, float]:
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == 0
    _, model = nrt.nrt_load(neff, 0, -1)
    _, info = nrt.nrt_get_model_tensor_info(model)
    sets = [nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]]
    for ti in info.tensor_array:
        _, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, ti.size, ti.name)
        nrt.nrt_add_tensor_to_tensor_set(sets[ti.usage], ti.name, t)
    ins, outs = sets
    execute = best_of(lambda: nrt.nrt_execute(model, ins, outs), ROUNDS, EXECUTES)
    get_size = best_of(lambda: nrt.nrt_tensor_get_size(t), ROUNDS, SIZE_CALLS)
    nrt.nrt_close()
    return execute, get_size


def compile_client(work: Path) -> tuple[Path, dict]:
    library = build.build()
    (work / "client.c").write_text(C_CLIENT)
    exe = work / "client"
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-std=c11", "-D_DEFAULT_SOURCE", f"-I{library / 'include'}",
                    "-o", str(exe), str(work / "client.c"), f"-L{library}", "-lnrt"], check=True)
    return exe, {**os.environ, **environment.settings(library)}


def c_library(exe: Path, env: dict, neff_path: Path) -> tuple[float, float]:
    out = subprocess.run([str(exe), str(neff_path), str(ROUNDS), str(EXECUTES), str(SIZE_CALLS)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> int:
    neff = tiny_neff()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tiny.neff").write_bytes(neff)
        exe, env = compile_client(work)
        runs = [(python_face(neff), c_library(exe, env, work / "tiny.neff")) for _ in range(REPEATS)]
    (py_exec, py_size), (c_exec, c_size) = ([min(x) for x in zip(*side)] for side in zip(*runs))
    print(f"{'call':24s} {'C library':>12s} {'Python face':>12s} {'C - Python':>12s}")
    for name, c, py in (("nrt_execute", c_exec, py_exec), ("nrt_tensor_get_size", c_size, py_size)):
        print(f"{name:24s} {c * 1e6:9.2f} µs {py * 1e6:9.2f} µs {(c - py) * 1e6:9.2f} µs")
    print(f"(tiny NEFF x[1,16] @ w[16,16], relu; best of {REPEATS} alternations x {ROUNDS} rounds of {EXECUTES} "
          f"executes / {SIZE_CALLS} get_size calls; C client -O2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
