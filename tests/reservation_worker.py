"""A real process that reserves NeuronCores, for the reservation tests (and the helpers the tests drive it with).

Run as a script:
  reservation_worker.py reserve --state-dir D --machine SPEC [--visible A-B | --num-cores N]
                                [--hold SECONDS | --hold stdin] [--fork MODE]
  reservation_worker.py storm   --state-dir D --machine SPEC --events FILE --rounds K --seed S
  reservation_worker.py watch   --state-dir D --machine SPEC --out FILE          (samples until stdin closes)
  reservation_worker.py fleet   --state-dir D --machines SPEC[,SPEC] --out-dir O [--count 24 --kills 6 ...]
Each prints one JSON object per line on stdout ("reserved", "unavailable", "released", ...).
SPEC is ``NAME:<devices>x<physical cores per device>[:lnc<k>]``, e.g. ``inf1.6xlarge:4x4`` or ``trn2.3xlarge:1x8:lnc2``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import signal
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
    return _storm(Path(args.state_dir), make_machine(args.machine), args.events, args.rounds, args.seed)


def _storm(state_dir: Path, machine: Machine, events: str, rounds: int, seed: int) -> int:
    """Reserve and release at random, logging monotonic acquire/release times of the cores actually held.

    "acq" is stamped after reserve() returned and "rel" before release() is called, so each logged interval lies
    inside the time the cores were really held: two overlapping logged intervals prove a real double hold.
    """
    rng = random.Random(seed)
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(kind: str, **fields: object) -> None:
        os.write(fd, (json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\n").encode())

    total = machine.total_cores
    for _ in range(rounds):
        if rng.random() < 0.5:
            visible, num = None, rng.randint(1, max(1, total // 4))
        else:
            k = rng.randint(1, max(1, total // 4))
            start = rng.randint(0, total - k)
            visible, num = tuple(range(start, start + k)), 0
        try:
            res = reserve(state_dir, machine, visible=visible, num_cores=num, runtime_version=RUNTIME_VERSION)
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
    _emit("watching")
    return _watch(Path(args.state_dir), make_machine(args.machine), args.out, sys.stdin.fileno())


def _watch(state_dir: Path, machine: Machine, out_path: str, stop_fd: int) -> int:
    """Sample list_holders until ``stop_fd`` reaches EOF, writing each snapshot with the monotonic times around it."""
    out = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sel = selectors.DefaultSelector()
    sel.register(stop_fd, selectors.EVENT_READ)
    while True:
        t0 = time.monotonic_ns()
        holders = list_holders(state_dir, machine)
        t1 = time.monotonic_ns()
        snap = {"t0": t0, "t1": t1, "holders": [{"pid": h.pid, "physical": list(h.physical_cores)} for h in holders]}
        os.write(out, (json.dumps(snap) + "\n").encode())
        if sel.select(timeout=0.002) and not os.read(stop_fd, 4096):
            break
    os.close(out)
    return 0


def _sleeper(state_dir: Path, machine: Machine, events: str) -> int:
    """Take one core (retrying while busy), log it and hold it until SIGKILL: a kill that surely lands mid-hold."""
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        try:
            res = reserve(state_dir, machine, visible=None, num_cores=1, runtime_version=RUNTIME_VERSION)
            break
        except CoresUnavailable:
            time.sleep(0.001)
    os.write(fd, (json.dumps({"kind": "acq", "pid": os.getpid(), "t": time.monotonic_ns(), "lnc": machine.lnc,
                              "physical": list(res.physical_cores), "logical": list(res.logical_cores),
                              "visible": None, "num": 1}) + "\n").encode())
    time.sleep(60)
    return 1


def _run_child(body) -> None:  # type: ignore[no-untyped-def]
    """Run ``body`` in a forked child and leave with its code, never returning into the parent's code."""
    code = 1
    try:
        code = body()
    except BaseException:  # noqa: BLE001 - reported on stderr, the exit code says it failed
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def _cmd_fleet(args: argparse.Namespace) -> int:
    """Fork a watcher and ``count`` storm workers after one import, SIGKILL some at random times, reap all.

    Forking from one launcher starts 24 real processes in milliseconds; the launcher is their parent, so a
    victim's pid cannot be reused before the kill (it stays a zombie until reaped here).
    """
    specs = args.machines.split(",")
    state, out = Path(args.state_dir), Path(args.out_dir)
    rng = random.Random(args.seed)
    stop_r, stop_w = os.pipe()
    watcher = os.fork()
    if watcher == 0:
        os.close(stop_w)
        _run_child(lambda: _watch(state, make_machine(specs[0]), str(out / "watch.jsonl"), stop_r))
    os.close(stop_r)
    machines = [make_machine(s) for s in specs]
    start = time.monotonic()
    pids = []
    for i in range(args.count):
        pid = os.fork()
        if pid == 0:
            os.close(stop_w)
            m = machines[i % len(machines)]
            _run_child(lambda: _storm(state, m, str(out / f"events-{os.getpid()}.jsonl"), args.rounds,
                                      args.seed * 1000 + i))
        pids.append(pid)
    sleepers = []
    for i in range(args.sleepers):
        pid = os.fork()
        if pid == 0:
            os.close(stop_w)
            _run_child(lambda: _sleeper(state, machines[0], str(out / f"events-{os.getpid()}.jsonl")))
        sleepers.append(pid)
    plan = sorted((rng.uniform(0.005, args.kill_window), pid) for pid in rng.sample(pids, args.kills))
    kills = os.open(out / "kills.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def kill(pid: int) -> None:
        t = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        os.write(kills, (json.dumps({"pid": pid, "t": t}) + "\n").encode())

    for at, pid in plan:
        time.sleep(max(0.0, start + at - time.monotonic()))
        kill(pid)
    for pid in sleepers:                     # each sleeper is killed only once it logged its holding
        events, deadline = out / f"events-{pid}.jsonl", time.monotonic() + 20
        while not (events.exists() and b"acq" in events.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.002)
        kill(pid)
    os.close(kills)
    exits = {}
    for pid in pids + sleepers:
        _, status = os.waitpid(pid, 0)
        exits[pid] = os.waitstatus_to_exitcode(status)
    os.close(stop_w)
    _, status = os.waitpid(watcher, 0)
    _emit("fleet-done", exits={str(p): c for p, c in exits.items()}, watcher=os.waitstatus_to_exitcode(status))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("reserve", "storm", "watch", "fleet"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
        if name != "fleet":
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
        elif name == "watch":
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--out-dir", required=True)
            p.add_argument("--machines", required=True, help="comma-separated SPECs; worker i uses SPEC i mod n")
            p.add_argument("--count", type=int, default=24)
            p.add_argument("--rounds", type=int, default=6)
            p.add_argument("--kills", type=int, default=6)
            p.add_argument("--sleepers", type=int, default=0, help="extra workers killed while surely holding")
            p.add_argument("--kill-window", type=float, default=0.15)
            p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return {"reserve": _cmd_reserve, "storm": _cmd_storm, "watch": _cmd_watch, "fleet": _cmd_fleet}[args.command](args)


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
