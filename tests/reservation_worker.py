"""A real process that reserves NeuronCores, for the reservation tests (and the helpers the tests drive it with).

Run as a script:
  reservation_worker.py reserve --state-dir D --machine SPEC [--visible A-B | --num-cores N]
                                [--hold SECONDS | --hold stdin] [--fork MODE]
  reservation_worker.py storm   --state-dir D --machine SPEC --events FILE --rounds K --seed S
  reservation_worker.py watch   --state-dir D --machine SPEC --out FILE          (samples until stdin closes)
Each prints one JSON object per line on stdout ("reserved", "unavailable", "released", ...).
SPEC is ``NAME:<devices>x<physical cores per device>[:lnc<k>]``, e.g. ``inf1.6xlarge:4x4`` or ``trn2.3xlarge:1x8:lnc2``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import subprocess
import sys
import time
from pathlib import Path

from neuron_sim.hardware.model import GiB, CoreGeneration, Device, HbmBank, LogicalCore, Machine
from neuron_sim.runtime.reservation import CoresUnavailable, list_holders, reserve

WORKER = Path(__file__).resolve()
RUNTIME_VERSION = "2.22.14.0"
_GENERATION = CoreGeneration("v2", "NCv2", "sunda", {"fp32": 1e12}, 1e11, 1e-5, 96 << 20)


def make_machine(spec: str) -> Machine:
    """A Machine from ``NAME:DxC[:lncK]``: D devices of C physical cores, logical core k = C/lnc-sized groups."""
    parts = spec.split(":")
    name, shape = parts[0], parts[1]
    lnc = int(parts[2].removeprefix("lnc")) if len(parts) > 2 else 1
    n_dev, per_dev = (int(x) for x in shape.split("x"))
    devices = tuple(Device(d, per_dev, 32 * GiB, (HbmBank(d, 0, 32 * GiB),), (), f"0000:{d:02x}:00.0", "0-1", 0)
                    for d in range(n_dev))
    cores = tuple(LogicalCore(d * (per_dev // lnc) + k, d, k, tuple(d * per_dev + k * lnc + i for i in range(lnc)), 0)
                  for d in range(n_dev) for k in range(per_dev // lnc))
    return Machine(name, "INF1", "6XL", _GENERATION, devices, lnc, cores)


def _emit(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n"
    os.write(sys.stdout.fileno(), line.encode())      # one write: parent and forked child share the pipe


def _wait_stdin_closed() -> None:
    while os.read(sys.stdin.fileno(), 4096):
        pass


def _hold(how: str) -> None:
    if how == "stdin":
        _wait_stdin_closed()
    else:
        time.sleep(float(how))


def _parse_visible(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    a, _, b = text.partition("-")
    return tuple(range(int(a), int(b or a) + 1))


def _cmd_reserve(args: argparse.Namespace) -> int:
    machine = make_machine(args.machine)
    try:
        res = reserve(Path(args.state_dir), machine, visible=_parse_visible(args.visible), num_cores=args.num_cores,
                      runtime_version=RUNTIME_VERSION)
    except CoresUnavailable as exc:
        _emit("unavailable", status=int(exc.status), message=exc.message, requested=exc.requested,
              available=exc.available, lines=list(exc.lines),
              holders=[{"pid": h.pid, "physical": list(h.physical_cores), "logical": list(h.logical_cores),
                        "command": h.command} for h in exc.holders])
        return 3
    _emit("reserved", logical=list(res.logical_cores), physical=list(res.physical_cores))
    if args.fork:
        return _forked(args.fork, res)
    _hold(args.hold)
    res.release()
    _emit("released")
    return 0


def _forked(mode: str, res: object) -> int:
    """Fork scenarios: who keeps the cores when parent and child share the locks."""
    child = os.fork()
    if child == 0:
        try:
            if mode == "child-releases":
                res.release()  # type: ignore[attr-defined]
                _emit("child-released")
            else:
                _emit("child")
                _wait_stdin_closed()
        finally:
            os._exit(0)
    if mode == "child-holds":
        _emit("parent-exiting", child=child)
        os._exit(0)                      # no release: the kernel closes the parent's descriptors
    if mode == "parent-releases":
        res.release()  # type: ignore[attr-defined]
        _emit("released", child=child)
        _wait_stdin_closed()
        os.waitpid(child, 0)
        return 0
    os.waitpid(child, 0)                 # child-releases
    _emit("child-exited", child=child)
    _wait_stdin_closed()
    res.release()  # type: ignore[attr-defined]
    _emit("released")
    return 0


def _cmd_storm(args: argparse.Namespace) -> int:
    """Reserve and release at random, logging monotonic acquire/release times of the cores actually held."""
    machine = make_machine(args.machine)
    rng = random.Random(args.seed)
    fd = os.open(args.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(kind: str, **fields: object) -> None:
        os.write(fd, (json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\n").encode())

    total = machine.total_cores
    for _ in range(args.rounds):
        if rng.random() < 0.5:
            visible, num = None, rng.randint(1, max(1, total // 4))
        else:
            k = rng.randint(1, max(1, total // 4))
            start = rng.randint(0, total - k)
            visible, num = tuple(range(start, start + k)), 0
        try:
            res = reserve(Path(args.state_dir), machine, visible=visible, num_cores=num,
                          runtime_version=RUNTIME_VERSION)
        except CoresUnavailable:
            log("busy")
            time.sleep(rng.uniform(0.0, 0.004))
            continue
        log("acq", t=time.monotonic_ns(), lnc=machine.lnc, physical=list(res.physical_cores),
            logical=list(res.logical_cores), visible=None if visible is None else list(visible), num=num)
        time.sleep(rng.uniform(0.001, 0.015))
        log("rel", t=time.monotonic_ns(), physical=list(res.physical_cores))
        res.release()
        time.sleep(rng.uniform(0.0, 0.004))
    log("done")
    os.close(fd)
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    """Sample list_holders until stdin closes, writing each snapshot with the monotonic times around it."""
    machine = make_machine(args.machine)
    out = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
    _emit("watching")
    while True:
        t0 = time.monotonic_ns()
        holders = list_holders(Path(args.state_dir), machine)
        t1 = time.monotonic_ns()
        snap = {"t0": t0, "t1": t1, "holders": [{"pid": h.pid, "physical": list(h.physical_cores)} for h in holders]}
        os.write(out, (json.dumps(snap) + "\n").encode())
        if sel.select(timeout=0.002) and not os.read(sys.stdin.fileno(), 4096):
            break
    os.close(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("reserve", "storm", "watch"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
        p.add_argument("--machine", required=True)
        if name == "reserve":
            p.add_argument("--visible")
            p.add_argument("--num-cores", type=int, default=0)
            p.add_argument("--hold", default="stdin")
            p.add_argument("--fork", choices=("child-holds", "parent-releases", "child-releases"))
        elif name == "storm":
            p.add_argument("--events", required=True)
            p.add_argument("--rounds", type=int, default=6)
            p.add_argument("--seed", type=int, default=0)
        else:
            p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return {"reserve": _cmd_reserve, "storm": _cmd_storm, "watch": _cmd_watch}[args.command](args)


# ---- helpers the tests use to drive workers -------------------------------------------------------------------

class WorkerProcess:
    """A running worker: read its JSON events with a timeout, close its stdin to let it go, kill it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._buf = b""

    def event(self, timeout: float = 20.0) -> dict:
        """The next JSON event line; fails with the worker's stderr when none comes in time."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    raise AssertionError(f"worker {self.pid} sent no event in {timeout}s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                    raise AssertionError(f"worker {self.pid} ended without an event; stderr:\n{err}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def let_go(self, timeout: float = 20.0) -> int:
        """Close stdin (ends any 'hold stdin') and wait for exit; the exit code."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=20)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                stream.close()


def machine_args(state_dir: Path, spec: str) -> list[str]:
    return ["--state-dir", str(state_dir), "--machine", spec]


if __name__ == "__main__":
    sys.exit(main())
