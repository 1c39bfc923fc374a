"""Integer ids written as runs, the way neuron-ls and the kernel's cpulist do: ``[0,1,2,5]`` → ``"0-2,5"``."""
from __future__ import annotations

from collections.abc import Iterable


def format_ranges(ids: Iterable[int]) -> str:
    """Sorted unique ids as comma-separated runs ``a-b`` (a single id stands alone); ``""`` for none."""
    values = sorted(set(ids))
    runs: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        runs.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(runs)
