"""Other real processes on the same simulated machine (the ``neuron_process`` fixture), stopped cleanly."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence


class NeuronProcess:
    """A child process on the machine; closing its stdin asks it to finish (the holder then releases its cores)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(self.argv, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.ready_line: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self) -> str:
        """Block until the child prints its READY line; RuntimeError (with its output) when it fails instead."""
        line = self.popen.stdout.readline().strip()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"process {self.argv} did not get ready: {line or 'no output'}; "
                               f"stderr: {self.stderr.strip() or '-'}")
        self.ready_line = line
        return line

    def stop(self, timeout: float = 30.0) -> int:
        """Close stdin and wait; kill it if it does not finish within ``timeout`` seconds. Returns its exit code."""
        if self.popen.stdout.closed:
            return self.popen.returncode
        if self.popen.returncode is None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.stderr = self.popen.stderr.read()
        for stream in (self.popen.stdout, self.popen.stderr):
            stream.close()
        return self.popen.returncode

    stderr = ""


def holder_argv() -> list[str]:
    """The command of a process that holds NeuronCores until its stdin closes."""
    return [sys.executable, "-m", "neuron_sim.testing.holder"]
