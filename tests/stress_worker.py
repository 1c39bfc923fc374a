"""One process of the multi-process stress test (tests/test_stress_processes.py); run as a script.

Takes one NeuronCore of a trn1.2xlarge (2 cores, one 32 GiB HBM bank), then runs threads until killed or until
its time is up: load/execute/unload with numpy checks, async submits counting callbacks, and large device-tensor
churn that keeps the shared bank near full. Every broken invariant is appended as one JSON line to the
violations file; the parent asserts that file stays empty. Exit codes: 0 done, 3 no free core.
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

from neuron_sim import NrtError, Runtime
from neuron_sim.neff.reader import read_neff_file
from neuron_sim.runtime import lifecycle
from neuron_sim.status import NrtStatus

NEFF = Path(__file__).resolve().parent.parent / "neffs" / "mlp_trn1.neff"
W = read_neff_file(NEFF).weights


def reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W["w1"] + W["b1"], 0) @ W["w2"] + W["b2"]


class Worker:
    def __init__(self, rt: Runtime, violations: Path, witness_dir: Path, deadline: float, seed: int) -> None:
        self.rt, self.violations, self.deadline = rt, violations, deadline
        self.witness_dir = witness_dir
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"executes": 0, "submits": 0, "callbacks": 0, "allocs": 0, "ooms": 0, "queue_full": 0}

    def violation(self, kind: str, **detail: object) -> None:
        line = json.dumps({"pid": os.getpid(), "kind": kind, **detail}) + "\n"
        fd = os.open(self.violations, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    # ---- exclusive core ownership: a witness file per physical core names its current owner ----------
    def claim_cores(self) -> list[Path]:
        paths = []
        for phys in lifecycle.peek().reservation.physical_cores:
            path = self.witness_dir / f"core{phys}"
            try:
                previous = int(path.read_text() or 0)
            except (OSError, ValueError):
                previous = 0
            if previous and previous != os.getpid() and _running(previous):
                self.violation("core double-owned", core=phys, other=previous)
            path.write_text(str(os.getpid()))
            paths.append(path)
        return paths

    # ---- threads ------------------------------------------------------------------------------------
    def executes(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                model = self.rt.load(NEFF)
                for _ in range(self.rng.randint(1, 5)):
                    x = np.random.default_rng(self.rng.getrandbits(32)).standard_normal((1, 64), np.float32)
                    y = model(x=x)["y"]
                    if not np.allclose(y, reference(x), rtol=1e-4, atol=1e-4):
                        self.violation("output differs from numpy")
                    self.count("executes")
                model.unload()
            except NrtError as exc:
                if exc.status is not NrtStatus.RESOURCE:        # a full bank may refuse a load: that is correct
                    self.violation("execute failed", status=exc.status.name, message=exc.message)

    def submits(self) -> None:
        try:
            model = self.rt.load(NEFF)
        except NrtError:
            return
        while time.monotonic() < self.deadline:
            futures, expected = [], []
            for _ in range(4):
                x = np.random.default_rng(self.rng.getrandbits(32)).standard_normal((1, 64), np.float32)
                try:
                    future = model.submit(x=x)
                except NrtError as exc:
                    if exc.status is NrtStatus.QUEUE_FULL:
                        self.count("queue_full")
                        continue
                    if exc.status is not NrtStatus.RESOURCE:
                        self.violation("submit failed", status=exc.status.name, message=exc.message)
                    continue
                self.count("submits")
                calls = []
                future.add_done_callback(lambda f, calls=calls: (calls.append(1), self.count("callbacks")))
                futures.append((future, calls))
                expected.append(reference(x))
            for (future, calls), ref in zip(futures, expected):
                try:
                    y = future.result(timeout=30)["y"]
                    if not np.allclose(y, ref, rtol=1e-4, atol=1e-4):
                        self.violation("async output differs from numpy")
                except NrtError as exc:
                    if exc.status is not NrtStatus.RESOURCE:
                        self.violation("async request failed", status=exc.status.name)
                time.sleep(0)
                if len(calls) != 1:
                    self.violation("callback count", calls=len(calls))

    def tensors(self) -> None:
        held = []
        while time.monotonic() < self.deadline:
            if held and (len(held) > 9 or self.rng.random() < 0.3):
                held.pop(self.rng.randrange(len(held))).free()
                continue
            size = self.rng.choice([4096, 1 << 20, 1 << 28, 3 << 30])
            try:
                t = self.rt.tensor(shape=(size,), dtype=np.uint8)
                held.append(t)
                self.count("allocs")
            except NrtError as exc:
                if exc.status is NrtStatus.RESOURCE:
                    self.count("ooms")
                else:
                    self.violation("tensor failed", status=exc.status.name, message=exc.message)
            self.check_memory()
        for t in held:
            t.free()

    def check_memory(self) -> None:
        """This process never uses more of a bank than the ledger reserves for it."""
        memory = lifecycle.peek().memory
        with memory._lock:
            for key, bank in memory._banks.items():
                if bank.used > memory.ledger.reserved[key]:
                    self.violation("memory beyond the ledger reservation", bank=list(key), used=bank.used,
                                   reserved=memory.ledger.reserved[key])


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] not in (b"Z", b"X")
    except OSError:
        return False


def main() -> int:
    violations, witness_dir, seconds, seed = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    try:
        rt = Runtime().start()
    except NrtError as exc:
        return 3 if exc.status is NrtStatus.RESOURCE else 4
    worker = Worker(rt, violations, witness_dir, time.monotonic() + seconds, seed)
    witnesses = worker.claim_cores()
    threads = [threading.Thread(target=f, daemon=True) for f in (worker.executes, worker.executes, worker.submits,
                                                                   worker.tensors, worker.tensors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(worker.counts), flush=True)
    for path in witnesses:
        path.write_text("0")
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
