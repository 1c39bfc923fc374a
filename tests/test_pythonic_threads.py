"""The Pythonic face from many threads: every call gets its own outputs; unload never yields zeros."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import neuron_sim
from neuron_sim import NrtError, NrtStatus
from neuron_sim.neff.builder import NeffBuilder

W = np.random.default_rng(3).standard_normal((16, 8)).astype(np.float32)
THREADS, CALLS = 8, 150


def mlp_neff() -> bytes:
    b = NeffBuilder("mlp_threads", target="v2")
    x = b.input("x", "float32", (4, 16))
    b.output("y", b.relu(x @ b.weight("w", W)))
    return b.build()


def reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W, 0)


def run_threads(target, n: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected and asserted on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    """Switch threads every few bytecodes so interleavings that real workloads meet happen in every run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.fixture
def rt(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    with neuron_sim.Runtime() as runtime:
        yield runtime


def test_concurrent_calls_each_get_their_own_outputs(rt):
    model = rt.load(mlp_neff(), core=0)
    wrong = []

    def caller(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        for _ in range(CALLS):
            x = rng.standard_normal((4, 16)).astype(np.float32)
            y = model(x=x)["y"]
            if not np.allclose(y, reference(x), rtol=1e-5, atol=1e-5):
                wrong.append(i)

    assert run_threads(caller) == []
    assert wrong == [], f"{len(wrong)} of {THREADS * CALLS} calls returned another call's outputs"


def test_calls_on_two_models_of_two_cores_from_many_threads(rt):
    models = [rt.load(mlp_neff(), core=0), rt.load(mlp_neff(), core=1)]
    bad = []

    def caller(i: int) -> None:
        rng = np.random.default_rng(i)
        for k in range(60):
            x = rng.standard_normal((4, 16)).astype(np.float32)
            if not np.allclose(models[(i + k) % 2](x=x)["y"], reference(x), atol=1e-5):
                bad.append(i)

    assert run_threads(caller) == [] and bad == []


def test_unload_during_calls_gives_invalid_handle_or_the_right_answer(rt):
    model = rt.load(mlp_neff(), core=0)
    outcomes = {"ok": 0, "invalid_handle": 0}
    wrong: list[np.ndarray] = []
    lock = threading.Lock()
    started = threading.Event()

    def caller(i: int) -> None:
        rng = np.random.default_rng(200 + i)
        for _ in range(400):
            x = rng.standard_normal((4, 16)).astype(np.float32) + 0.5
            started.set()
            try:
                y = model(x=x)["y"]
            except NrtError as exc:
                assert exc.status == NrtStatus.INVALID_HANDLE, exc
                with lock:
                    outcomes["invalid_handle"] += 1
                continue
            with lock:
                outcomes["ok"] += 1
                if not np.allclose(y, reference(x), atol=1e-5):
                    wrong.append(y)

    def unloader() -> None:
        started.wait(10)
        model.unload()

    threads = [threading.Thread(target=unloader)]
    threads[0].start()
    errors = run_threads(caller, 6)
    threads[0].join(10)
    assert errors == []
    assert wrong == [], f"{len(wrong)} outputs were wrong (all zeros: {sum(not y.any() for y in wrong)})"
    assert outcomes["invalid_handle"] > 0                    # calls after the unload were refused
    with pytest.raises(NrtError) as exc:
        model(x=np.ones((4, 16), np.float32))
    assert exc.value.status == NrtStatus.INVALID_HANDLE
    assert rt.memory_stats(0)[0] == rt.memory_stats(1)[0]   # every tensor of the calls was freed with the model


def test_concurrent_submits_resolve_to_their_own_outputs(monkeypatch):
    monkeypatch.setenv("NEURON_SIM_INSTANCE_TYPE", "trn1.2xlarge")
    monkeypatch.setenv("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "63")
    with neuron_sim.Runtime() as rt:
        model = rt.load(mlp_neff(), core=0)
        results = []
        lock = threading.Lock()

        def submitter(i: int) -> None:
            rng = np.random.default_rng(300 + i)
            for _ in range(5):
                x = rng.standard_normal((4, 16)).astype(np.float32)
                future = model.submit(x=x)
                y = future.result(10)["y"]
                with lock:
                    results.append(np.allclose(y, reference(x), atol=1e-5))

        assert run_threads(submitter, 4) == []
        assert len(results) == 20 and all(results)
