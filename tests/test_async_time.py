"""Simulated time: per-core timelines, and async back-pressure that follows simulated time (issues 18 and 9 §3)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import neuron_sim
from neuron_sim import nrt
from neuron_sim.neff.builder import NeffBuilder
from neuron_sim.runtime import lifecycle

D = 30e-6          # the model's simulated duration


def scale_neff(duration=D, name="scale") -> bytes:
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


def io(model, vnc):
    _, ins = nrt.nrt_allocate_tensor_set()
    _, outs = nrt.nrt_allocate_tensor_set()
    x = nrt.nrt_tensor_allocate(0, vnc, 16, "x")[1]
    y = nrt.nrt_tensor_allocate(0, vnc, 16, "y")[1]
    nrt.nrt_add_tensor_to_tensor_set(ins, "x", x)
    nrt.nrt_add_tensor_to_tensor_set(outs, "y", y)
    return ins, outs


def test_k_threads_on_k_cores_finish_at_n_times_d(monkeypatch):
    rt = start(monkeypatch, instance="trn1.32xlarge", NEURON_RT_NUM_CORES="4")
    k, n, d = 4, 100, 0.001
    models = [nrt.nrt_load(scale_neff(d, f"m{v}"), v, -1)[1] for v in range(k)]
    base = [rt.cores[v].timeline.busy_until for v in range(k)]      # init's core reset, then each load
    ends = {}

    def worker(v):
        ins, outs = io(models[v], v)
        assert all(nrt.nrt_execute(models[v], ins, outs) == 0 for _ in range(n))
        ends[v] = rt.clock.thread_now()

    threads = [threading.Thread(target=worker, args=(v,)) for v in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # independent NeuronCores run in parallel: n x d, not k x n x d
    assert rt.clock.now() == pytest.approx(base[-1] + n * d)
    assert [rt.cores[v].timeline.busy_until for v in range(k)] == pytest.approx([b + n * d for b in base])
    assert [ends[v] for v in range(k)] == pytest.approx([b + n * d for b in base])


def test_two_threads_on_one_core_share_its_timeline(monkeypatch):
    rt = start(monkeypatch)
    model = nrt.nrt_load(scale_neff(0.001), 0, -1)[1]
    t0, idle = rt.cores[0].timeline.busy_until, rt.cores[1].timeline.busy_until   # after reset and load

    def worker():
        ins, outs = io(model, 0)
        for _ in range(10):
            nrt.nrt_execute(model, ins, outs)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rt.clock.now() == pytest.approx(t0 + 0.02) and rt.cores[1].timeline.busy_until == idle


def test_advance_counts_host_time_and_the_device_starts_no_earlier(monkeypatch):
    rt = start(monkeypatch)
    model = nrt.nrt_load(scale_neff(0.001), 0, -1)[1]
    ins, outs = io(model, 0)
    t0 = rt.clock.thread_now()                                          # nrt_init's reset and the load
    rt.clock.advance(0.5)
    assert nrt.nrt_execute(model, ins, outs) == 0
    assert rt.clock.thread_now() == pytest.approx(t0 + 0.501)
    assert rt.cores[0].timeline.busy_until == pytest.approx(t0 + 0.501)


# ---- back-pressure ----------------------------------------------------------------------------------
def expected_statuses(host_s: float, depth: int, count: int, t0: float = 0.0) -> list[int]:
    """The documented rule: in flight = accepted requests whose simulated end is after the submit's host time
    (``t0``: the host and device time when the submits begin, after nrt_init's reset and the load)."""
    ends: list[float] = []
    out, t, busy = [], t0, t0
    for _ in range(count):
        t += host_s
        if sum(e > t for e in ends) < depth:
            busy = max(t, busy) + D
            ends.append(busy)
            out.append(0)
        else:
            out.append(nrt.NRT_QUEUE_FULL)
    return out


def cpu_bound(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1                       # pure Python: holds the interpreter, as real host-side preparation does


def submit_sequence(monkeypatch, host_s: float, count: int, depth: int = 3, hog: bool = False
                    ) -> tuple[list[int], float]:
    rt = start(monkeypatch, depth)
    calls = []
    nrt.nrt_register_async_exec_callback(lambda p, m, v, j, s: calls.append(j), None)
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    sets = [io(model, 0) for _ in range(4)]
    t0 = rt.clock.thread_now()
    assert rt.cores[0].timeline.busy_until == t0
    stop = threading.Event()
    hogger = threading.Thread(target=lambda: [cpu_bound(0.001) for _ in iter(stop.is_set, True)])
    if hog:
        hogger.start()
    statuses = []
    try:
        for i in range(count):
            cpu_bound(200e-6)                        # real host work: free on the virtual clock ...
            rt.clock.advance(host_s)                 # ... unless the program counts it
            ins, outs = sets[i % 4]
            statuses.append(nrt.nrt_execute(model, ins, outs))
    finally:
        stop.set()
        if hog:
            hogger.join()
    assert nrt.nrt_async_drain_queued_execs(0) == 0
    assert len(calls) == statuses.count(0) == len(set(calls))     # one callback per accepted request
    nrt.nrt_close()
    return statuses, t0


@pytest.mark.parametrize("host_s, count", [(200e-6, 1000), (20e-6, 300), (0.0, 200)])
def test_status_sequence_is_a_function_of_calls_and_simulated_time(monkeypatch, host_s, count):
    """The issue's scenario: 200 µs of CPU-bound host work per request, a 30 µs model, depth 3, 1000 submits;
    repeated, once with a thread competing for the interpreter; and with host time counted shorter or not at all."""
    runs_t0 = [submit_sequence(monkeypatch, host_s, count, hog=hog) for hog in (False, True, False)]
    runs = [r for r, _ in runs_t0]
    assert runs[0] == runs[1] == runs[2] == expected_statuses(host_s, 3, count, runs_t0[0][1])
    if host_s == 200e-6:
        assert runs[0] == [0] * count                # host slower than the device: never full
    if host_s == 0.0:
        assert runs[0] == [0] * 3 + [nrt.NRT_QUEUE_FULL] * (count - 3)   # host time not counted: nothing ends
    if host_s == 20e-6:
        assert 0 < runs[0].count(nrt.NRT_QUEUE_FULL) < count // 2


def test_real_clock_host_slower_than_device_never_meets_queue_full(monkeypatch):
    rt = start(monkeypatch, 2, NEURON_SIM_CLOCK="real")
    model = nrt.nrt_load(scale_neff(), 0, -1)[1]
    sets = [io(model, 0) for _ in range(3)]
    statuses = []
    for i in range(300):
        cpu_bound(200e-6)
        ins, outs = sets[i % 3]
        statuses.append(nrt.nrt_execute(model, ins, outs))
    nrt.nrt_async_drain_queued_execs(0)
    assert statuses == [0] * 300
    assert rt.clock.kind == "real"


def test_submit_block_waits_for_the_oldest_request_in_simulated_time(monkeypatch):
    start(monkeypatch, 2)
    rt = neuron_sim.Runtime()
    model = rt.load(scale_neff(0.001))
    t0 = rt.clock.thread_now()                                          # nrt_init's reset and the load
    xs = [np.full(4, float(i), np.float32) for i in range(10)]
    with pytest.raises(neuron_sim.NrtError) as err:
        [model.submit(x=x) for x in xs[:3]]
    assert err.value.status == neuron_sim.NrtStatus.QUEUE_FULL
    assert rt.clock.thread_now() == t0
    futures = [model.submit(x=x, block=True) for x in xs]
    assert [f.result(timeout=10)["y"].tolist() for f in futures] == [(3 * x).tolist() for x in xs]
    # 2 requests were already in flight: 12 requests of 1 ms back to back; result() waited for the last end
    assert rt.clock.thread_now() == pytest.approx(t0 + 0.012)
    assert model.submit({"x": xs[0]}).result(timeout=10)["y"].tolist() == [0.0] * 4


def test_waiting_for_each_result_never_fills_the_queue(monkeypatch):
    start(monkeypatch, 1)
    rt = neuron_sim.Runtime()
    model = rt.load(scale_neff(0.001))
    t0 = rt.clock.thread_now()
    for i in range(20):
        assert model.submit(x=np.full(4, float(i), np.float32)).result(timeout=10)["y"][0] == 3.0 * i
    assert rt.clock.now() == pytest.approx(t0 + 0.02)


def test_output_completion_timeout_is_simulated_time(monkeypatch):
    """nrt_tensor_check_output_completion waits on the virtual clock: 3 requests of 1 s end at 1, 2 and 3 s."""
    rt = start(monkeypatch, depth=4)
    model = nrt.nrt_load(scale_neff(1.0), 0, -1)[1]
    ins, outs = io(model, 0)
    y = nrt.nrt_get_tensor_from_tensor_set(outs, "y")[1]
    t0 = rt.clock.thread_now()                                          # after nrt_init's reset and the load
    assert [nrt.nrt_execute(model, ins, outs) for _ in range(3)] == [0, 0, 0]
    wall = time.monotonic()
    steps = []
    for timeout_us, expected in [(500_000, 1), (1_000_000, 2), (1_000_000, 2), (-1, 3), (0, 3), (3600_000_000, 4)]:
        status = nrt.nrt_tensor_check_output_completion(y, timeout_us, expected)
        steps.append((status, rt.clock.thread_now() - t0))
    assert [s for s, _ in steps] == [nrt.NRT_TIMEOUT, nrt.NRT_TIMEOUT, 0, 0, 0, nrt.NRT_TIMEOUT]
    assert [t for _, t in steps] == pytest.approx([0.5, 1.5, 2.0, 3.0, 3.0, 3603.0])
    assert time.monotonic() - wall < 30            # an hour of simulated timeout costs no wall time
    assert nrt.nrt_tensor_reset_output_completion(y) == 0
    assert nrt.nrt_tensor_check_output_completion(y, 0, 1) == nrt.NRT_TIMEOUT
    assert nrt.nrt_execute(model, ins, outs) == 0                   # runs 3603 .. 3604
    assert nrt.nrt_tensor_check_output_completion(y, -1, 1) == 0
    assert rt.clock.thread_now() - t0 == pytest.approx(3604.0)
    assert nrt.nrt_async_drain_queued_execs(0) == 0


def test_output_completion_without_timeout_waits_for_a_later_submission(monkeypatch):
    """A negative timeout waits for a request another thread submits later; the caller's time is its end."""
    rt = start(monkeypatch, depth=4)
    model = nrt.nrt_load(scale_neff(1.0), 0, -1)[1]
    ins, outs = io(model, 0)
    y = nrt.nrt_get_tensor_from_tensor_set(outs, "y")[1]
    t0 = rt.clock.thread_now()
    got = {}
    waiter = threading.Thread(target=lambda: got.update(
        status=nrt.nrt_tensor_check_output_completion(y, -1, 1), at=rt.clock.thread_now()))
    waiter.start()
    time.sleep(0.05)
    assert nrt.nrt_execute(model, ins, outs) == 0
    waiter.join(timeout=30)
    assert got["status"] == 0 and got["at"] == pytest.approx(t0 + 1.0)   # the load ran on the core first


def test_completion_history_stays_bounded(monkeypatch):
    """Thousands of requests on one output tensor keep a bounded list of ends; old counts still answer."""
    from neuron_sim.runtime.async_exec import COMPLETION_HISTORY
    rt = start(monkeypatch, depth=2)
    model = nrt.nrt_load(scale_neff(1.0), 0, -1)[1]
    ins, outs = io(model, 0)
    y = nrt.nrt_get_tensor_from_tensor_set(outs, "y")[1]
    n = 3 * COMPLETION_HISTORY
    t0 = rt.clock.thread_now()
    for i in range(n):
        assert nrt.nrt_execute(model, ins, outs) == 0
        assert nrt.nrt_tensor_check_output_completion(y, -1, i + 1) == 0       # waits for the request's end
        assert rt.clock.thread_now() - t0 == pytest.approx(float(i + 1))
    assert len(y.completion_ends) <= 2 * COMPLETION_HISTORY + 1
    assert nrt.nrt_tensor_check_output_completion(y, 0, 1) == 0             # reached long ago
    assert nrt.nrt_tensor_check_output_completion(y, 0, n + 1) == nrt.NRT_TIMEOUT
