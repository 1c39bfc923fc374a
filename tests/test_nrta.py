"""The explicit async API (nrta_*, NRTA 3.0) through the flat face, on the virtual clock."""
from __future__ import annotations

import json
import os
import select
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder

TRN1_PCIE = 31.5e9          # host-device bandwidth of NeuronCore-v2 in the cost model
DMA_LATENCY = 2e-6


def scale_neff(duration=100e-6, name="scale") -> bytes:
    b = NeffBuilder(name, target="v2")
    x = b.input("x", "float32", (256,))
    b.output("y", x * 3.0)
    b.declare(duration_s=duration)
    return b.build()


@pytest.fixture
def runtime(monkeypatch):
    def start(**env):
        monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert nrt.nrt_init() == nrt.NRT_SUCCESS
    yield start
    nrt.nrt_close()


def device_tensor(size=1024, vnc=0, name="t"):
    status, t = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_DEVICE, vnc, size, name)
    assert status == 0
    return t


def model_and_sets(duration=100e-6, vnc=0):
    status, model = nrt.nrt_load(scale_neff(duration), vnc, 1)
    assert status == 0
    x, y = device_tensor(1024, vnc, "x"), device_tensor(1024, vnc, "y")
    ins, outs = nrt.nrt_allocate_tensor_set()[1], nrt.nrt_allocate_tensor_set()[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return model, x, y, ins, outs


class Gate:
    """A status sink that holds its queue's runtime thread until opened: later operations stay pending."""

    def __init__(self):
        self.opened = threading.Event()
        self.status = None

    def __call__(self, status):
        self.status = status
        assert self.opened.wait(30)

    def open(self):
        self.opened.set()


def schedule_write(t, data, queue=0, ret=None):
    ret = ret if ret is not None else nrt.nrta_status_t()
    status, seq = nrt.nrta_tensor_write(t, data, 0, len(data), queue, ret)
    assert status == nrt.NRT_SUCCESS
    return seq, ret


# ---- sequence ids --------------------------------------------------------------------------------------
def test_sequence_ids_hold_the_xu_id_on_top_and_count_from_one_per_queue(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets()
    data = bytes(1024)
    w0 = [schedule_write(x, data, 0)[0] for _ in range(3)]
    w1 = [schedule_write(x, data, 1)[0] for _ in range(2)]
    ex = []
    for _ in range(2):
        ret = nrt.nrta_status_t()
        status, seq = nrt.nrta_execute_schedule(model, ins, outs, 0, ret)
        assert status == 0
        ex.append(seq)
    assert [nrt.NRTA_SEQ_GET_SEQ_NUM(s) for s in w0] == [1, 2, 3]
    assert [nrt.NRTA_SEQ_GET_SEQ_NUM(s) for s in w1] == [1, 2]
    assert [nrt.NRTA_SEQ_GET_SEQ_NUM(s) for s in ex] == [1, 2]
    ids = {nrt.NRTA_SEQ_GET_XU_ID(s[0]) for s in (w0, w1, ex)}
    assert len(ids) == 3 and all(i < 1 << 16 for i in ids)
    assert all(nrt.NRTA_SEQ_GET_XU_ID(s) == nrt.NRTA_SEQ_GET_XU_ID(w0[0]) for s in w0)
    assert all(s >> 48 == nrt.NRTA_SEQ_GET_XU_ID(s) and s & nrt.NRTA_SEQ_NUM_MAX == nrt.NRTA_SEQ_GET_SEQ_NUM(s)
               for s in w0 + w1 + ex)


@settings(max_examples=15)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=25))
def test_sequence_numbers_increase_strictly_per_queue_whatever_the_mix(plan):
    """(core, TENSOR_OP queue) pairs in any order: each queue counts 1, 2, 3, ... and keeps its own xu id."""
    os.environ["NEURON_SIM_INSTANCE_TYPE"] = "trn1.2xlarge"
    assert nrt.nrt_init() == 0
    try:
        tensors = {vnc: device_tensor(64, vnc) for vnc in (0, 1)}
        seen: dict[tuple[int, int], list[int]] = {}
        for vnc, queue in plan:
            seq, _ = schedule_write(tensors[vnc], bytes(64), queue)
            seen.setdefault((vnc, queue), []).append(seq)
        xu_ids = {key: {s >> 48 for s in seqs} for key, seqs in seen.items()}
        assert all(len(v) == 1 for v in xu_ids.values())
        assert len({next(iter(v)) for v in xu_ids.values()}) == len(seen)
        for seqs in seen.values():
            assert [s & nrt.NRTA_SEQ_NUM_MAX for s in seqs] == list(range(1, len(seqs) + 1))
    finally:
        nrt.nrt_close()
        del os.environ["NEURON_SIM_INSTANCE_TYPE"]


