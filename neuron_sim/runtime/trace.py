"""The one trace recorder: system-trace events (nrt_sys_trace_*), profiles (nrt_profile_*) and the Perfetto timeline.

The runtime calls the hooks below only behind ``if trace.recorder is not None`` (one test on the hot path when
tracing is off). Device timestamps are the simulated clock in nanoseconds (``nc_timestamp_ns``), so a trace
taken on the virtual clock is exact and reproducible; host timestamps are wall time (``cpu_timestamp_ns``).

Event records are the dicts of ``nrt_sys_trace_fetch_events`` (docs/tracing.md): ``event_type``, ``phase``
(``start``/``stop`` for spans, ``info`` for single events), ``tracking_id``, ``lnc_idx`` (process-local core,
-1 for host-only calls), ``data``. Decisions where the spec is silent are in docs/tracing.md.

State owned here: ``recorder`` (None unless a system trace, a profile or a Perfetto trace is active) and the
``Recorder``'s rings, profile captures and timeline sink.
"""
from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuron_sim.config.parsers import ConfigError, _items
from neuron_sim.nrtlog import fail
from neuron_sim.status import NrtError, NrtStatus, status_name

HARDWARE_EVENTS = ("nc_exec_running", "cc_running", "cc_exec_barrier", "numerical_err", "nrt_model_switch",
                   "timestamp_sync_point", "hw_notify")
SOFTWARE_EVENTS = ("nrt_load", "nrt_unload", "nrt_execute", "nrt_tensor_read", "nrt_tensor_write",
                   "async_exec_queue")
EVENT_TYPES = HARDWARE_EVENTS + SOFTWARE_EVENTS
CATEGORIES = {"hardware": HARDWARE_EVENTS, "software": SOFTWARE_EVENTS}
DEFAULT_MAX_EVENTS_PER_NC = 1 << 16
HOST_LANE = -1                       # ring of events that belong to no NeuronCore (host tensors)
NC_FILTER_FORM = "expected NeuronCore indices and inclusive ranges such as 0, 0,2,4 or 0-3"
TYPE_FILTER_FORM = ("expected a comma-separated list of event types, the categories hardware/software, and "
                    "^name to exclude one (e.g. hardware,^cc_running); types: " + ", ".join(EVENT_TYPES))

recorder: Recorder | None = None
_lock = threading.Lock()


def ns(seconds: float) -> int:
    """Simulated seconds as integer nanoseconds (the device clock)."""
    return int(round(seconds * 1e9))


# ---- configuration --------------------------------------------------------------------------------------
@dataclass
class SysTraceConfig:
    """nrt_sys_trace_config_t: which NCs and event types to capture, and the ring size per NC."""

    max_events_per_nc: int = DEFAULT_MAX_EVENTS_PER_NC
    disabled_ncs: set[int] = field(default_factory=set)
    event_types: set[str] = field(default_factory=lambda: set(EVENT_TYPES))
    freed: bool = False

    def set_defaults(self) -> None:
        self.max_events_per_nc = DEFAULT_MAX_EVENTS_PER_NC
        self.disabled_ncs = set()
        self.event_types = set(EVENT_TYPES)


@dataclass
class FetchOptions:
    """nrt_sys_trace_fetch_options_t: at most ``max_events_per_nc`` newest events, of one NC or all."""

    max_events_per_nc: int | None = None
    nc_idx: int | None = None
    freed: bool = False


def parse_nc_filter(text: str) -> set[int]:
    """NEURON_RT_INSPECT_EVENT_FILTER_NC: ``0``, ``0,2,4``, ``0-3``."""
    return {i for first, last in _items("NEURON_RT_INSPECT_EVENT_FILTER_NC", text, NC_FILTER_FORM, 511)
            for i in range(first, last + 1)}


def parse_type_filter(text: str) -> set[str]:
    """NEURON_RT_INSPECT_EVENT_FILTER_TYPE: names, categories, ``^name`` exclusions (only exclusions: all but)."""
    name = "NEURON_RT_INSPECT_EVENT_FILTER_TYPE"
    include: set[str] = set()
    exclude: set[str] = set()
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ConfigError(name, text, TYPE_FILTER_FORM)
    for item in items:
        negate = item.startswith("^")
        word = item[1:] if negate else item
        types = CATEGORIES.get(word) or ((word,) if word in EVENT_TYPES else None)
        if types is None:
            raise ConfigError(name, text, TYPE_FILTER_FORM)
        (exclude if negate else include).update(types)
    return (include or set(EVENT_TYPES)) - exclude


