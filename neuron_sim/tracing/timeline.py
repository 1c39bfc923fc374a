"""A timeline picture from system-trace events (host calls above, one row per NeuronCore below), and the
async pipelining run docs/tutorial.md draws with it.
"""
from __future__ import annotations

from typing import Any

from neuron_sim.tracing.profile import executions

HOST_WORK_S = 0.002        # the pipelining example: 2 ms of host work per request ...
DEVICE_S = 0.002           # ... and 2 ms of device time
REQUESTS = 6
DEPTH = 3


def pipelining_trace(requests: int = REQUESTS, depth: int = DEPTH) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the async pipelining loop on the virtual clock with a system trace; (events, summary), times
    counted from the start of the loop.

    The host thread counts its 2 ms of work with ``clock.advance`` before each ``nrt_execute`` (enqueue);
    with ``depth`` requests in flight the device runs request n while the host prepares request n+1.
    """
    import json
    import threading

    from neuron_sim import nrt
    from neuron_sim.neff.builder import NeffBuilder
    from neuron_sim.runtime import interface
    from neuron_sim.testing import emulate

    b = NeffBuilder("step", target="v2")
    x = b.input("x", "float32", (1024,))
    b.output("y", x * 2.0)
    b.declare(duration_s=DEVICE_S)
    with emulate(instance_type="trn1.2xlarge", env={"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": str(depth)}):
        assert nrt.nrt_init() == 0
        slots = threading.Semaphore(depth)
        nrt.nrt_register_async_exec_callback(lambda p, m, v, j, s: slots.release(), None)
        _, model = nrt.nrt_load(b.build(), 0, -1)
        sets = []
        for _ in range(depth + 1):
            _, i = nrt.nrt_allocate_tensor_set()
            _, o = nrt.nrt_allocate_tensor_set()
            nrt.nrt_add_tensor_to_tensor_set(i, "x", nrt.nrt_tensor_allocate(0, 0, 4096, "x")[1])
            nrt.nrt_add_tensor_to_tensor_set(o, "y", nrt.nrt_tensor_allocate(0, 0, 4096, "y")[1])
            sets.append((i, o))
        clock = interface.clock()
        origin = clock.thread_now()                    # after nrt_init's core reset and the load
        nrt.nrt_sys_trace_start(None)
        host_work = []
        for n in range(requests):
            begin = clock.thread_now()
            clock.advance(HOST_WORK_S)                 # host work preparing request n
            host_work.append((begin, clock.thread_now()))
            slots.acquire()
            i, o = sets[n % len(sets)]
            assert nrt.nrt_execute(model, i, o) == 0
        nrt.nrt_async_drain_queued_execs(0)
        _, text = nrt.nrt_sys_trace_fetch_events(None)
        nrt.nrt_sys_trace_stop()
        nrt.nrt_close()
    shift = int(round(origin * 1e9))                   # times from the start of the loop
    events = json.loads(text)["events"]
    for e in events:
        e["data"]["nc_timestamp_ns"] -= shift
    host_work = [(b - origin, e - origin) for b, e in host_work]
    for begin, end in host_work:
        events.append({"event_type": "host_work", "phase": "span", "tracking_id": 0, "lnc_idx": -1,
                       "data": {"nc_timestamp_ns": int(round(begin * 1e9)), "end_ns": int(round(end * 1e9))}})
    runs = executions(events, 0)
    summary = {"requests": requests, "depth": depth,
               "device_ms": [[r["start_ns"] / 1e6, r["stop_ns"] / 1e6] for r in runs],
               "host_work_ms": [[round(b * 1e3, 6), round(e * 1e3, 6)] for b, e in host_work]}
    return events, summary


def timeline_figure(events: list[dict[str, Any]], title: str) -> Any:
    """Host work and nrt_execute calls on the top row, each NeuronCore's executions below (milliseconds)."""
    from neuron_sim.draw.render import MODEL_COLOURS, _pyplot
    plt = _pyplot()
    lanes = sorted({e["lnc_idx"] for e in events if e["event_type"] == "nc_exec_running"})
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.6 * (len(lanes) + 1)))
    rows = {"host": len(lanes)}
    rows.update({lane: len(lanes) - 1 - n for n, lane in enumerate(lanes)})
    for e in events:
        if e["event_type"] == "host_work":
            start, end = e["data"]["nc_timestamp_ns"] / 1e6, e["data"]["end_ns"] / 1e6
            ax.broken_barh([(start, end - start)], (rows["host"] - 0.3, 0.6), facecolor="#b7b7b7",
                           edgecolor="white", gid=f"host-work-{start:.3f}")
        elif e["event_type"] == "async_exec_queue" and e["phase"] == "start":
            t = e["data"]["nc_timestamp_ns"] / 1e6
            ax.plot([t, t], [rows["host"] - 0.35, rows["host"] + 0.35], color="#000000", lw=1.5,
                    gid=f"enqueue-{e['tracking_id']}")
    for lane in lanes:
        for n, r in enumerate(executions(events, lane)):
            start, dur = r["start_ns"] / 1e6, r["duration_ns"] / 1e6
            ax.broken_barh([(start, dur)], (rows[lane] - 0.3, 0.6), facecolor=MODEL_COLOURS[n % 2],
                           edgecolor="white", gid=f"exec-{r['tracking_id']}")
            ax.text(start + dur / 2, rows[lane], str(n), ha="center", va="center", color="white", fontsize=7)
    ax.set_yticks([rows["host"]] + [rows[lane] for lane in lanes],
                  ["host (work, | = nrt_execute)"] + [f"NC {lane} executions" for lane in lanes])
    ax.set_xlabel("simulated time from the start of the loop (ms)")
    ax.set_title(title, loc="left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig
