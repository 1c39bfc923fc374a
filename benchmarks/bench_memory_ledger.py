"""Cost of machine-wide device memory on tensor allocation: no ledger, the chunked ledger, and a ledger written
on every allocation (chunk of 1 byte), side by side in one run.

    python benchmarks/bench_memory_ledger.py [allocations]

Each variant allocates and frees ``allocations`` 4 KiB device tensors' worth of accounting on one core of a
trn1.2xlarge, holding up to 64 at a time; the figure is microseconds per allocate+free pair.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from neuron_sim.hardware.select import select_machine
from neuron_sim.runtime import memory_ledger
from neuron_sim.runtime.memory import DeviceMemory

MACHINE = select_machine("trn1.2xlarge", None, None)


def run(n: int, state_dir: Path | None) -> float:
    mem = DeviceMemory(MACHINE, state_dir)
    core = MACHINE.cores[0]
    held = []
    start = time.perf_counter()
    for i in range(n):
        held.append(mem.allocate(core, "tensors", 4096))
        if len(held) == 64:
            for a in held:
                mem.free(a)
            held.clear()
    for a in held:
        mem.free(a)
    elapsed = time.perf_counter() - start
    mem.close()
    return elapsed / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "ns"
        state.mkdir(mode=0o700)
        local = run(n, None)
        chunked = run(n, state)
        memory_ledger.CHUNK_BYTES = 1
        every = run(n, state)
    print(f"{n} allocate+free pairs of 4 KiB: no ledger {local:.2f} us, chunked ledger {chunked:.2f} us "
          f"({chunked / local:.2f}x), ledger written every time {every:.2f} us ({every / local:.1f}x)")


if __name__ == "__main__":
    main()
