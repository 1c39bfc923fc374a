"""The drop-in libnrt.so.1, built once per test session, and real C/C++ programs compiled against it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuron_sim.clib import build, environment

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def libnrt(tmp_path_factory) -> Path:
    """The library's directory; skips only where this machine cannot build it (no compiler, no libpython)."""
    try:
        build.check_toolchain()
    except build.LibnrtBuildError as exc:
        pytest.skip(f"cannot build libnrt.so.1 here: {exc}")
    return build.build(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def programs(libnrt, tmp_path_factory):
    """compile("first_app.c") → path of the program, built once per session with cc (or c++ for .cpp)."""
    out_dir = tmp_path_factory.mktemp("programs")
    built: dict[str, Path] = {}

    def compile_program(source: str, *flags: str) -> Path:
        if source not in built:
            cpp = source.endswith(".cpp")
            compiler = os.environ.get("CXX" if cpp else "CC") or ("c++" if cpp else "cc")
            if shutil.which(compiler) is None:
                pytest.skip(f"no {'C++' if cpp else 'C'} compiler '{compiler}' on PATH")
            exe = out_dir / Path(source).stem
            std = ["-std=c++17"] if cpp else ["-std=c11", "-D_DEFAULT_SOURCE"]
            cmd = [compiler, "-Wall", "-Wextra", *std, f"-I{libnrt / 'include'}", "-o", str(exe),
                   str(HERE / source), f"-L{libnrt}", *flags]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
            built[source] = exe
        return built[source]
    return compile_program


@pytest.fixture
def c_env(libnrt):
    """The environment a program gets from ``neuron-sim run`` (plus this test's state directory)."""
    def make(**extra: str) -> dict[str, str]:
        env = {**os.environ, **environment.settings(libnrt)}
        env.update(extra)
        return env
    return make


def run_program(args, env, timeout=60, **kw) -> subprocess.CompletedProcess:
    """Run a compiled program; it must never crash (no signal) and never print a Python traceback."""
    proc = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode >= 0, f"crashed with signal {-proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


PYTHON = sys.executable
