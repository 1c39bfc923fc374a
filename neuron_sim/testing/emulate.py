"""``emulate(...)``: one switch that gives code a private simulated Neuron machine and leaves nothing behind.

On entry: the NEURON_* environment is saved and cleared, a private state directory is made (unless one is
given), the machine's variables are set, and the runtime, log sinks and fault state start afresh. On exit: the
runtime is closed, the reference registry and the environment are restored, and the private directory removed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuron_sim.config.variables import CLOCKS
from neuron_sim.hardware.select import DEFAULT_INSTANCE_TYPE
from neuron_sim.runtime import interface
from neuron_sim.testing.machine import EmulatedMachine

#: variables the runtime reads: cleared on entry so nothing of the caller's environment leaks in
PREFIXES = ("NEURON_RT_", "NEURON_SIM_", "NEURON_LOGICAL_NC_CONFIG", "NEURONCORE_GROUP_SIZES",
            "NEURON_PROCESS_TAG", "NEURON_FAIL_ON_NAN", "NEURON_SCRATCHPAD_PAGE_SIZE")


class emulate(contextlib.ContextDecorator):  # noqa: N801 - used like a function: with emulate(...), @emulate(...)
    """A private simulated machine for a block or a function: ``with emulate("inf2.xlarge") as machine: ...``."""

    def __init__(self, instance_type: str | None = None, env: Mapping[str, Any] | None = None,
                 state_dir: str | os.PathLike | None = None, clock: str = "virtual") -> None:
        if clock not in CLOCKS:
            raise ValueError(f"emulate(clock={clock!r}): expected one of {', '.join(CLOCKS)}")
        self.instance_type = instance_type
        self.extra_env = dict(env or {})
        self.given_state_dir = state_dir
        self.clock = clock
        self._saved: dict[str, str] | None = None

    def _recreate_cm(self) -> "emulate":
        """As a decorator, every call gets its own fresh machine."""
        return emulate(self.instance_type, self.extra_env, self.given_state_dir, self.clock)

    def __enter__(self) -> EmulatedMachine:
        if self._saved is not None:
            raise RuntimeError("emulate(...) is already active; use a new emulate(...) for a nested block")
        self._saved = {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)}
        self._restore_references = interface.save_references()
        self._tmp = None
        if self.given_state_dir is None:
            self._tmp = root = Path(tempfile.mkdtemp(prefix="neuron_sim-emulate-"))
        else:
            root = Path(self.given_state_dir).absolute()
        env = {"NEURON_SIM_STATE_DIR": str(root)}
        if self.instance_type:
            env["NEURON_SIM_INSTANCE_TYPE"] = self.instance_type
        if self.clock != "virtual":
            env["NEURON_SIM_CLOCK"] = self.clock
        env.update({k: str(v) for k, v in self.extra_env.items() if v is not None})
        for name in self._saved:
            del os.environ[name]
        os.environ.update(env)
        interface.reset_process()
        return EmulatedMachine(self.instance_type or env.get("NEURON_SIM_INSTANCE_TYPE", DEFAULT_INSTANCE_TYPE), root, env)

    def __exit__(self, *exc: object) -> None:
        saved, self._saved = self._saved, None
        try:
            self._restore_references()
            for name in [k for k in os.environ if k.startswith(PREFIXES)]:
                del os.environ[name]
            os.environ.update(saved or {})
        finally:
            try:
                interface.reset_process()     # closes the runtime; the log settings are the restored environment's
            finally:
                if self._tmp is not None:
                    shutil.rmtree(self._tmp, ignore_errors=True)
