"""The variables that run a program on the simulated machine through the drop-in library.

``neuron-sim run`` applies them and executes the program; ``neuron-sim env`` prints them. The library
directory goes first on ``LD_LIBRARY_PATH`` (loading), ``LIBRARY_PATH`` (``cc ... -lnrt``) and ``CPATH``
(``#include <nrt/nrt.h>``), so an unmodified program builds and runs without extra flags. The look-alike
tools (``neuron-ls``, ``neuron-monitor``, ``neuron-top``) go first on ``PATH``: small wrappers in the library's
``bin/`` that run them with the Python that built the library, so they work without an activated environment.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from neuron_sim.hardware.select import INSTANCE_TYPE_VAR, select_machine

STATE_DIR_VAR = "NEURON_SIM_STATE_DIR"


def _prepend(entry: str, current: str | None) -> str:
    rest = [p for p in (current or "").split(os.pathsep) if p and p != entry]
    return os.pathsep.join([entry, *rest])


TOOLS = {"neuron-ls": "neuron_sim.cli.ls", "neuron-monitor": "neuron_sim.cli.monitor",
         "neuron-top": "neuron_sim.cli.top"}


def _wrapper(module: str) -> str:
    return ("#!/bin/sh\n"
            f"exec {shlex.quote(sys.executable)} -c 'import sys; from {module} import main; "
            "sys.exit(main(sys.argv[1:]))' \"$@\"\n")


def tools_dir(library: Path) -> Path:
    """``<library>/bin`` holding the look-alike tools' wrappers, (re)written atomically where missing or stale."""
    directory = library / "bin"
    directory.mkdir(mode=0o755, exist_ok=True)
    for name, module in TOOLS.items():
        text, target = _wrapper(module), directory / name
        if target.is_file() and not target.is_symlink() and target.read_text() == text:
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=directory)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return directory


def settings(library: Path, instance_type: str | None = None, state_dir: str | None = None,
             environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (an unknown instance type raises a SelectionError naming the choices)."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    if instance_type:
        select_machine(instance_type)
        out[INSTANCE_TYPE_VAR] = instance_type
    if state_dir:
        out[STATE_DIR_VAR] = str(Path(state_dir).absolute())
    out["PATH"] = _prepend(str(tools_dir(library)), env.get("PATH"))
    out["LD_LIBRARY_PATH"] = _prepend(str(library), env.get("LD_LIBRARY_PATH"))
    out["LIBRARY_PATH"] = _prepend(str(library), env.get("LIBRARY_PATH"))
    out["CPATH"] = _prepend(str(library / "include"), env.get("CPATH"))
    return out


def render(variables: Mapping[str, str], shell: bool) -> str:
    """``NAME=value`` lines, or ``export NAME='value'`` lines for ``eval`` with ``shell``."""
    if shell:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())
    return "".join(f"{k}={v}\n" for k, v in variables.items())