def check_event_type(event_type: Any, function: str) -> str:
    """An event type name, or NRT_INVALID naming the accepted ones."""
    if event_type not in EVENT_TYPES:
        raise fail(NrtStatus.INVALID, "NRT", function, f"Unknown event type {event_type!r}: expected one of "
                                                       + ", ".join(EVENT_TYPES))
    return event_type


# ---- the recorder ---------------------------------------------------------------------------------------
@dataclass
class _SysCapture:
    ncs: set[int] | None                 # None: every NC
    types: set[str]
    rings: dict[int, deque]
    max_events: int


@dataclass
class ProfileCapture:
    """One nrt_profile_start: the model profiled, the file, and its events since."""

    model_id: int
    path: str
    model: dict[str, Any]
    started_ns: int
    events: list[dict[str, Any]] = field(default_factory=list)


class Recorder:
    """Receives the runtime's hooks and routes each event to the active captures."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.lock = threading.Lock()
        self.tracking = itertools.count(1)
        self.sys: _SysCapture | None = None
        self.profiles: dict[int, ProfileCapture] = {}
        self.timeline: list[dict[str, Any]] | None = None     # every event, for the Perfetto file
        self.timeline_path: str | None = None
        self.memory_samples: list[tuple[int, int, int, int]] = []   # (nc ns, device, bank, bytes used)

    @property
    def idle(self) -> bool:
        return self.sys is None and not self.profiles and self.timeline is None

    def _now(self) -> int:
        return ns(self.rt.clock.now())

    def emit(self, tracking_id: int, model_id: int | None, *events: tuple[str, str, int, dict[str, Any]]) -> None:
        """Record events ``(event_type, phase, lnc_idx, data)`` of one tracking id into every capture that
        wants them (one lock round for all of them)."""
        records = [{"event_type": t, "phase": p, "tracking_id": tracking_id, "lnc_idx": lnc, "data": d}
                   for t, p, lnc, d in events]
        with self.lock:
            cap = self.sys
            if cap is not None:
                for e in records:
                    lnc = e["lnc_idx"]
                    if e["event_type"] in cap.types and (cap.ncs is None or lnc in cap.ncs or lnc == HOST_LANE):
                        ring = cap.rings.get(lnc)
                        if ring is None:
                            ring = cap.rings[lnc] = deque(maxlen=cap.max_events)
                        ring.append(e)
            if model_id is not None and self.profiles:
                capture = self.profiles.get(model_id)
                if capture is not None:
                    capture.events.extend(records)
            if self.timeline is not None:
                self.timeline.extend(records)

    # ---- hooks (called behind ``if recorder is not None``) -----------------------------------------------
    def software(self, event_type: str, lnc: int, start_s: float, end_s: float, data: dict[str, Any],
                 model_id: int | None = None) -> int:
        """A runtime API call as a start/stop pair on simulated time; returns its tracking id."""
        tid = next(self.tracking)
        thread = threading.get_ident()
        self.emit(tid, model_id,
                  (event_type, "start", lnc, {"nc_timestamp_ns": ns(start_s), "thread_id": thread, **data}),
                  (event_type, "stop", lnc, {"nc_timestamp_ns": ns(end_s), "thread_id": thread, **data}))
        return tid

    def loaded(self, model: Any, start_s: float, end_s: float) -> None:
        """One copy of a model loaded in the slot [start, end) of its cores' timelines."""
        self.software("nrt_load", model.start_vnc, start_s, end_s, _model_data(model), model.id)

    def unloaded(self, model: Any) -> None:
        now = self.host_now()
        self.software("nrt_unload", model.start_vnc, now, now, _model_data(model), model.id)

    def tensor_io(self, event_type: str, tensor: Any, size: int) -> None:
        now = self.host_now()
        self.software(event_type, tensor.vnc, now, now, {"tensor_name": tensor.name, "size": size})

    def run(self, rt: Any, req: Any, run: Any, *args: Any, job_id: int | None = None) -> Any:
        """Call ``run(rt, req, *args)`` (one execution) and record it; synchronous when ``job_id`` is None."""
        try:
            status = run(rt, req, *args)
        except NrtError as exc:
            if req.end > 0 or req.timed_out:          # it got a slot on the device (else: refused before)
                self.executed(req, int(exc.status), None if job_id is not None else req.submitted, job_id)
            raise
        self.executed(req, int(status), None if job_id is not None else req.submitted, job_id)
        return status

    def runner(self, run: Any) -> Any:
        """``run`` with every call recorded (nrt_execute_repeat)."""
        return lambda rt, req, *args: self.run(rt, req, run, *args)

    def host_now(self) -> float:
        """The calling host thread's simulated time."""
        return self.rt.clock.thread_now()

    def executed(self, req: Any, status: int, called_s: float | None = None, job_id: int | None = None) -> None:
        """One execution on the device: the nrt_execute software span of a synchronous call (``called_s`` to
        the end), an nc_exec_running pair per core, numerical_err, then a sync point."""
        model = req.model
        start_s, end_s = _slot(req)
        tid = next(self.tracking)
        data = {**_model_data(model), "status": status_name(status)}
        if job_id is not None:
            data["job_id"] = job_id
        start_ns, end_ns = ns(start_s), ns(end_s)
        thread = threading.get_ident()
        lnc = model.start_vnc
        events = []
        if called_s is not None:
            events.append(("nrt_execute", "start", lnc, {"nc_timestamp_ns": ns(called_s), "thread_id": thread, **data}))
        for cs in model.cores:
            events.append(("nc_exec_running", "start", cs.vnc, {"nc_timestamp_ns": start_ns, **data}))
            events.append(("nc_exec_running", "stop", cs.vnc, {"nc_timestamp_ns": end_ns, **data}))
        if status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR:
            events.append(("numerical_err", "info", lnc, {"nc_timestamp_ns": end_ns, **data}))
        events.append(("timestamp_sync_point", "info", lnc, {"nc_timestamp_ns": end_ns, "cpu_timestamp_ns": time.time_ns()}))
        if called_s is not None:
            events.append(("nrt_execute", "stop", lnc, {"nc_timestamp_ns": end_ns, "thread_id": thread, **data}))
        self.emit(tid, model.id, *events)

    def queued(self, req: Any, job_id: int, depth: int, phase: str) -> None:
        """The async queue of the request's first core: ``start`` when it enters (with the nrt_execute call
        that enqueued it, on host time), ``stop`` when it leaves (its execution ended)."""
        model = req.model
        at = self.host_now() if phase == "start" else _slot(req)[1]
        data = {"nc_timestamp_ns": ns(at), "thread_id": threading.get_ident(), **_model_data(model),
                "job_id": job_id}
        if phase == "start":
            self.software("nrt_execute", model.start_vnc, at, at, {**_model_data(model), "job_id": job_id,
                                                                   "status": "NRT_SUCCESS"}, model.id)
        self.emit(job_id, model.id, ("async_exec_queue", phase, model.start_vnc, {**data, "queue_depth": depth}))

    def memory(self, device: int, bank: int, used: int) -> None:
        """This process's bytes on one HBM bank changed (sampled for the Perfetto counter tracks)."""
        if self.timeline is not None:
            with self.lock:
                self.memory_samples.append((self._now(), device, bank, used))

    # ---- system trace ------------------------------------------------------------------------------------
    def sys_start(self, config: SysTraceConfig, environ: Mapping[str, str]) -> None:
        ncs: set[int] | None = set(range(self.rt.visible_count)) - config.disabled_ncs
        types = set(config.event_types)
        try:
            text = environ.get("NEURON_RT_INSPECT_EVENT_FILTER_NC")
            if text:
                ncs &= parse_nc_filter(text)
            text = environ.get("NEURON_RT_INSPECT_EVENT_FILTER_TYPE")
            if text:
                types &= parse_type_filter(text)
        except ConfigError as exc:
            raise fail(NrtStatus.INVALID, "NRT", "nrt_sys_trace_start", exc.message) from None
        with self.lock:
            self.sys = _SysCapture(ncs, types, {}, config.max_events_per_nc)

    def sys_fetch(self, options: FetchOptions | None) -> list[dict[str, Any]]:
        """Take the captured events (fetched events leave the rings), ordered by device time."""
        with self.lock:
            cap = self.sys
            if cap is None:
                return []
            lanes = list(cap.rings) if options is None or options.nc_idx is None else [options.nc_idx]
            limit = None if options is None else options.max_events_per_nc
            taken: list[dict[str, Any]] = []
            for lane in lanes:
                ring = cap.rings.get(lane)
                if not ring:
                    continue
                events = list(ring)
                if limit is not None:
                    events = events[len(events) - limit:] if limit else []
                ring.clear()
                taken.extend(events)
        order = {id(e): n for n, e in enumerate(taken)}
        return sorted(taken, key=lambda e: (e["data"]["nc_timestamp_ns"], e["tracking_id"], order[id(e)]))


def _slot(req: Any) -> tuple[float, float]:
    """The simulated [start, end) slot the execution took on its cores' timelines."""
    return req.start, req.end


def _model_data(model: Any) -> dict[str, Any]:
    return {"model_id": model.id, "model_name": model.name}


# ---- switching the recorder on and off ------------------------------------------------------------------
def _recorder_of(rt: Any) -> Recorder:
    global recorder
    rec = recorder
    if rec is None or rec.rt is not rt:
        rec = recorder = Recorder(rt)
    return rec


def _maybe_drop() -> None:
    global recorder
    if recorder is not None and recorder.idle:
        recorder = None


def sys_trace_start(rt: Any, config: SysTraceConfig | None, environ: Mapping[str, str] | None = None) -> None:
    """nrt_sys_trace_start: capture from now on (replaces a capture already running)."""
    with _lock:
        _recorder_of(rt).sys_start(config or SysTraceConfig(), os.environ if environ is None else environ)


def sys_trace_stop(rt: Any) -> None:
    """nrt_sys_trace_stop: events stop being captured (and are dropped)."""
    with _lock:
        if recorder is not None and recorder.rt is rt:
            recorder.sys = None
            _maybe_drop()


def sys_trace_fetch(rt: Any, options: FetchOptions | None) -> list[dict[str, Any]]:
    """The events captured since the last fetch (none when no capture is running)."""
    rec = recorder
    return [] if rec is None or rec.rt is not rt else rec.sys_fetch(options)


def profile_start(rt: Any, model: Any, path: str) -> None:
    """nrt_profile_start: truncate ``path`` and capture ``model``'s executions until nrt_profile_stop(path)."""
    from neuron_sim.tracing.profile import truncate
    truncate(path)
    with _lock:
        rec = _recorder_of(rt)
        with rec.lock:
            rec.profiles[model.id] = ProfileCapture(model.id, path, {
                "id": model.id, "name": model.name, "uuid": model.neff.uuid, "start_nc": model.start_vnc,
                "nc_count": len(model.cores)}, ns(rt.clock.now()))


def profile_stop(rt: Any, path: str) -> None:
    """nrt_profile_stop: write the profile of the capture started on ``path`` (docs/tracing.md format)."""
    from neuron_sim.tracing.profile import write_profile
    fn = "nrt_profile_stop"
    with _lock:
        rec = recorder if recorder is not None and recorder.rt is rt else None
        capture = None
        if rec is not None:
            with rec.lock:
                for model_id, cap in list(rec.profiles.items()):
                    if cap.path == path:
                        capture = rec.profiles.pop(model_id)
                        break
        if capture is None:
            raise fail(NrtStatus.INVALID, "NRT", fn, f"No profile was started on {path!r}: call "
                                                     "nrt_profile_start(model, file) with the same file first")
        _maybe_drop()
    write_profile(path, capture, rt, ns(rt.clock.now()))


def timeline_start(rt: Any, path: str) -> None:
    """NEURON_SIM_TRACE: record every event of this runtime for a Perfetto file written at nrt_close."""
    with _lock:
        rec = _recorder_of(rt)
        rec.timeline = []
        rec.timeline_path = path
        now = rec._now()
        banks = {(cs.core.device, cs.core.hbm_bank) for cs in rt.cores}
        rec.memory_samples = [(now, d, b, rt.memory.bank_used(d, b)) for d, b in sorted(banks)]
    atexit.register(timeline_finish, rt)


def timeline_finish(rt: Any) -> str | None:
    """Write the Perfetto file of ``rt`` (at nrt_close, or at exit without one); returns its path."""
    from neuron_sim.tracing.perfetto import write_process_trace
    with _lock:
        rec = recorder
        if rec is None or rec.rt is not rt or rec.timeline is None:
            return None
        events, samples, path = rec.timeline, rec.memory_samples, rec.timeline_path
        rec.timeline, rec.memory_samples, rec.timeline_path = None, [], None
        _maybe_drop()
    return write_process_trace(path, rt, events, samples)


def on_init(rt: Any, environ: Mapping[str, str] | None = None) -> None:
    """nrt_init: start the Perfetto timeline when NEURON_SIM_TRACE names a file."""
    path = (os.environ if environ is None else environ).get("NEURON_SIM_TRACE")
    if path:
        timeline_start(rt, path)


def on_close(rt: Any) -> None:
    """nrt_close: write the timeline and forget every capture of ``rt``."""
    global recorder
    timeline_finish(rt)
    with _lock:
        if recorder is not None and recorder.rt is rt:
            recorder = None


def event_types() -> list[str]:
    """Every event type neuron_sim emits (nrt_sys_trace_get_event_types)."""
    return list(EVENT_TYPES)


def enabled_types(config: SysTraceConfig) -> list[str]:
    return [t for t in EVENT_TYPES if t in config.event_types]

