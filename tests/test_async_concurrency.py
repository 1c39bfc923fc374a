"""Concurrency defects found by fault and fuzz testing (issue 9 §7), each reproduced deterministically."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle, models, tensors

pytestmark = pytest.mark.timeout(60)


def scale_neff(duration=1e-4, name="scale") -> bytes:
    b = NeffBuilder(name, target="v2")
    x = b.input("x", "float32", (4,))
    b.output("y", x * 3.0)
    b.declare(duration_s=duration)
    return b.build()


def start(monkeypatch, depth=0, instance="trn1.2xlarge", **env):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", instance)
    monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", str(depth))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert nrt.nrt_init() == 0
    return lifecycle.peek()


def io(model, vnc, value=1.0):
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    x = nrt.nrt_tensor_allocate(0, vnc, 16, "x")[1]
    y = nrt.nrt_tensor_allocate(0, vnc, 16, "y")[1]
    nrt.nrt_tensor_write(x, np.full(4, value, np.float32), 0, 16)
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return ins, outs


def in_thread(fn, timeout=10.0):
    """Run ``fn`` in a thread; its result, or a failure if it does not return within ``timeout`` (a hang)."""
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "call hung"
    return box.get("r")


# ---- lost write on first touch --------------------------------------------------------------------------
class _RacingNumpy:
    """numpy, except that creating a storage's bytes waits for a second creator (the race made certain)."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=0.5)

    def __getattr__(self, name):
        return getattr(np, name)

    def _meet(self):
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            pass                                     # the other thread is not creating: no race
        if threading.current_thread().name == "reader":
            time.sleep(0.05)                         # the reader's buffer is installed last

    def zeros(self, *a, **k):
        self._meet()
        return np.zeros(*a, **k)

    def full(self, *a, **k):
        self._meet()
        return np.full(*a, **k)


def test_first_touch_from_two_threads_keeps_the_write(monkeypatch):
    start(monkeypatch)
    _, t = nrt.nrt_tensor_allocate(0, 0, 64, "fresh")
    monkeypatch.setattr(tensors, "np", _RacingNumpy())
    data = np.arange(16, dtype=np.float32)
    got = np.empty(16, np.float32)
    w = threading.Thread(target=lambda: nrt.nrt_tensor_write(t, data, 0, 64), name="writer")
    r = threading.Thread(target=lambda: nrt.nrt_tensor_read(t, got, 0, 64), name="reader")
    w.start()
    r.start()
    w.join()
    r.join()
    monkeypatch.undo()
    after = np.empty(16, np.float32)
    assert nrt.nrt_tensor_read(t, after, 0, 64) == 0
    np.testing.assert_array_equal(after, data)                 # the write is not lost
    assert got.tolist() in (data.tolist(), [0.0] * 16)         # the read saw before or after, nothing else


# ---- calls from async callbacks --------------------------------------------------------------------------
def test_flat_callback_may_unload_its_model(monkeypatch):
    rt = start(monkeypatch, 4)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    base = nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used
    calls, unloads = [], []

    def cb(params, model_id, vnc, job_id, status):
        calls.append((job_id, status))
        if job_id == 1:
            unloads.append(nrt.nrt_unload(model))
            unloads.append(nrt.nrt_unload(model))

    nrt.nrt_register_async_exec_callback(cb, None)
    sets = [io(model, 0) for _ in range(3)]
    rt.cores[0].lock.acquire()                      # queue all three before the first completes
    try:
        assert [nrt.nrt_execute(model, i, o) for i, o in sets] == [0, 0, 0]
    finally:
        rt.cores[0].lock.release()
    assert in_thread(lambda: nrt.nrt_async_drain_queued_execs(0)) == 0
    assert unloads == [0, nrt.NRT_INVALID_HANDLE]
    assert sorted(calls) == [(1, 0), (2, 0), (3, 0)]          # the accepted requests still ran, once each
    assert nrt.nrt_execute(model, *sets[0]) == nrt.NRT_INVALID_HANDLE
    assert rt.cores[0].models == 0 and model.id not in models.table(rt).by_id
    assert nrt.nrt_get_vnc_memory_stats(0)[1].bytes_used < base    # its memory was returned


