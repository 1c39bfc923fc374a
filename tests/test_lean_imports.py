"""`neuron-sim ls` (and `-a`) import only what listing needs: never numpy, structlog or the runtime's execute path.

Checked in a fresh interpreter by the modules it ends up holding (sys.modules), not by timing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "structlog", "ml_dtypes", "neuron_sim.runtime.execution", "neuron_sim.runtime.models")

PROBE = """
import contextlib, io, json, sys
from neuron_sim.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": len(out.getvalue()), "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("args", [["ls"], ["ls", "-a"], ["ls", "-j"]])
def test_ls_imports_no_heavy_module(tmp_path, args):
    env = {"PATH": "/usr/bin:/bin", "NEURON_SIM_STATE_DIR": str(tmp_path / "state"),
           "NEURON_SIM_INSTANCE_TYPE": "trn1.32xlarge"}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0 and result["out"] > 0
    loaded = [m for m in result["modules"] if m.split(".")[0] in HEAVY or m in HEAVY]
    assert loaded == []
