"""The handle table as a state machine: issued, retired and foreign pointers always resolve as documented."""
from __future__ import annotations

import cffi
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from neuron_sim.clib import handles as handles_module
from neuron_sim.clib.handles import HandleTable, UnknownHandle

ffi = cffi.FFI()
KEPT = 3


class HandleMachine(RuleBasedStateMachine):
    issued = Bundle("issued")

    def __init__(self) -> None:
        super().__init__()
        self.table = HandleTable(ffi)
        self.live: dict[int, object] = {}
        self.retired: list[tuple[int, object]] = []        # oldest first

    @rule(target=issued, ctype=st.sampled_from(["void *", "struct nrt_tensor *", "struct nrt_model *"]))
    def issue(self, ctype):
        obj = object()
        ptr = self.table.issue(obj, ctype)
        address = int(ffi.cast("uintptr_t", ptr))
        assert address % 16 == 8 and address not in self.live
        assert self.table.issue(obj) == ptr                  # one handle per object
        self.live[address] = obj
        return address

    @rule(address=issued)
    def retire(self, address):
        self.table.retire(ffi.cast("void *", address))
        if address in self.live:
            self.retired.append((address, self.live.pop(address)))
            del self.retired[:-KEPT]

    @rule(address=issued)
    def lookup_through_another_pointer_type(self, address):
        got = self.table.get(ffi.cast("struct nrt_tensor *", address))
        expected = self.live.get(address) or dict(self.retired).get(address)
        if expected is None:
            assert isinstance(got, UnknownHandle) and got.address == address
        else:
            assert got is expected

    @rule(address=st.integers(min_value=1, max_value=2**64 - 1))
    def foreign_pointer(self, address):
        if address in self.live or address in dict(self.retired):
            return
        got = self.table.get(ffi.cast("void *", address))
        assert isinstance(got, UnknownHandle) and f"{address:#x}" in repr(got)

    @invariant()
    def null_is_none(self):
        assert self.table.get(ffi.NULL) is None


@pytest.fixture(autouse=True)
def few_retired(monkeypatch):
    monkeypatch.setattr(handles_module, "RETIRED_KEPT", KEPT)


HandleMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25)
TestHandleMachine = HandleMachine.TestCase