@pytest.mark.parametrize("call", ["drain", "close"])
def test_flat_callback_calling_drain_or_close_is_refused_not_hung(monkeypatch, capsys, call):
    rt = start(monkeypatch, 2)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    seen = []

    def cb(params, model_id, vnc, job_id, status):
        seen.append(nrt.nrt_async_drain_queued_execs(0) if call == "drain" else nrt.nrt_close())

    nrt.nrt_register_async_exec_callback(cb, None)
    assert nrt.nrt_execute(model, *io(model, 0)) == 0
    assert in_thread(lambda: nrt.nrt_async_drain_queued_execs(0)) == 0
    assert seen == [nrt.NRT_FAILURE if call == "drain" else None]
    assert lifecycle.peek() is rt                                  # nrt_close from the callback did nothing
    fn = "nrt_async_drain_queued_execs" if call == "drain" else "nrt_close"
    assert f"{fn} cannot be called from an async execution callback" in capsys.readouterr().err
    in_thread(nrt.nrt_close)
    assert rt.closed


def test_future_done_callback_may_unload_the_model(monkeypatch):
    start(monkeypatch, 3)
    rt = neuron_sim.Runtime()
    model = rt.load(scale_neff())
    futures = [model.submit(x=np.full(4, float(i), np.float32)) for i in range(3)]
    futures[0].add_done_callback(lambda f: model.unload())
    results = in_thread(lambda: [f.result(timeout=10)["y"][0] for f in futures])
    assert results == [0.0, 3.0, 6.0]
    with pytest.raises(neuron_sim.NrtError) as err:
        model.submit(x=np.zeros(4, np.float32))
    assert err.value.status == neuron_sim.NrtStatus.INVALID_HANDLE
    in_thread(rt.close)


def test_pythonic_close_from_a_done_callback_raises_instead_of_hanging(monkeypatch):
    start(monkeypatch, 3)
    rt = neuron_sim.Runtime()
    model = rt.load(scale_neff())
    errors = []

    def close(_):
        try:
            lifecycle.close()
        except neuron_sim.NrtError as exc:
            errors.append(exc.status)

    f = model.submit(x=np.zeros(4, np.float32))
    f.add_done_callback(close)
    in_thread(lambda: f.result(timeout=10))
    assert errors in ([neuron_sim.NrtStatus.FAILURE], [])          # [] when the future was done before
    in_thread(lifecycle.close)


# ---- close while submitting ------------------------------------------------------------------------------
def async_threads():
    return [t for t in threading.enumerate() if t.name.startswith("nrt-async")]


