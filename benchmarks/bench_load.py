"""nrt_load cost: time of a small NEFF against reading and unpacking it, and peak memory of a big one.

    python benchmarks/bench_load.py [--rounds N] [--big-mib M]

1. Time (issue 18 target <= 1.2x): median over interleaved rounds of ``nrt_load`` (timed) + ``nrt_unload`` of the
   sample MLP (neffs/mlp_trn1.neff; the real compiler NEFF matmul_small.neff too when ../shared/realneffs or
   /work/shared/realneffs is present) against reading the same file, gunzipping it and untarring every
   member with the standard library. Two figures: "again" loads the same file over and over, as test suites
   do (the runtime remembers NEFFs it read, by content: runtime/neff_cache.py), "first" empties that cache
   before each load, so every load unpacks, parses and compiles the NEFF.
2. Peak memory (target <= 2x the file): a NEFF of about M MiB (default 474) of random float32 weights is
   generated in a temporary directory; fresh processes measure the peak RSS above their baseline for
   (a) reading the file into bytes and nrt_load of those bytes, (b) read_neff_file (streamed),
   (c) reading + gunzip + untar with the standard library, each as a multiple of the file size. The floor of (a)
   is the file's bytes plus the unpacked archive the weights are views of (random float32 weights gzip by ~7%,
   so the archive is ~1.08x the file).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from paths import REPO, real_neff  # noqa: E402  (also puts this clone first on sys.path)

_SMALL_REAL = real_neff("matmul_small.neff")
REAL = None if _SMALL_REAL is None else _SMALL_REAL.parent


def unpack_baseline(path: Path) -> int:
    """Read + gunzip + untar every member (the standard library's work for the same file)."""
    data = path.read_bytes()
    header_size = int.from_bytes(data[8:16], "little")
    tar = gzip.decompress(data[header_size:])
    total = 0
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for info in tf:
            handle = tf.extractfile(info)
            if handle is not None:
                total += len(handle.read())
    return total


def time_small(path: Path, rounds: int, instance: str, first: bool = False) -> tuple[float, float]:
    """(median nrt_load, median read + gunzip + untar) in seconds; ``first``: every load is of content new to
    the runtime (its cache of NEFFs read before is emptied, untimed, before each load)."""
    from neuron_sim import nrt
    from neuron_sim.runtime import lifecycle, neff_cache
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = instance
    assert nrt.nrt_init() == 0
    try:
        loads, bases = [], []
        for _ in range(rounds):                    # interleaved: both see the same machine state
            if first:
                neff_cache.clear()
            t0 = time.perf_counter()
            status, model = nrt.nrt_load(path.read_bytes())
            t1 = time.perf_counter()
            assert status == 0, status
            nrt.nrt_unload(model)
            t2 = time.perf_counter()
            unpack_baseline(path)
            t3 = time.perf_counter()
            loads.append(t1 - t0)
            bases.append(t3 - t2)
        return statistics.median(loads), statistics.median(bases)
    finally:
        nrt.nrt_close()
        lifecycle.reset()


PEAK_CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[3])
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
import numpy, gzip, io, tarfile
from neuron_sim import nrt
from neuron_sim.neff.reader import read_neff_file
mode, path = sys.argv[1], sys.argv[2]
base = rss()
if mode == "nrt_load":
    data = open(path, "rb").read()
    assert nrt.nrt_init() == 0
    status, model = nrt.nrt_load(data)
    assert status == 0, status
elif mode == "load_path":                  # the Pythonic face's rt.load(path): streamed from the file
    import neuron_sim
    rt = neuron_sim.Runtime().start()
    model = rt.load(path)
elif mode == "read_neff_file":
    neff = read_neff_file(path)
else:
    data = open(path, "rb").read()
    tar = gzip.decompress(data[int.from_bytes(data[8:16], "little"):])
    members = {i.name: tarfile.open(fileobj=io.BytesIO(tar)).extractfile(i.name).read()
               for i in tarfile.open(fileobj=io.BytesIO(tar)) if i.isreg()}
with open("/proc/self/status") as fh:      # VmHWM: this process's own peak (ru_maxrss survives exec)
    peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024
print(peak - base)
"""


def peak_over_baseline(mode: str, path: Path) -> int:
    env = dict(os.environ, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge")
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, mode, str(path), str(REPO)], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def unpacked_size(path: Path) -> int:
    """Bytes of the NEFF's unpacked archive (inflated in 1 MiB steps, nothing held)."""
    with open(path, "rb") as fh:
        head = fh.read(24)
        fh.seek(int.from_bytes(head[8:16], "little"))
        left, total = int.from_bytes(head[16:24], "little"), 0
        dec = zlib.decompressobj(wbits=31)
        while left and not dec.eof:
            chunk = fh.read(min(1 << 20, left))
            left -= len(chunk)
            while chunk and not dec.eof:
                total += len(dec.decompress(chunk, 1 << 20))
                chunk = dec.unconsumed_tail
        return total


def make_big(directory: Path, mib: int) -> Path:
    import numpy as np
    from neuron_sim.neff.builder import NeffBuilder
    cols = 1024
    rows = mib * (1 << 20) // (4 * cols)
    b = NeffBuilder("big", target="v2")
    x = b.input("x", "float32", (1, rows))
    b.output("y", x @ b.weight("w", np.random.default_rng(0).standard_normal((rows, cols), np.float32)))
    path = directory / "big.neff"
    b.save(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--big-mib", type=int, default=474)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="neuron_sim_bench_") as tmp:
        os.environ["NEURON_SIM_STATE_DIR"] = str(Path(tmp) / "state")
        print(f"1. load time, median of {args.rounds} interleaved rounds (target <= 1.2x)")
        cases = [(REPO / "neffs" / "mlp_trn1.neff", "trn1.2xlarge")]
        if REAL is not None:
            cases.append((REAL / "matmul_small.neff", "trn2.48xlarge"))
        for path, instance in cases:
            for first, what in ((False, "again"), (True, "first")):
                load, base = time_small(path, args.rounds, instance, first)
                print(f"   {path.name:18s} nrt_load ({what}) {load * 1e6:8.1f} us   read+gunzip+untar "
                      f"{base * 1e6:8.1f} us   ratio {load / base:5.2f}x")
        t0 = time.perf_counter()
        big = make_big(Path(tmp), args.big_mib)
        size = big.stat().st_size
        floor = (size + unpacked_size(big)) / size
        print(f"2. peak memory above the process baseline, NEFF of {size / (1 << 20):.0f} MiB "
              f"(generated in {time.perf_counter() - t0:.0f} s; target <= 2x; the file's bytes plus the unpacked "
              f"archive the weights are views of: {floor:.2f}x)")
        for mode, what in (("nrt_load", "read the file + nrt_load(bytes)"),
                           ("load_path", "Runtime.load(path) (streamed)"),
                           ("read_neff_file", "read_neff_file (streamed)"),
                           ("baseline", "read + gunzip + untar (stdlib)")):
            peak = peak_over_baseline(mode, big)
            print(f"   {what:34s} {peak / (1 << 20):8.0f} MiB   {peak / size:5.2f}x the file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
