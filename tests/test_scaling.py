"""Work that must not grow faster than the state it walks: nrt_close is O(n) in loaded models (shared weights),
nrt_get_vnc_memory_stats is O(1) in allocated tensors. Measured by counting executed Python lines (sys.settrace),
never by timing: the count for 2n models is about twice the count for n, and the same for 50 or 2000 tensors."""
from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from neuron_sim import nrt
from tests.conftest import NEFFS


def lines_run(fn: Callable[[], object]) -> int:
    """How many Python lines ``fn()`` executes in this thread (every frame it enters, loops counted per pass)."""
    count = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.fixture
def trn1(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "1")


def _close_lines_after_loads(n: int, data: bytes) -> int:
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    for _ in range(n):
        status, _model = nrt.nrt_load(data, 0, 1)
        assert status == nrt.NRT_SUCCESS
    status, info = nrt.nrt_get_vnc_memory_stats(0)
    assert status == nrt.NRT_SUCCESS and info.bytes_used > 0
    lines = lines_run(nrt.nrt_close)
    return lines


def test_close_after_many_shared_weight_loads_is_linear(trn1):
    data = (NEFFS / "mlp_trn1.neff").read_bytes()
    small, double = _close_lines_after_loads(100, data), _close_lines_after_loads(200, data)
    # quadratic work (every unload revisiting every sharer) would make the ratio approach 4
    assert double < 2.3 * small, (small, double)


def test_close_frees_every_shared_copy(trn1):
    data = (NEFFS / "mlp_trn1.neff").read_bytes()
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    status, before = nrt.nrt_get_vnc_memory_stats(0)
    models = [nrt.nrt_load(data, 0, 1)[1] for _ in range(20)]
    status, loaded = nrt.nrt_get_vnc_memory_stats(0)
    for m in models[:19]:
        assert nrt.nrt_unload(m) == nrt.NRT_SUCCESS
    status, one = nrt.nrt_get_vnc_memory_stats(0)
    assert nrt.nrt_unload(models[19]) == nrt.NRT_SUCCESS
    status, after = nrt.nrt_get_vnc_memory_stats(0)
    assert before.bytes_used < one.bytes_used < loaded.bytes_used
    assert after.bytes_used == before.bytes_used


def _stats_lines_with_tensors(n: int) -> tuple[int, int]:
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_NO_FW, "", "") == nrt.NRT_SUCCESS
    try:
        status, base = nrt.nrt_get_vnc_memory_stats(0)
        tensors = [nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 4096, f"t{i}")[1] for i in range(n)]
        result = []
        lines = lines_run(lambda: result.append(nrt.nrt_get_vnc_memory_stats(0)))
        status, info = result[0]
        assert status == nrt.NRT_SUCCESS
        assert info.bytes_used == base.bytes_used + 4096 * n
        for t in tensors:
            nrt.nrt_tensor_free(t)
        status, freed = nrt.nrt_get_vnc_memory_stats(0)
        assert freed.bytes_used == base.bytes_used
        return lines, info.bytes_used
    finally:
        nrt.nrt_close()


def test_memory_stats_do_not_walk_the_tensors(trn1):
    few, _ = _stats_lines_with_tensors(50)
    many, _ = _stats_lines_with_tensors(2000)
    assert many == few
