"""Where nrt_load puts a model: explicit cores, NeuronCore groups (NEURONCORE_GROUP_SIZES) or the least-used cores.

The rules reproduce the placement guide (spec seed 002) example by example (docs/placement.md):

- ``start_nc >= 0``: the model's first copy starts there, whatever was loaded before (order of loads does not
  matter); ``nc_count`` cores from there are used.
- ``nc_count > 0`` replicates: ``floor(nc_count / cores_per_model)`` copies side by side (0 copies is
  NRT_LOAD_NOT_ENOUGH_NC). ``nc_count = -1`` is one copy.
- NEURONCORE_GROUP_SIZES with automatic placement: groups are contiguous runs of visible cores in the order
  given. A model goes greedily, in load order, to the start of the group holding the fewest models among the
  groups it fits in (lowest index on ties); a model no group fits is placed *across* groups at the start of the
  least-used group from which it fits in the process's cores (warned). Never between group starts.
- Otherwise: the least-used run of contiguous cores, lowest index on ties.

State owned here: none (it reads ``CoreState.models`` and the ``group`` of loaded models).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuron_sim import nrtlog
from neuron_sim.status import NrtStatus

#: World sizes whose jobs must start at a core id that is a multiple of the size (torch-neuronx guide, seed 003).
ALIGNED_WORLD_SIZES = (2, 8, 32)


@dataclass(frozen=True)
class Spot:
    """The first core of every copy of a model, and the NeuronCore group it was put in (None: no group)."""

    starts: tuple[int, ...]
    group: int | None = None


class PlacementError(Exception):
    """A placement that cannot be made: the status, the TDRV line's missing core and the reason."""

    def __init__(self, status: NrtStatus, missing: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.missing, self.reason = status, missing, reason


def groups(sizes: Sequence[int] | None) -> list[range]:
    """The visible cores of each NeuronCore group, laid contiguously from core 0."""
    out, start = [], 0
    for size in sizes or ():
        out.append(range(start, start + size))
        start += size
    return out


def place(usage: Sequence[int], k: int, start: int, nc_count: int, group_sizes: Sequence[int] | None,
          group_usage: Sequence[int]) -> Spot:
    """Where a ``k``-core model goes among ``len(usage)`` visible cores (``usage``: models per core)."""
    n = len(usage)
    window = k if nc_count < 0 else nc_count
    copies = window // k
    if copies == 0:
        raise PlacementError(NrtStatus.LOAD_NOT_ENOUGH_NC, max(start, 0) + k - 1,
                             f"nc_count {nc_count} is smaller than the {k} NeuronCore(s) one copy needs")
    if start >= 0:
        if start + window > n:
            raise PlacementError(NrtStatus.LOAD_NOT_ENOUGH_NC, start + window - 1 if start < n else start,
                                 f"{window} NeuronCore(s) starting at NC {start}")
        first = start
        group = None
    elif group_sizes and copies == 1:
        first, group = _group_start(usage, k, group_sizes, group_usage)
    else:
        if window > n:
            raise PlacementError(NrtStatus.LOAD_NOT_ENOUGH_NC, n, f"{window} NeuronCore(s) starting at an automatic placement")
        first = min(range(n - window + 1), key=lambda s: (sum(usage[s:s + window]), s))
        group = None
    return Spot(tuple(first + i * k for i in range(copies)), group)


def _group_start(usage: Sequence[int], k: int, group_sizes: Sequence[int],
                 group_usage: Sequence[int]) -> tuple[int, int | None]:
    """Greedy group placement: the least-used group the model fits in, else across groups (warned)."""
    gs = groups(group_sizes)
    fitting = [i for i, g in enumerate(gs) if len(g) >= k]
    if fitting:
        best = min(fitting, key=lambda i: (group_usage[i], i))
        return gs[best].start, best
    spanning = [i for i, g in enumerate(gs) if g.start + k <= len(usage)]
    if not spanning:
        raise PlacementError(NrtStatus.LOAD_NOT_ENOUGH_NC, len(usage),
                             f"{k} NeuronCore(s) in NeuronCore groups {','.join(map(str, group_sizes))}")
    best = min(spanning, key=lambda i: (group_usage[i], i))
    last = gs[best].start + k - 1
    nrtlog.warn("NRT", "nrt_load", f"Model needs {k} NeuronCores and fits in no NeuronCore group of "
                f"NEURONCORE_GROUP_SIZES={','.join(map(str, group_sizes))}: placed across groups on NC "
                f"{gs[best].start}-{last}")
    return gs[best].start, best


def group_reservation(group_sizes: Sequence[int] | None, visible: Sequence[int] | None, num_cores: int,
                      total: int) -> tuple[int, str | None]:
    """NUM_CORES to reserve under NEURONCORE_GROUP_SIZES, and why the combination is refused (None: fine).

    Alone, the groups reserve ``sum(sizes)`` cores. NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES, when set,
    choose the cores; the groups are then laid over them and must fit.
    """
    if not group_sizes:
        return num_cores, None
    need = sum(group_sizes)
    have = len(visible) if visible is not None else (num_cores or total)
    if need > have:
        given = (f"NEURON_RT_VISIBLE_CORES gives {have}" if visible is not None
                 else f"NEURON_RT_NUM_CORES={num_cores} gives {have}" if num_cores else f"the machine has {have}")
        return num_cores, (f"NEURONCORE_GROUP_SIZES={','.join(map(str, group_sizes))} needs {need} NeuronCores but "
                           f"{given}; use group sizes summing to at most {have}")
    if visible is not None or num_cores:
        return num_cores, None
    return need, None


def warn_misaligned(first_core: int, count: int) -> bool:
    """Warn when an N-core reservation (N in 2, 8, 32) does not start at a multiple of N (seed 003's advice)."""
    if count not in ALIGNED_WORLD_SIZES or first_core % count == 0:
        return False
    nrtlog.warn("NRT", "nrt_allocate_neuron_cores",
                f"{count} NeuronCores reserved starting at NC {first_core}, which is not a multiple of {count}: "
                f"multi-core jobs of {count} NeuronCores perform best starting at a NeuronCore id that is a "
                f"multiple of {count} (e.g. NEURON_RT_VISIBLE_CORES={first_core - first_core % count}-"
                f"{first_core - first_core % count + count - 1})")
    return True
