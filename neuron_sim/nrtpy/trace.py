"""``save_trace``: one JSON document per successful execution, written where nrtpy writes its ``.ntff``.

No profiler output format of the Neuron tools is emulated yet, so the file is neuron_sim's own (see
docs/nrtpy.md): {"format": "neuron_sim.nrtpy.trace", "version": 1, "model", "neff", "core_id",
"device_time_ms", "host_time_ms", "inputs"/"outputs": {name: {"shape", "dtype", "size"}}}. The file is written
to a temporary name beside it and renamed, so a failed write never leaves a partial trace.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT = "neuron_sim.nrtpy.trace"
VERSION = 1


def trace_path(neff_path: Path, ntff_name: str | os.PathLike | None) -> Path:
    """``ntff_name`` when given, else the NEFF's path with an ``.ntff`` suffix."""
    return Path(ntff_name) if ntff_name is not None else neff_path.with_suffix(".ntff")


def write_trace(path: Path, *, model: str, neff: Path, core_id: int, device_time_s: float, host_time_s: float,
                inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Path:
    """Write the trace of one execution; ``inputs``/``outputs`` map names to NrtpyTensors."""
    doc = {
        "format": FORMAT, "version": VERSION, "model": model, "neff": str(neff), "core_id": core_id,
        "device_time_ms": device_time_s * 1e3, "host_time_ms": host_time_s * 1e3,
        "inputs": {n: _describe(t) for n, t in inputs.items()},
        "outputs": {n: _describe(t) for n, t in outputs.items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _describe(t: Any) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": str(t.dtype), "size": t.tensor_ref.size}
