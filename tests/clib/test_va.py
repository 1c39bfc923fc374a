"""The address nrt_tensor_get_va hands to C is the one buffer of the tensor, even when threads race to create it."""
from __future__ import annotations

import sys
import threading

from neuron_sim.runtime.tensors import Storage


def test_first_touch_from_many_threads_creates_one_buffer():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                  # switch threads as often as possible to provoke the race
    try:
        split = 0
        for _ in range(200):
            storage = Storage(1 << 16, 0)
            barrier = threading.Barrier(4)
            seen: list[int] = []

            def touch() -> None:
                barrier.wait()
                seen.append(storage.buffer().ctypes.data)
            threads = [threading.Thread(target=touch) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            split += len(set(seen)) != 1
        assert split == 0, f"{split} storages handed out more than one buffer"
    finally:
        sys.setswitchinterval(old)
