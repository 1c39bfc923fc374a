"""The nrtpy singleton as a state machine (hypothesis): configure/reset cycles, tensors made, written, read,
freed, dropped and invalidated in any order, with device memory always matching the live tensors."""
from __future__ import annotations

import gc
import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neuron_sim import nrt
from neuron_sim.nrtpy import NrtpyError, NrtpyTensor, configure, get_nrtpy_singleton, reset
from neuron_sim.runtime import lifecycle

CORE_SETS = [[0, 1], [2, 3], [5], [0, 1, 2, 3]]


class Entry:
    def __init__(self, tensor: NrtpyTensor, data: np.ndarray, generation: int) -> None:
        self.tensor, self.data, self.generation, self.freed = tensor, data, generation, False


class NrtpyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reset()
        self.generation = 0
        self.active = False
        self.visible = 32
        self.base: dict[int, int] = {}
        self.entries: list[Entry] = []

    def teardown(self) -> None:
        self.entries.clear()
        reset()

    def live(self, e: Entry) -> bool:
        return self.active and e.generation == self.generation and not e.freed

    def start(self) -> None:
        if not self.active:
            get_nrtpy_singleton()
            self.active = True
            self.base = {c: nrt.nrt_get_vnc_memory_stats(c)[1].bytes_used for c in range(min(2, self.visible))}

    @rule(cores=st.sampled_from(CORE_SETS + [None]))
    def configure(self, cores):
        try:
            configure(cores)
        except NrtpyError:
            assert self.active
            return
        assert not self.active
        if cores is not None:
            self.visible = len(cores)
            assert os.environ["NEURON_RT_VISIBLE_CORES"] == ",".join(map(str, cores))

    @rule()
    def reset(self):
        reset()
        self.active = False
        self.generation += 1
        self.visible = 32
        assert "NEURON_RT_VISIBLE_CORES" not in os.environ and lifecycle.peek() is None

    @rule(n=st.integers(1, 64), second_core=st.booleans(), seed=st.integers(0, 1000))
    def create(self, n, second_core, seed):
        self.start()
        core = 1 if second_core and self.visible > 1 else 0
        data = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
        t = NrtpyTensor.from_numpy(data, core_id=core)
        assert t.core_id == core and t.shape == (n,)
        self.entries.append(Entry(t, data, self.generation))

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 1000), seed=st.integers(0, 1000))
    def write(self, i, seed):
        e = self.entries[i % len(self.entries)]
        new = np.random.default_rng(seed).integers(-9, 9, e.data.size).astype(np.int32)   # same bytes, other dtype
        try:
            e.tensor.write_from_numpy(new)
        except NrtpyError:
            assert not self.live(e)
            return
        assert self.live(e)
        e.data = new.view(np.float32)

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 1000))
    def read(self, i):
        e = self.entries[i % len(self.entries)]
        try:
            got = e.tensor.numpy()
        except NrtpyError:
            assert not self.live(e)
            return
        assert self.live(e)
        np.testing.assert_array_equal(got.view(np.int32), e.data.view(np.int32))

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 1000))
    def free(self, i):
        e = self.entries[i % len(self.entries)]
        try:
            get_nrtpy_singleton().free_tensor(e.tensor)
        except NrtpyError:
            assert not self.live(e)
            return
        finally:
            self.start()             # get_nrtpy_singleton() starts the runtime
        assert self.live(e)
        e.freed = True

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 1000))
    def drop(self, i):
        self.entries.pop(i % len(self.entries))
        gc.collect()

    @invariant()
    def device_memory_is_the_live_tensors(self):
        if not self.active:
            return
        for core, base in self.base.items():
            live = sum(e.data.nbytes for e in self.entries if self.live(e) and e.tensor.core_id == core)
            assert nrt.nrt_get_vnc_memory_stats(core)[1].bytes_used == base + live


NrtpyMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestNrtpyStateMachine = NrtpyMachine.TestCase
