"""runtime.placement as a pure function: properties over random core usage, sizes and group layouts."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from neuron_sim.runtime.placement import PlacementError, groups, place
from neuron_sim.status import NrtStatus

usage_st = st.lists(st.integers(0, 5), min_size=1, max_size=16)


@given(usage=usage_st, k=st.integers(1, 4), start=st.integers(-1, 16), count=st.sampled_from([-1, 1, 2, 3, 4, 8, 16]))
def test_copies_fit_the_visible_cores_and_never_overlap(usage, k, start, count):
    try:
        spot = place(usage, k, start, count, None, [])
    except PlacementError as exc:
        assert exc.status == NrtStatus.LOAD_NOT_ENOUGH_NC
        window = k if count < 0 else count
        assert window // k == 0 or (start if start >= 0 else 0) + window > len(usage)
        return
    assert len(spot.starts) == (1 if count < 0 else count // k)          # floor(nc_count / cores_per_model)
    assert all(0 <= s and s + k <= len(usage) for s in spot.starts)
    assert all(b - a == k for a, b in zip(spot.starts, spot.starts[1:]))  # side by side, no overlap
    if start >= 0:
        assert spot.starts[0] == start                                   # explicit: whatever the usage


@given(usage=usage_st, k=st.integers(1, 4))
def test_automatic_placement_takes_the_least_used_run(usage, k):
    if k > len(usage):
        with pytest.raises(PlacementError):
            place(usage, k, -1, -1, None, [])
        return
    (s,) = place(usage, k, -1, -1, None, []).starts
    best = min(sum(usage[i:i + k]) for i in range(len(usage) - k + 1))
    assert sum(usage[s:s + k]) == best
    assert all(sum(usage[i:i + k]) > best for i in range(s))             # lowest index on ties


@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4), k=st.integers(1, 4),
       group_usage_seed=st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_group_placement_starts_at_a_group_start(sizes, k, group_usage_seed):
    n = sum(sizes)
    group_usage = group_usage_seed[:len(sizes)]
    try:
        spot = place([0] * n, k, -1, -1, sizes, group_usage)
    except PlacementError:
        assert all(g.start + k > n for g in groups(sizes))
        return
    (s,) = spot.starts
    g = groups(sizes)[spot.group]
    assert s == g.start and s + k <= n
    fitting = [i for i, r in enumerate(groups(sizes)) if len(r) >= k]
    if fitting:                                                          # least-used fitting group, lowest index
        assert spot.group == min(fitting, key=lambda i: (group_usage[i], i))
