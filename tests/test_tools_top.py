"""neuron-top in a real pseudo-terminal: the screen is read through a terminal emulator (pyte)."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte")

TESTS = Path(__file__).resolve().parent
ROWS, COLS = 45, 170


def pump(fd, stream, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            stream.feed(data.decode("utf-8", "replace"))
    return True


def wait_for(fd, stream, screen, text, seconds=15.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not pump(fd, stream, 0.2):
            break
        if any(text in line for line in screen.display):
            return True
    return any(text in line for line in screen.display)


def test_neuron_top_shows_the_runtime_and_quits_on_q(tmp_path):
    env = dict(os.environ, NEURON_SIM_INSTANCE_TYPE="trn1.2xlarge", NEURON_RT_NUM_CORES="1", TERM="xterm",
               PYTHONPATH=str(TESTS.parent))
    worker = subprocess.Popen([sys.executable, str(TESTS / "tools_worker.py"), "4"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=dict(env, NEURON_PROCESS_TAG="gamma"))
    pid = fd = None
    try:
        assert worker.stdout.readline()
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(sys.executable, [sys.executable, "-m", "neuron_sim.cli.top", "--refresh", "0.3"], env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        os.kill(pid, 28)                                                   # SIGWINCH after the resize
        screen = pyte.Screen(COLS, ROWS)
        stream = pyte.Stream(screen)
        assert wait_for(fd, stream, screen, "mlp_trn1"), "\n".join(screen.display)
        text = "\n".join(screen.display)
        for part in ("NeuronCore v2 Utilization", "VCPU Utilization", "Memory Usage Summary",
                     "Memory Usage Details", ">all<", "1:gamma", f"gamma (pid {worker.pid})", "trn1.2xlarge"):
            assert part in text, part
        assert "NC0" in text and "NC1" in text
        assert wait_for(fd, stream, screen, "System   user")
        pump(fd, stream, 1.0)                                              # a few refreshes later
        system = next(line for line in screen.display if "System   user" in line).split("Runtime")[0]
        assert "%" in system and "-" not in system                         # host figures at every refresh
        os.write(fd, b"d")
        assert wait_for(fd, stream, screen, ">1:gamma<"), "\n".join(screen.display)
        os.write(fd, b"q")
        end = time.monotonic() + 15
        status = None
        while time.monotonic() < end:
            pump(fd, stream, 0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = None
                break
        assert pid is None, "neuron-top did not quit on q"
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        if fd is not None:
            os.close(fd)
        worker.kill()
        worker.wait(10)


def test_neuron_top_refuses_a_non_terminal():
    proc = subprocess.run([sys.executable, "-m", "neuron_sim.cli.top"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr
