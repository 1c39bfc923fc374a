"""Legacy implicit async execution: in-flight queue per core, callbacks, back-pressure, output reservations."""
from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import interface
from neuron_sim.testing import pause_core


def scale_neff(factor=3.0, duration=None, output_buffer_bytes=0, name="scale", nan=False) -> bytes:
    b = NeffBuilder(name, target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", (x / x) if nan else x * factor)
    b.declare(duration_s=duration, output_buffer_bytes=output_buffer_bytes)
    return b.build()


@pytest.fixture
def async_rt(monkeypatch):
    def start(depth=3, instance="trn1.2xlarge", **env):
        monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", instance)
        monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", str(depth))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert nrt.nrt_init() == 0
    yield start
    nrt.nrt_close()


class Recorder:
    """A callback that records every call, thread-safely."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)

    def __call__(self, params, model_id, vnc, job_id, status):
        with self.lock:
            self.calls.append((params, model_id, vnc, job_id, status))
            self.done.notify_all()

    def wait_for(self, n, timeout=30):
        with self.lock:
            assert self.done.wait_for(lambda: len(self.calls) >= n, timeout=timeout)


def request(model, vnc, value=1.0):
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    x = nrt.nrt_tensor_allocate(0, vnc, 16, "x")[1]
    y = nrt.nrt_tensor_allocate(0, vnc, 16, "y")[1]
    nrt.nrt_tensor_write(x, np.full(4, value, np.float32), 0, 16)
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return ins, outs, x, y


def read_f32(t, n=4):
    out = np.empty(n, np.float32)
    assert nrt.nrt_tensor_read(t, out, 0, out.nbytes) == 0
    return out


def test_execute_returns_at_once_and_the_callback_reports(async_rt):
    async_rt(3)
    rec = Recorder()
    assert nrt.nrt_register_async_exec_callback(rec, "params!") == 0
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    ins, outs, x, y = request(model, 0, 2.0)
    assert nrt.nrt_execute(model, ins, outs) == 0
    rec.wait_for(1)
    assert rec.calls == [("params!", model.id, 0, 1, 0)]
    assert read_f32(y).tolist() == [6.0] * 4
    assert y.completions == 1


def test_thousands_of_requests_from_many_threads_fire_once_each_in_fifo_order(async_rt):
    async_rt(8, instance="trn1.32xlarge", NEURON_RT_NUM_CORES="4")
    rec = Recorder()
    nrt.nrt_register_async_exec_callback(rec, None)
    models = [nrt.nrt_load(scale_neff(name=f"m{v}"), v, -1)[1] for v in range(4)]
    submitted = defaultdict(list)       # vnc -> job order as submitted
    lock = threading.Lock()
    per_thread = 300

    def submitter(vnc):
        model = models[vnc]
        pool = [request(model, vnc, float(i)) for i in range(8)]
        for i in range(per_thread):
            ins, outs, _, _ = pool[i % 8]
            while True:
                status = nrt.nrt_execute(model, ins, outs)
                if status != nrt.NRT_QUEUE_FULL:
                    break
                nrt.nrt_async_drain_queued_execs(vnc)
            assert status == 0
            with lock:
                submitted[vnc].append(i)

    threads = [threading.Thread(target=submitter, args=(v,)) for v in range(4) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for v in range(4):
        assert nrt.nrt_async_drain_queued_execs(v) == 0
    total = 4 * 2 * per_thread
    assert len(rec.calls) == total
    job_ids = [c[3] for c in rec.calls]
    assert len(set(job_ids)) == total                          # each job reported exactly once
    by_core = defaultdict(list)
    for _, model_id, vnc, job_id, status in rec.calls:
        assert status == 0 and model_id == models[vnc].id
        by_core[vnc].append(job_id)
    for v in range(4):
        assert by_core[v] == sorted(by_core[v])               # FIFO per core
        assert len(by_core[v]) == 2 * per_thread


def test_queue_full_leaves_queued_requests_alone(async_rt):
    async_rt(2)
    rec = Recorder()
    nrt.nrt_register_async_exec_callback(rec, None)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    reqs = [request(model, 0, float(i)) for i in range(3)]
    # in simulated time no request has ended yet: both stay in flight, whatever the runtime thread did
    assert nrt.nrt_execute(model, reqs[0][0], reqs[0][1]) == 0
    assert nrt.nrt_execute(model, reqs[1][0], reqs[1][1]) == 0
    assert nrt.nrt_execute(model, reqs[2][0], reqs[2][1]) == nrt.NRT_QUEUE_FULL
    nrt.nrt_async_drain_queued_execs(0)
    assert [c[4] for c in rec.calls] == [0, 0]
    assert read_f32(reqs[0][3]).tolist() == [0.0] * 4 and read_f32(reqs[1][3]).tolist() == [3.0] * 4
    assert read_f32(reqs[2][3]).tolist() == [0.0] * 4           # the refused request never ran


def test_deep_queue_of_large_outputs_runs_out_of_device_memory(async_rt, capsys):
    async_rt(8)
    model = nrt.nrt_load(scale_neff(output_buffer_bytes=6 << 30, name="large_outputs"), 0, -1)[1]
    reqs = [request(model, 0) for _ in range(8)]
    statuses = [nrt.nrt_execute(model, ins, outs) for ins, outs, _, _ in reqs]
    # a 32 GiB trn1 device: 5 requests of 6 GiB fit beside the runtime, the sixth does not
    assert statuses[:5] == [0] * 5 and statuses[5] == nrt.NRT_RESOURCE
    err = capsys.readouterr().err
    assert "usage: tensors" in err and "Failed to reserve output buffers" in err
    nrt.nrt_async_drain_queued_execs(0)
    used = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    assert used < 1 << 30                                       # reservations returned on completion


def test_a_queue_of_three_fits_where_eight_does_not(async_rt):
    async_rt(3)
    model = nrt.nrt_load(scale_neff(output_buffer_bytes=6 << 30, name="large_outputs"), 0, -1)[1]
    reqs = [request(model, 0) for _ in range(3)]
    assert [nrt.nrt_execute(model, i, o) for i, o, _, _ in reqs] == [0, 0, 0]
    assert nrt.nrt_async_drain_queued_execs(0) == 0


def test_reading_a_tensor_of_a_pending_request_waits_for_it(async_rt):
    async_rt(3)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    ins, outs, x, y = request(model, 0, 5.0)
    result = {}
    with pause_core(0):                 # the runtime thread runs nothing: the request stays pending
        assert nrt.nrt_execute(model, ins, outs) == 0
        reader = threading.Thread(target=lambda: result.setdefault("y", read_f32(y)))
        writer = threading.Thread(target=lambda: result.setdefault(
            "w", nrt.nrt_tensor_write(x, np.zeros(4, np.float32), 0, 16)))
        reader.start()
        writer.start()
        reader.join(0.2)
        writer.join(0.2)
        assert reader.is_alive() and writer.is_alive()            # both wait: the request still uses them
    reader.join(10)
    writer.join(10)
    assert result["y"].tolist() == [15.0] * 4                     # no stale read
    assert result["w"] == 0                                       # the write came after the request read x


def test_errors_and_timeouts_arrive_through_the_callback(async_rt):
    async_rt(3)
    rec = Recorder()
    nrt.nrt_register_async_exec_callback(rec, None)
    slow = nrt.nrt_load(scale_neff(duration=40.0, name="slow"), 0, -1)[1]
    nan = nrt.nrt_load(scale_neff(nan=True, name="nan"), 1, -1)[1]
    a = request(slow, 0)
    b = request(nan, 1, 0.0)
    assert nrt.nrt_execute(slow, a[0], a[1]) == 0
    assert nrt.nrt_execute(nan, b[0], b[1]) == 0
    rec.wait_for(2)
    by_model = {c[1]: c[4] for c in rec.calls}
    assert by_model == {slow.id: nrt.NRT_TIMEOUT, nan.id: nrt.NRT_EXEC_COMPLETED_WITH_NUM_ERR}


def test_argument_errors_are_returned_at_once(async_rt):
    async_rt(3)
    rec = Recorder()
    nrt.nrt_register_async_exec_callback(rec, None)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    _, empty = nrt.nrt_allocate_tensor_set()
    assert nrt.nrt_execute(model, empty, empty) == nrt.NRT_INVALID
    nrt.nrt_async_drain_queued_execs(0)
    assert rec.calls == []


def test_default_callback_logs_failures(async_rt, capsys):
    async_rt(3)
    slow = nrt.nrt_load(scale_neff(duration=40.0, name="slow"), 0, -1)[1]
    ins, outs, _, _ = request(slow, 0)
    assert nrt.nrt_execute(slow, ins, outs) == 0
    nrt.nrt_async_drain_queued_execs(0)
    assert "completed with NRT_TIMEOUT(5)" in capsys.readouterr().err


def test_registering_again_replaces_the_callback(async_rt):
    async_rt(3)
    first, second = Recorder(), Recorder()
    nrt.nrt_register_async_exec_callback(first, 1)
    nrt.nrt_register_async_exec_callback(second, 2)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    ins, outs, _, _ = request(model, 0)
    nrt.nrt_execute(model, ins, outs)
    nrt.nrt_async_drain_queued_execs(0)
    assert first.calls == [] and [c[0] for c in second.calls] == [2]


def test_close_and_unload_wait_for_pending_requests(async_rt):
    async_rt(3)
    rec = Recorder()
    nrt.nrt_register_async_exec_callback(rec, None)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    reqs = [request(model, 0) for _ in range(3)]
    for ins, outs, _, _ in reqs:
        assert nrt.nrt_execute(model, ins, outs) == 0
    assert nrt.nrt_unload(model) == 0
    assert len(rec.calls) == 3                                    # unload drained the model's requests
    model2 = nrt.nrt_load(scale_neff(), 1, -1)[1]
    reqs = [request(model2, 1) for _ in range(3)]
    for ins, outs, _, _ in reqs:
        assert nrt.nrt_execute(model2, ins, outs) == 0
    nrt.nrt_close()
    assert len(rec.calls) == 6 and all(c[4] == 0 for c in rec.calls)
    assert interface.state() == "closed"


def test_depth_can_be_arbitrarily_large_memory_is_the_limit(async_rt, capsys):
    """Seeds 000/004: 0 to INT_MAX, "the queue depth can be arbitrarily large"; no cap, no warning."""
    async_rt(2147483647, NEURON_RT_LOG_LEVEL="WARN")
    assert interface.async_depth() == 2147483647
    assert "limit" not in capsys.readouterr().err
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    release = threading.Event()
    nrt.nrt_register_async_exec_callback(lambda *args: release.wait(30), None)   # hold the runtime thread
    reqs = [request(model, 0) for _ in range(100)]
    try:    # 100 requests in flight at once on one core, beyond the clamp of 63 neuron_sim used to apply
        assert [nrt.nrt_execute(model, ins, outs) for ins, outs, _, _ in reqs] == [0] * 100
    finally:
        release.set()


def test_drain_of_a_bad_core_is_invalid(async_rt):
    async_rt(3)
    assert nrt.nrt_async_drain_queued_execs(9) == nrt.NRT_INVALID


def test_sync_mode_is_the_default(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    assert nrt.nrt_init() == 0
    assert not interface.async_enabled()
    rec = Recorder()
    assert nrt.nrt_register_async_exec_callback(rec, None) == 0
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    ins, outs, _, y = request(model, 0, 1.0)
    assert nrt.nrt_execute(model, ins, outs) == 0 and read_f32(y).tolist() == [3.0] * 4
    assert rec.calls == []


def test_pythonic_submit_returns_futures(async_rt):
    async_rt(3)
    rt = neuron_sim.Runtime()
    model = rt.load(scale_neff())
    futures = [model.submit(x=np.full(4, float(i), np.float32)) for i in range(3)]
    assert [f.result(timeout=10)["y"].tolist() for f in futures] == [[3.0 * i] * 4 for i in range(3)]
    slow = rt.load(scale_neff(duration=40.0, name="slow"))
    with pytest.raises(neuron_sim.NrtError) as err:
        slow.submit(x=np.zeros(4, np.float32)).result(timeout=10)
    assert err.value.status == neuron_sim.NrtStatus.TIMEOUT