def test_close_while_threads_submit_resolves_every_accepted_request(monkeypatch):
    start(monkeypatch, 4, instance="trn1.32xlarge", NEURON_RT_NUM_CORES="2")
    rt = neuron_sim.Runtime()
    models = [rt.load(scale_neff(name=f"m{v}"), core=v) for v in range(2)]
    clock = rt.clock
    accepted, refused = [], Counter()
    lock = threading.Lock()
    go = threading.Event()

    def submitter(seed):
        rng = random.Random(seed)
        go.wait()
        for i in range(400):
            clock.advance(5e-5)                     # host work between submits: requests end meanwhile
            try:
                f = rng.choice(models).submit(x=np.full(4, float(i), np.float32))
            except neuron_sim.NrtError as exc:
                refused[exc.status] += 1
                if exc.status == neuron_sim.NrtStatus.CLOSED:
                    return
                continue
            with lock:
                accepted.append((f, 3.0 * i))

    threads = [threading.Thread(target=submitter, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.02)
    in_thread(nrt.nrt_close)                        # the Pythonic rt.close() of the runtime goes the same way
    for t in threads:
        t.join(10)
    assert accepted
    for f, want in accepted:
        assert f.done()                                            # resolved, never left pending
        assert f.exception() is None and f.result()["y"][0] == want
    assert async_threads() == []                                   # no runtime thread outlives close
    assert set(refused) <= {neuron_sim.NrtStatus.CLOSED, neuron_sim.NrtStatus.QUEUE_FULL}


# ---- unload races ----------------------------------------------------------------------------------------
def test_two_unloads_during_an_execution_one_wins(monkeypatch):
    rt = start(monkeypatch)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    results = []
    rt.cores[0].lock.acquire()                      # an execution is running on the core
    threads = [threading.Thread(target=lambda: results.append(nrt.nrt_unload(model))) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(results) < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    rt.cores[0].lock.release()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, nrt.NRT_INVALID_HANDLE]
    assert rt.cores[0].models == 0


def test_execute_waiting_for_the_core_does_not_complete_after_unload(monkeypatch):
    rt = start(monkeypatch)
    for _ in range(20):
        model = nrt.nrt_load(scale_neff(), 0, -1)[1]
        ins, outs = io(model, 0)
        events = []
        rt.cores[0].lock.acquire()                  # the execute passes its checks, then waits for the core
        ex = threading.Thread(target=lambda: events.append(("execute", nrt.nrt_execute(model, ins, outs))))
        ex.start()
        deadline = time.monotonic() + 5
        while not ex.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.005)
        un = threading.Thread(target=lambda: events.append(("unload", nrt.nrt_unload(model))))
        un.start()
        while not model.unloaded and time.monotonic() < deadline:
            time.sleep(0.001)
        rt.cores[0].lock.release()
        ex.join(10)
        un.join(10)
        # either the execution finished before unload returned, or it was refused — never after
        assert events in ([("execute", 0), ("unload", 0)], [("execute", nrt.NRT_INVALID_HANDLE), ("unload", 0)],
                          [("unload", 0), ("execute", nrt.NRT_INVALID_HANDLE)])
    assert rt.cores[0].models == 0


# ---- every accepted request: exactly one callback ---------------------------------------------------------
def test_exactly_one_callback_per_accepted_request_under_submit_unload_close(monkeypatch):
    start(monkeypatch, 3, instance="trn1.32xlarge", NEURON_RT_NUM_CORES="2")
    calls = Counter()
    lock = threading.Lock()

    def cb(params, model_id, vnc, job_id, status):
        with lock:
            calls[job_id] += 1

    nrt.nrt_register_async_exec_callback(cb, None)
    models = [nrt.nrt_load(scale_neff(name=f"m{i}"), i % 2, -1)[1] for i in range(6)]
    accepted = Counter()
    statuses = Counter()

    def submitter(seed):
        rng = random.Random(seed)
        pool = {id(m): io(m, m.start_vnc) for m in models}
        for _ in range(300):
            m = rng.choice(models)
            s = nrt.nrt_execute(m, *pool[id(m)])
            with lock:
                statuses[s] += 1
                accepted[seed] += s == 0
            if s == nrt.NRT_CLOSED:
                return

    def unloader():
        for m in models[:4]:
            time.sleep(0.002)
            nrt.nrt_unload(m)

    threads = [threading.Thread(target=submitter, args=(s,)) for s in range(4)] + [threading.Thread(target=unloader)]
    for t in threads:
        t.start()
    time.sleep(0.03)
    in_thread(nrt.nrt_close)
    for t in threads:
        t.join(10)
    assert sum(accepted.values()) > 0
    assert sum(calls.values()) == sum(accepted.values()) and set(calls.values()) == {1}
    assert set(statuses) <= {0, nrt.NRT_QUEUE_FULL, nrt.NRT_INVALID_HANDLE, nrt.NRT_CLOSED}
    assert async_threads() == []