# ---- data, status at completion, ordering ----------------------------------------------------------------
def test_write_execute_read_round_trip_with_statuses_written_at_completion(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets()
    data = np.arange(256, dtype=np.float32)
    seq_w, ret_w = schedule_write(x, data.tobytes())
    assert ret_w.wait(30) == nrt.NRT_SUCCESS
    assert nrt.nrta_is_completed(seq_w) == (0, True)
    ret_e = nrt.nrta_status_t()
    assert nrt.nrta_execute_schedule(model, ins, outs, 0, ret_e)[0] == 0
    assert ret_e.wait(30) == 0
    out = np.zeros(256, np.float32)
    ret_r = nrt.nrta_status_t()
    status, seq_r = nrt.nrta_tensor_read(out, y, 0, 1024, 0, ret_r)       # buffer first
    assert status == 0 and ret_r.wait(30) == 0
    np.testing.assert_array_equal(out, data * 3)


def test_status_object_stays_unset_until_the_operation_completes(runtime):
    runtime()
    x = device_tensor()
    gate = Gate()
    schedule_write(x, bytes(1024), 0, gate)                   # holds TENSOR_OP queue 0 at its completion
    seq, ret = schedule_write(x, b"\x01" * 1024, 0)
    assert ret.value is None and not ret.done
    assert nrt.nrta_is_completed(seq) == (0, False)
    gate.open()
    assert ret.wait(30) == nrt.NRT_SUCCESS and ret.done
    assert nrt.nrta_is_completed(seq) == (0, True)
    assert gate.status == nrt.NRT_SUCCESS


def test_one_queue_completes_in_order(runtime):
    runtime()
    x = device_tensor(4096)
    order = []
    lock = threading.Lock()

    def sink(i):
        def write(status):
            with lock:
                order.append((i, status))
        return write
    sizes = [4096, 16, 2048, 8, 1024, 4096, 32, 512]          # small ones would finish first if not in order
    seqs = []
    for i, n in enumerate(sizes):
        status, seq = nrt.nrta_tensor_write(x, bytes(n), 0, n, 1, sink(i))
        assert status == 0
        seqs.append(seq)
    last = nrt.nrta_status_t()
    nrt.nrta_tensor_write(x, bytes(4), 0, 4, 1, last)
    assert last.wait(30) == 0
    assert order == [(i, 0) for i in range(len(sizes))]
    status, seq = nrt.nrta_get_sequence(0, nrt.NRTA_XU_TENSOR_OP, 1)
    assert status == 0 and seq & nrt.NRTA_SEQ_NUM_MAX == len(sizes) + 1


def test_threads_scheduling_on_one_queue_complete_in_sequence_order(runtime):
    runtime()
    x = device_tensor(64)
    order = iter(range(10**6))
    lock = threading.Lock()
    records = []                                       # [seq, completion index] per operation

    def sink_for(record):
        def write(status):
            with lock:
                record[1] = next(order)
        return write

    def worker():
        for _ in range(15):
            record = [None, None]
            status, record[0] = nrt.nrta_tensor_write(x, bytes(64), 0, 64, 0, sink_for(record))
            assert status == 0
            with lock:
                records.append(record)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = nrt.nrta_status_t()
    nrt.nrta_tensor_write(x, bytes(64), 0, 64, 0, last)
    assert last.wait(30) == 0
    by_seq = sorted(records)
    assert [r[0] & nrt.NRTA_SEQ_NUM_MAX for r in by_seq] == list(range(1, 61))
    assert [r[1] for r in by_seq] == sorted(r[1] for r in by_seq)      # completion order = sequence order


def test_get_sequence_is_number_zero_before_any_completion(runtime):
    runtime()
    status, seq = nrt.nrta_get_sequence(0, nrt.NRTA_XU_COLLECTIVES, 2)
    assert status == 0 and seq & nrt.NRTA_SEQ_NUM_MAX == 0
    assert nrt.nrta_is_completed(seq) == (0, True)
    assert nrt.nrta_get_sequence(0, nrt.NRTA_XU_COLLECTIVES, 3)[0] == nrt.NRT_INVALID   # 3 queues: 0-2
    assert nrt.nrta_get_sequence(0, 3, 0)[0] == nrt.NRT_INVALID
    assert nrt.nrta_get_sequence(99, 0, 0)[0] == nrt.NRT_INVALID


# ---- simulated time ---------------------------------------------------------------------------------------
def test_tensor_write_overlaps_execute_on_the_virtual_clock(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets(duration=100e-6)
    nxt = device_tensor(1 << 20, 0, "next")
    ret_e = nrt.nrta_status_t()
    assert nrt.nrta_execute_schedule(model, ins, outs, 0, ret_e)[0] == 0
    seq_w, ret_w = schedule_write(nxt, bytes(1 << 20), 0)
    _, ret_w2 = schedule_write(nxt, bytes(1 << 20), 0)        # the same queue: in order, after the first
    _, ret_w3 = schedule_write(nxt, bytes(1 << 20), 1)        # the other queue: its own timeline
    assert [r.wait(30) for r in (ret_e, ret_w, ret_w2, ret_w3)] == [0, 0, 0, 0]
    transfer = DMA_LATENCY + (1 << 20) / TRN1_PCIE
    assert ret_e.start == 0.0 and ret_e.end == pytest.approx(100e-6)
    assert ret_w.start == 0.0 and ret_w.end == pytest.approx(transfer)      # not after the execute: overlapped
    assert ret_w2.start == pytest.approx(transfer) and ret_w2.end == pytest.approx(2 * transfer)
    assert ret_w3.start == 0.0


def test_observing_a_completion_moves_the_host_to_its_end(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets(duration=250e-6)
    ret1 = nrt.nrta_status_t()
    seq1 = nrt.nrta_execute_schedule(model, ins, outs, 0, ret1)[1]
    ret2 = nrt.nrta_status_t()
    nrt.nrta_execute_schedule(model, ins, outs, 0, ret2)
    assert ret2.start == pytest.approx(250e-6)          # queued behind the first on the COMPUTE queue
    while nrt.nrta_is_completed(seq1) != (0, True):
        pass
    seq_w, ret_w = schedule_write(x, bytes(1024))       # the host waited until 250 us: the write starts there
    ret_w.wait(30)
    assert ret_w.start == pytest.approx(250e-6)


def test_queue_full_after_depth_operations_in_flight(runtime, capsys):
    runtime()
    x = device_tensor(64)
    rets = [schedule_write(x, bytes(64), 0)[1] for _ in range(64)]
    status, seq = nrt.nrta_tensor_write(x, bytes(64), 0, 64, 0, nrt.nrta_status_t())
    assert status == nrt.NRT_QUEUE_FULL and seq is None
    assert "TENSOR_OP queue 0 is full: 64 operations in flight" in capsys.readouterr().err
    assert schedule_write(x, bytes(64), 1)[0]            # the other queue is not full
    assert rets[0].wait(30) == 0                         # the host waited for the oldest: one slot frees
    seq, ret = schedule_write(x, bytes(64), 0)
    assert seq & nrt.NRTA_SEQ_NUM_MAX == 65
    assert nrt.nrta_tensor_write(x, bytes(64), 0, 64, 0, nrt.nrta_status_t())[0] == nrt.NRT_QUEUE_FULL


# ---- eventfds ---------------------------------------------------------------------------------------------
def test_seq_eventfd_becomes_readable_with_select_and_poll(runtime):
    runtime()
    x = device_tensor()
    gate = Gate()
    schedule_write(x, bytes(1024), 0, gate)
    seq, ret = schedule_write(x, bytes(1024), 0)
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        assert nrt.nrta_event_register_seq_id_completion(seq, fd) == 0
        assert select.select([fd], [], [], 0)[0] == []             # pending: not readable
        gate.open()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(30_000) == [(fd, select.POLLIN)]
        assert os.eventfd_read(fd) == 1 and ret.value == 0
        # registering an id that already completed signals at once
        assert nrt.nrta_event_register_seq_id_completion(seq, fd) == 0
        assert select.select([fd], [], [], 30)[0] == [fd] and os.eventfd_read(fd) == 1
    finally:
        os.close(fd)


def test_xu_eventfd_counts_every_completion_of_its_queue(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets()
    fd = os.eventfd(0)
    try:
        assert nrt.nrta_event_register_xu_completion(0, nrt.NRTA_XU_COMPUTE, 0, fd) == 0
        rets = []
        for _ in range(5):
            rets.append(nrt.nrta_status_t())
            assert nrt.nrta_execute_schedule(model, ins, outs, 0, rets[-1])[0] == 0
        schedule_write(x, bytes(1024))[1].wait(30)                 # another XU: not counted
        assert all(r.wait(30) == 0 for r in rets)
        total = 0
        while total < 5:
            assert select.select([fd], [], [], 30)[0] == [fd]
            total += os.eventfd_read(fd)
        assert total == 5
        assert nrt.nrta_event_register_xu_completion(0, nrt.NRTA_XU_COMPUTE, 0, -1) == 0     # unregister
        ret = nrt.nrta_status_t()
        nrt.nrta_execute_schedule(model, ins, outs, 0, ret)
        ret.wait(30)
        assert select.select([fd], [], [], 0.05)[0] == []
    finally:
        os.close(fd)


def test_a_descriptor_that_is_not_an_eventfd_is_refused(runtime, capsys):
    runtime()
    seq, ret = schedule_write(device_tensor(), bytes(1024))
    r, w = os.pipe()
    try:
        assert nrt.nrta_event_register_seq_id_completion(seq, r) == nrt.NRT_INVALID
        assert "is not an eventfd" in capsys.readouterr().err
        assert nrt.nrta_event_register_xu_completion(0, 0, 0, 10_000) == nrt.NRT_INVALID
        assert nrt.nrta_event_register_seq_id_completion(seq, "3") == nrt.NRT_INVALID
    finally:
        os.close(r), os.close(w)


# ---- bad calls and hazards ----------------------------------------------------------------------------------
def test_invalid_sequence_ids_are_nrt_invalid(runtime, capsys):
    runtime()
    seq, ret = schedule_write(device_tensor(), bytes(1024))
    for bad in (seq + 1, (0x7FF << 48) | 1, (31 << 48) | 1, -1, 1 << 64, True, "1", None):
        assert nrt.nrta_is_completed(bad) == (nrt.NRT_INVALID, None), bad
    assert "Invalid sequence id" in capsys.readouterr().err


def test_preparation_failures_return_a_status_and_schedule_nothing(runtime, capsys):
    runtime()
    model, x, y, ins, outs = model_and_sets()
    host = nrt.nrt_tensor_allocate(nrt.NRT_TENSOR_PLACEMENT_VIRTUAL, 0, 1024, "h")[1]
    other_core = device_tensor(1024, 1, "z")
    ret = nrt.nrta_status_t()
    cases = [
        nrt.nrta_tensor_write(host, bytes(1024), 0, 1024, 0, ret),               # not a device tensor
        nrt.nrta_tensor_write(x, bytes(1024), 0, 1024, 2, ret),                  # TENSOR_OP has queues 0-1
        nrt.nrta_tensor_write(x, bytes(10), 0, 1024, 0, ret),                    # short buffer
        nrt.nrta_tensor_write(x, bytes(1024), 512, 1024, 0, ret),                # out of bounds
        nrt.nrta_tensor_write(x, bytes(1024), 0, 1024, 0, 0),                    # not a status
        nrt.nrta_tensor_write(x, bytes(1024), 0, 1024, 0, nrt.nrta_status_t),    # the class, not an instance
        nrt.nrta_tensor_read(b"immutable" * 200, x, 0, 1024, 0, ret),            # read-only buffer
        nrt.nrta_tensor_copy(x, 0, other_core, 0, 1024, 0, ret),                 # across cores
        nrt.nrta_execute_schedule(model, ins, outs, 1, ret),                     # COMPUTE has queue 0
        nrt.nrta_execute_schedule(model, outs, outs, 0, ret),                    # input missing
    ]
    assert [c[0] for c in cases] == [nrt.NRT_INVALID] * len(cases)
    assert ret.value is None
    assert schedule_write(x, bytes(1024))[0] & nrt.NRTA_SEQ_NUM_MAX == 1       # nothing was issued before
    err = capsys.readouterr().err
    for text in ("is in host memory", "valid queues are 0-1", "smaller than the 1024 bytes", "Out of bounds",
                 "Invalid status 0", "read-only", "same NeuronCore", "valid queues are 0-0", "is missing"):
        assert text in err, text


def test_freed_tensor_in_a_pending_operation_fails_at_completion(runtime, capsys):
    runtime()
    model, x, y, ins, outs = model_and_sets()
    t = device_tensor(1024, 0, "doomed")
    gate = Gate()
    schedule_write(x, bytes(1024), 0, gate)
    seq, ret = schedule_write(t, bytes(1024), 0)
    nrt.nrt_tensor_free(t)                                  # does not wait for the pending write
    gate.open()
    assert ret.wait(30) == nrt.NRT_INVALID_HANDLE
    assert "tensor 'doomed' was freed before the operation completed" in capsys.readouterr().err
    # the queue carries on
    assert schedule_write(x, bytes(1024), 0)[1].wait(30) == nrt.NRT_SUCCESS


def test_unordered_write_and_execute_on_the_same_tensor_warn_of_a_hazard(runtime, capsys):
    runtime(NEURON_RT_LOG_LEVEL="WARN")
    model, x, y, ins, outs = model_and_sets()
    seq_w, ret_w = schedule_write(x, bytes(1024))
    ret_e = nrt.nrta_status_t()
    seq_e = nrt.nrta_execute_schedule(model, ins, outs, 0, ret_e)[1]
    ret_w.wait(30), ret_e.wait(30)
    err = capsys.readouterr().err
    assert f"Hazard: nrta_execute_schedule {seq_e:#x}" in err and f"wait for {seq_w:#x} to complete first" in err
    # ordered by the caller (waited for the write): no warning
    seq_w, ret_w = schedule_write(x, bytes(1024))
    ret_w.wait(30)
    ret_e = nrt.nrta_status_t()
    nrt.nrta_execute_schedule(model, ins, outs, 0, ret_e)
    ret_e.wait(30)
    assert "Hazard" not in capsys.readouterr().err


# ---- coexistence, faults, close ------------------------------------------------------------------------------
def test_legacy_async_queue_and_nrta_share_one_process_and_core(runtime):
    runtime(NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS="3")
    model, x, y, ins, outs = model_and_sets(duration=100e-6)
    calls = []
    done = threading.Event()

    def callback(params, model_id, vnc, job_id, status):
        calls.append(status)
        done.set()
    assert nrt.nrt_register_async_exec_callback(callback, None) == 0
    nrt.nrt_tensor_write(x, np.ones(256, np.float32), 0, 1024)
    assert nrt.nrt_execute(model, ins, outs) == 0                   # legacy: enqueued
    ret = nrt.nrta_status_t()
    assert nrt.nrta_execute_schedule(model, ins, outs, 0, ret)[0] == 0
    assert ret.wait(30) == 0 and done.wait(30) and calls == [0]
    assert ret.start == pytest.approx(100e-6)                       # one COMPUTE timeline per core: after it
    assert nrt.nrt_async_drain_queued_execs(0) == 0
    out = np.zeros(256, np.float32)
    nrt.nrt_tensor_read(y, out, 0, 1024)
    np.testing.assert_array_equal(out, np.full(256, 3.0, np.float32))


def test_faults_reach_nrta_operations_through_their_completion_status(runtime, capsys):
    plan = [{"call": "execute", "status": "NRT_EXEC_HW_ERR_NC_UE"},
            {"call": "tensor_op", "status": "NRT_EXEC_HW_ERR_DMA_ABORT", "nth": 2}]
    runtime(NEURON_SIM_FAULTS=json.dumps(plan))
    model, x, y, ins, outs = model_and_sets()
    ret_e = nrt.nrta_status_t()
    assert nrt.nrta_execute_schedule(model, ins, outs, 0, ret_e)[0] == nrt.NRT_SUCCESS   # preparation is fine
    assert ret_e.wait(30) == nrt.NRT_EXEC_HW_ERR_NC_UE
    rets = [schedule_write(x, bytes(1024))[1] for _ in range(3)]
    assert [r.wait(30) for r in rets] == [0, nrt.NRT_EXEC_HW_ERR_DMA_ABORT, 0]
    err = capsys.readouterr().err
    assert "DMA abort on Neuron Device 0 NC 0 (TENSOR_OP queue)" in err and "injected fault #2" in err


def test_close_completes_pending_operations_and_then_calls_are_closed(runtime):
    runtime()
    model, x, y, ins, outs = model_and_sets(duration=1e-3)
    rets = [nrt.nrta_status_t() for _ in range(4)]
    for r in rets:
        assert nrt.nrta_execute_schedule(model, ins, outs, 0, r)[0] == 0
    nrt.nrt_close()
    assert [r.value for r in rets] == [0] * 4
    assert nrt.nrta_is_completed(1)[0] == nrt.NRT_CLOSED


def test_model_submit_without_the_legacy_queue_runs_on_the_compute_unit(monkeypatch):
    import neuron_sim
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as rt:
        model = rt.load(scale_neff(duration=100e-6))
        xs = [np.full(256, float(i), np.float32) for i in range(70)]
        futures = [model.submit(x=x, block=True) for x in xs]          # 70 > 64 in flight: block waits for room
        for i, f in enumerate(futures):
            np.testing.assert_array_equal(f.result(timeout=30)["y"], np.full(256, 3.0 * i, np.float32))
        assert futures[-1].end == pytest.approx(70 * 100e-6)            # one after another on the core
        for _ in range(64):
            model.submit(x=xs[0])
        with pytest.raises(neuron_sim.NrtError) as exc:
            model.submit(x=xs[0])
        assert exc.value.status == nrt.NRT_QUEUE_FULL
