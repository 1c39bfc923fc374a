"""No state grows across load / execute / unload cycles: after a warm-up that fills every bounded buffer
(latency samples, binding caches), 20k more cycles leave the allocated Python blocks and the resident memory flat."""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle

WARM_UP, CYCLES = 5_000, 20_000


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _neff() -> bytes:
    b = NeffBuilder("cycles", target="v2")
    b.output("y", b.input("x", "float32", (4,)) * 2.0)
    return b.build()


@pytest.mark.timeout(600)
def test_twenty_thousand_load_execute_unload_cycles_keep_memory_flat(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    data = _neff()
    x_in = np.arange(4, dtype=np.float32)
    got = np.empty(4, np.float32)
    assert nrt.nrt_init() == nrt.NRT_SUCCESS
    try:
        def cycle() -> None:
            status, model = nrt.nrt_load(data, 0, 1)
            assert status == nrt.NRT_SUCCESS
            _, x = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "x")
            _, y = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "y")
            _, ins = nrt.nrt_allocate_tensor_set()
            _, outs = nrt.nrt_allocate_tensor_set()
            nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
            nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
            nrt.nrt_tensor_write(x, x_in, 0, 16)
            for _ in range(2):
                assert nrt.nrt_execute(model, ins, outs) == nrt.NRT_SUCCESS
            nrt.nrt_tensor_read(y, got, 0, 16)
            nrt.nrt_destroy_tensor_set(ins)
            nrt.nrt_destroy_tensor_set(outs)
            nrt.nrt_tensor_free(x)
            nrt.nrt_tensor_free(y)
            assert nrt.nrt_unload(model) == nrt.NRT_SUCCESS

        def settle() -> None:
            """Drain the latency samples now (the publisher does it every second: up to 4096 pending samples
            would make the block count depend on when it last ran), then collect."""
            lifecycle.peek().publisher.publish()
            gc.collect()

        for _ in range(WARM_UP):
            cycle()
        settle()
        blocks, rss = sys.getallocatedblocks(), _rss_bytes()
        used = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
        for _ in range(CYCLES):
            cycle()
        settle()
        assert got.tolist() == [0.0, 2.0, 4.0, 6.0]
        assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used == used       # device memory: every byte returned
        grown_blocks = sys.getallocatedblocks() - blocks
        grown_rss = _rss_bytes() - rss
        assert grown_blocks < 2_000, f"{grown_blocks} Python blocks more after {CYCLES} cycles"
        assert grown_rss < 8 << 20, f"resident memory grew {grown_rss} bytes over {CYCLES} cycles"
    finally:
        nrt.nrt_close()
