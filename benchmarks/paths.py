"""Where benchmarks find things from any clone: the repository root, its sample NEFFs and the real compiler NEFFs
(``../shared/realneffs`` relative to the repository root, else ``/work/shared/realneffs``)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEFFS = REPO / "neffs"
REAL_NEFF_DIRS = (REPO.parent / "shared" / "realneffs", Path("/work/shared/realneffs"))

if str(REPO) not in sys.path:                   # run as a script from anywhere: the package comes from this clone
    sys.path.insert(0, str(REPO))


def real_neff(name: str) -> Path | None:
    """The real compiler NEFF ``name`` from the first directory holding it, or None when absent."""
    return next((d / name for d in REAL_NEFF_DIRS if (d / name).is_file()), None)
