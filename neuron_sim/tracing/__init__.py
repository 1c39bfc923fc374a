"""Trace and profile files: neuron_sim's profile format, the Perfetto trace-event writer and merger."""
from __future__ import annotations

import json
from typing import Any

from neuron_sim.regular_files import read_regular

MAX_FILE_BYTES = 1 << 30       # a trace or profile larger than this is refused, not read into memory


def read_json_file(path: str, kind: str) -> Any:
    """The JSON document of a trace or profile file (regular files only: a FIFO would block); ValueError naming
    the problem, with ``kind`` saying what the file should have been."""
    try:
        data = read_regular(path, kind, MAX_FILE_BYTES)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is not {kind} (not JSON: {exc})") from None
