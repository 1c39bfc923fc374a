"""nrt_load / nrt_unload: NEFF checks, placement on the least-used cores, device memory, shared weights.

Decisions where the spec is silent (see README "Runtime decisions"):
- a NEFF for another NeuronCore generation fails with NRT_UNSUPPORTED_NEFF_VERSION; with
  NEURON_RT_ALLOW_LEGACY_NEFF it loads when it is for an *older* generation (never a newer one);
- a logical-core size mismatch fails with NRT_INVALID;
- each core a model occupies is charged its share of the NEFF's code and constants, 1 MiB of DMA
  rings, and the shared scratchpad of the core grows (in 512 MB pages) to the largest need;
- with NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS the constants of one NEFF are stored once per HBM bank;
- placement (explicit, NeuronCore groups, least used, replication) follows runtime.placement;
- NEURON_RT_ALLOW_LEGACY_NEFF: "not all NEFF files, especially those from older architectures, may be compatible
  ... the operation will fail with a data mismatch error or stall out" (configuration guide). The documented case,
  one generation back from NeuronCore-v2 (trn1 -> trn2), runs. An inf1 (NeuronCore-v1) NEFF one generation back
  fails every execution with a data mismatch (NRT_EXEC_COMPLETED_WITH_ERR); a NEFF two or more generations back
  stalls: its executions take LEGACY_STALL_S and so time out (NRT_TIMEOUT);
- a load takes simulated time on the model's cores: LOAD_FIXED_S plus the NEFF's bytes (file, or its declared
  code and constants when larger) at LOAD_BYTES_PER_S; NEURON_RT_VALIDATE_HASH adds half of it (the
  configuration guide's "~50%" load-time penalty).

State owned here: each runtime's ``ModelTable`` (loaded models by id, the id counter, shared constant
copies, cached durations), each ``Model``, and the ``models`` and ``scratchpad`` fields of ``CoreState``.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from neuron_sim import nrtlog
from neuron_sim.compute.cost import estimate_duration
from neuron_sim.compute.interpreter import CompiledGraph
from neuron_sim.dtypes import numpy_dtype
from neuron_sim.neff.errors import NeffError
from neuron_sim.neff.reader import Neff, read_neff, read_neff_file
from neuron_sim.nrtlog import fail
from neuron_sim.runtime import faults, neff_cache, trace
from neuron_sim.runtime.clock import reserve_all
from neuron_sim.runtime.memory import Allocation, OutOfDeviceMemory
from neuron_sim.runtime.placement import PlacementError, Spot, place
from neuron_sim.runtime.references import find_reference
from neuron_sim.status import NrtError, NrtStatus

if TYPE_CHECKING:
    from neuron_sim.hardware.model import Machine
    from neuron_sim.runtime.core import CoreState, Runtime

DMA_RING_BYTES = 1 << 20          # per model per core (assumption: io rings of a small model)
GENERATION_ORDER = {"v1": 1, "v2": 2, "v3": 3, "v4": 4}
LOAD_FIXED_S = 0.020              # staging a model: parse, instruction fetch set-up, DMA descriptors
LOAD_BYTES_PER_S = 2.0e9          # host to device copy of code and weights during nrt_load
HASH_LOAD_FACTOR = 1.5            # NEURON_RT_VALIDATE_HASH: "performance penalty during model load time (~50%)"
LEGACY_STALL_S = 3600.0           # an incompatible legacy NEFF "stalls out": it never finishes within any timeout


@dataclass(frozen=True)
class Binding:
    """One model input or output as execute needs it: name, byte size, numpy dtype, shape."""

    name: str
    size: int
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(eq=False)
class Model:
    """A loaded model (nrt_model_t)."""

    id: int
    neff: Neff
    start_vnc: int
    cores: tuple[CoreState, ...]
    inputs: tuple[Binding, ...]
    outputs: tuple[Binding, ...]
    compiled: CompiledGraph | None
    table: ModelTable                 # the runtime's table: its sharing generation dates the cached duration
    allocations: list[Allocation] = field(default_factory=list)
    shared_entries: list = field(default_factory=list)
    unloaded: bool = False        # set once, under rt.lock, by the one unload that wins
    warned_sentinel: bool = False
    copies: tuple["Model", ...] = ()     # every copy of a replicated load (the first is the handle returned)
    group: int | None = None             # NeuronCore group (NEURONCORE_GROUP_SIZES) it was placed in
    load_time_s: float = 0.0             # simulated time nrt_load took
    next_copy: int = 0                   # round-robin position among equally idle copies
    timelines: tuple = ()         # the simulated timelines of its cores (runtime.clock.Timeline)
    bindings: dict = field(default_factory=dict)   # execution's checked (input set, output set) bindings
    hot: tuple | None = None      # execution's last direct binding, revalidated with five comparisons
    array_pool: object = None     # runtime.arrays' idle tensor pairs for calls with numpy arrays
    _duration: tuple[int, float] = (-1, 0.0)

    @property
    def duration_s(self) -> float:
        """Simulated seconds of one execution; recomputed only after weight sharing changed (O(1) per unload)."""
        generation, value = self._duration
        tab = self.table
        if generation != tab.generation:
            generation = tab.generation
            value = tab.duration(self)
            self._duration = (generation, value)
        return value

    @property
    def name(self) -> str:
        return self.neff.name

    @property
    def vnc_count(self) -> int:
        return len(self.cores)

    def __repr__(self) -> str:
        return f"<Model {self.id} {self.name!r} on NC {self.start_vnc}-{self.start_vnc + len(self.cores) - 1}>"


@dataclass(eq=False)
class ModelTable:
    """One runtime's models: loaded ones by id, shared constant copies per HBM bank, cached durations."""

    machine: Machine
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))
    by_id: dict[int, Model] = field(default_factory=dict)
    shared_constants: dict = field(default_factory=dict)
    duration_cache: dict = field(default_factory=dict)
    generation: int = 0               # bumped whenever weight sharing changes: cached durations are stale
    scratch_needs: dict = field(default_factory=dict)   # vnc -> {scratchpad bytes: loaded models needing it}

    def duration(self, m: Model) -> float:
        """Simulated seconds of one execution, cached per NEFF content, core count and number of weight sharers."""
        hbm_sharers = sharers(m)
        n = m.neff       # uuid and name alone do not identify a NEFF: two builds may share them and differ
        key = (n.uuid, n.name, n.header.hash, n.header.data_size, n.code_bytes, n.constants_bytes,
               n.graph.declared.duration_s if n.graph is not None else None, len(m.cores), hbm_sharers)
        cached = self.duration_cache.get(key)
        if cached is None:
            gen = self.machine.generation
            if _generation_gap(self.machine, m.neff) >= 2:
                cached = LEGACY_STALL_S
            elif m.neff.graph is not None:
                cached = estimate_duration(m.neff.graph, gen, cores=len(m.cores), lnc=self.machine.lnc,
                                           hbm_sharers=hbm_sharers, weights=m.neff.weights)
            else:
                io = sum(b.size for b in m.inputs + m.outputs) + m.neff.constants_bytes * hbm_sharers
                cached = gen.launch_cost_s + io / gen.hbm_bandwidth
            self.duration_cache[key] = cached
        return cached


_tables: "weakref.WeakKeyDictionary[Runtime, ModelTable]" = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def table(rt: Runtime) -> ModelTable:
    """The model table of ``rt`` (created with its first model; dropped with the runtime)."""
    tab = _tables.get(rt)
    if tab is None:
        with _tables_lock:
            tab = _tables.setdefault(rt, ModelTable(rt.machine))
    return tab


def loaded(rt: Runtime) -> list[Model]:
    """The models loaded in ``rt``, in load order."""
    return list(table(rt).by_id.values())


def load(rt: Runtime, data, vnc: int, vnc_count: int = -1, source: str | None = None) -> Model:
    """Read and check a NEFF, place it (``vnc_count`` > 0 replicates), account its memory, charge its load time."""
    _check_counts(rt, vnc, vnc_count)
    if isinstance(data, np.ndarray):
        data = memoryview(data)
    config = rt.config
    known = neff_cache.entry(data, (config.validate_hash, config.max_neff_bytes),
                             lambda: _read(lambda: read_neff(data, validate_hash=config.validate_hash,
                                                             max_bytes=config.max_neff_bytes), source))
    return _load(rt, known, len(data), vnc, vnc_count)


def load_streamed(rt: Runtime, path: str, vnc: int, vnc_count: int = -1) -> Model:
    """``load`` of the NEFF file at ``path`` read in steps, so no copy of the file is ever held (for files the
    cache of NEFFs would not keep anyway: a small one is better read whole and given to ``load``)."""
    _check_counts(rt, vnc, vnc_count)
    config = rt.config
    neff = _read(lambda: read_neff_file(path, validate_hash=config.validate_hash, max_bytes=config.max_neff_bytes),
                 path)
    return _load(rt, neff_cache.Entry(neff), neff.file_size, vnc, vnc_count)


def _check_counts(rt: Runtime, vnc: int, vnc_count: int) -> None:
    fn = "nrt_load"
    if isinstance(vnc, bool) or not isinstance(vnc, int) or vnc < -1:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid start NeuronCore {vnc!r}: expected -1 (automatic "
                   f"placement) or a visible index 0-{rt.visible_count - 1}")
    if isinstance(vnc_count, bool) or not isinstance(vnc_count, int) or vnc_count == 0 or vnc_count < -1:
        raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid NeuronCore count {vnc_count!r}: expected -1 (the cores "
                   "one copy needs) or a count >= 1 (floor(count / cores per copy) copies)")


def _load(rt: Runtime, known: neff_cache.Entry, file_bytes: int, vnc: int, vnc_count: int) -> Model:
    fn = "nrt_load"
    neff = known.neff
    _check_architecture(rt, neff)
    _check_lnc(rt, neff)
    compiled = _legacy(rt, neff, known.derived(_compile))
    io = known.derived(_io_bindings)
    tab = table(rt)
    with rt.lock:                      # placement and accounting are one step: concurrent loads never collide
        spot = _place(rt, neff, vnc, vnc_count)
        copies: list[Model] = []
        try:
            for start in spot.starts:
                copies.append(_stage(rt, tab, neff, compiled, io, start, spot.group))
        except BaseException:
            for m in copies:
                _drop(rt, m)
            raise
        if len(copies) > 1:
            for m in copies:
                m.copies = tuple(copies)
        cost = load_time(rt, neff, file_bytes)
        _charge_load(rt, copies, cost)
    model = copies[0]
    if nrtlog.enabled("INFO", "NRT"):        # the line is built only when it is written
        cores = [cs.vnc for m in copies for cs in m.cores]
        nrtlog.info("NRT", fn, f"Loaded NEFF {neff.name} as model {model.id} on NC {cores[0]}"
                    f"{'' if len(cores) == 1 else f'-{cores[-1]}'}"
                    f"{'' if len(copies) == 1 else f' ({len(copies)} copies)'} in {cost * 1e3:.1f} ms")
    return model


def _read(reader: Callable[[], Neff], source: str | None) -> Neff:
    """``reader()`` (read_neff of bytes or of a file), its failures logged and raised as libnrt reports them."""
    try:
        return reader()
    except NeffError as exc:
        nrtlog.error("NEFF", "neff_parse", exc.message)
        raise _load_failed(exc.status, exc.message, source or "<buffer>") from None


def _stage(rt: Runtime, tab: ModelTable, neff: Neff, compiled: CompiledGraph | None,
           io: tuple[tuple[Binding, ...], tuple[Binding, ...]], start: int, group: int | None) -> Model:
    """One copy of a model on the cores from ``start``: memory accounted, registered in the table."""
    cores = tuple(rt.cores[start:start + neff.num_cores])
    if faults.active is not None: faults.active.hit("load", cores, neff)  # noqa: E701
    model_id = next(tab.ids)
    rt.memory.neff_names[model_id] = neff.name
    model = Model(model_id, neff, start, cores, io[0], io[1], compiled, tab,
                  group=group, timelines=tuple(cs.timeline for cs in cores))
    try:
        _account(rt, model)
    except OutOfDeviceMemory as exc:
        _release_memory(rt, model)
        rt.memory.neff_names.pop(model_id, None)
        rt.log_oom(exc)
        raise _load_failed(NrtStatus.RESOURCE, exc.message, neff.name) from None
    for cs in cores:
        cs.models += 1
    tab.by_id[model_id] = model
    _needs_scratchpad(tab, model, +1)
    tab.generation += 1
    return model


def load_time(rt: Runtime, neff: Neff, file_bytes: int) -> float:
    """Simulated seconds of one nrt_load: fixed staging plus the bytes copied (x1.5 with hash validation)."""
    nbytes = max(file_bytes, neff.code_bytes + neff.constants_bytes)
    cost = LOAD_FIXED_S + nbytes / LOAD_BYTES_PER_S
    return cost * HASH_LOAD_FACTOR if rt.config.validate_hash else cost


def _charge_load(rt: Runtime, copies: list[Model], cost: float) -> None:
    """The copies load one after the other on their cores' timelines; nrt_load returns when the last is done."""
    t = rt.clock.thread_now()
    for m in copies:
        t = reserve_all(m.timelines, t, cost)[1]
        if trace.recorder is not None: trace.recorder.loaded(m, t - cost, t)  # noqa: E701
        m.load_time_s = cost
    rt.clock.wait_until(t)


def instance_count(model: Model) -> int:
    """Copies a load staged (nrt_get_model_instance_count)."""
    return len(model.copies) or 1


def pick_copy(model: Model, first_input=None) -> Model:
    """The copy a call runs on: the one holding ``first_input`` (a device tensor), else the earliest idle."""
    copies = model.copies
    if not copies:
        return model
    core = getattr(first_input, "core", None)
    if core is not None:
        for m in copies:
            if m.cores[0].core.global_id == core.global_id:
                return m
    n = len(copies)
    rr = model.next_copy
    best = min(range(n), key=lambda i: (copies[i].timelines[0].busy_until, (i - rr) % n))
    model.next_copy = (best + 1) % n
    return copies[best]


def unload(rt: Runtime, model: Model) -> None:
    """Free every byte the model (every copy of it) took; a second unload is NRT_INVALID_HANDLE.

    Waits for the model's executions in flight: synchronous ones (they hold its cores' locks) and queued
    async ones. From an async callback it cannot wait for its own queue: the model is unloaded at once for
    every caller and its memory is returned after its last queued request (see async_exec).
    """
    with rt.lock:
        if model.unloaded:
            raise fail(NrtStatus.INVALID_HANDLE, "NRT", "nrt_unload", f"Model {model.id} was already unloaded")
        copies = [m for m in model.copies or (model,) if not m.unloaded]
        for m in copies:
            m.unloaded = True     # from here on executes and submits of this model are NRT_INVALID_HANDLE
    q = rt.async_queue
    for m in copies:
        if q is None or not q.release_after_requests(m, lambda m=m: _release_model(rt, m)):
            _release_model(rt, m)


def _drop(rt: Runtime, model: Model) -> None:
    """Take back a copy staged by a load that failed later (nothing can be running on it yet)."""
    model.unloaded = True
    _release_model(rt, model)


def _release_model(rt: Runtime, model: Model) -> None:
    for cs in model.cores:
        with cs.lock:
            pass  # an execution that started before the unload finishes first
    with rt.lock:
        model.bindings.clear()        # execution's cached bindings: their views and scratch go with the model
        model.hot = None
        if isinstance(model.compiled, CompiledGraph):
            model.compiled.drop_scratch()     # the graph may outlive the model in neff_cache: not its scratch
        tab = table(rt)
        if tab.by_id.pop(model.id, None) is not None:
            _needs_scratchpad(tab, model, -1)
        for cs in model.cores:
            cs.models -= 1
        _release_memory(rt, model)
        rt.memory.neff_names.pop(model.id, None)
        tab.generation += 1
        if model.neff.scratchpad_bytes:
            for cs in model.cores:
                _resize_scratchpad(rt, cs)
    if trace.recorder is not None: trace.recorder.unloaded(model)  # noqa: E701


def unload_all(rt: Runtime) -> None:
    """Unload every model no other thread is unloading (nrt_close, after the async queues drained), as one batch:
    each core's lock waited for once, one pass under ``rt.lock``, every device byte returned in one call and each
    scratchpad resized once (no per-model ledger write, log line or publish)."""
    tab = table(rt)
    with rt.lock:
        models = [m for m in tab.by_id.values() if not m.unloaded]
        for m in models:
            m.unloaded = True
    if not models:
        return
    for cs in {cs for m in models for cs in m.cores}:
        with cs.lock:
            pass  # an execution that started before the unload finishes first
    shared = tab.shared_constants
    with rt.lock:
        freed = []
        scratch_cores = set()
        for m in models:
            m.bindings.clear()
            if tab.by_id.pop(m.id, None) is not None:
                _needs_scratchpad(tab, m, -1)
            for cs in m.cores:
                cs.models -= 1
            freed += m.allocations
            m.allocations.clear()
            for entry in m.shared_entries:
                users = entry["users"]
                if m.id in users:
                    users.discard(m.id)
                    if not users:
                        freed.append(entry["alloc"])
                        shared.pop(entry["key"], None)
            rt.memory.neff_names.pop(m.id, None)
            if m.neff.scratchpad_bytes:
                scratch_cores.update(m.cores)
        rt.memory.free_many(freed)
        tab.generation += 1
        for cs in scratch_cores:
            _resize_scratchpad(rt, cs)
    if trace.recorder is not None:
        for m in models:
            trace.recorder.unloaded(m)


def check_model(rt: Runtime, model: object, function: str) -> Model:
    if not isinstance(model, Model):
        raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid model handle {model!r}")
    if model.unloaded:
        raise fail(NrtStatus.INVALID_HANDLE, "NRT", function, f"Model {model.id} ({model.name}) was unloaded")
    return model


# ---- checks --------------------------------------------------------------------------------------------
def _load_failed(status: NrtStatus, message: str, name: str) -> NrtError:
    """The runtime's closing line of a failed load (the cause, ``message``, was logged before it)."""
    nrtlog.error("NMGR", "kmgr_load_nn_post_metrics", f"Failed to load NN: {name}, err: {int(status)}")
    return NrtError(status, message)


def _check_architecture(rt: Runtime, neff: Neff) -> None:
    machine_arch = rt.machine.generation.name
    if neff.architecture in ("any", machine_arch):
        return
    older = GENERATION_ORDER.get(neff.architecture, 99) < GENERATION_ORDER.get(machine_arch, 0)
    if older and rt.config.allow_legacy_neff:
        nrtlog.warn("NRT", "nrt_load", f"Loading NEFF {neff.name} compiled for arch {neff.architecture} on "
                    f"instance arch {machine_arch} because NEURON_RT_ALLOW_LEGACY_NEFF is set; results may "
                    "mismatch or stall")
        return
    msg = (f"Loading a NEFF compiled for a different arch is not allowed, NEFF arch: {neff.architecture}, "
           f"instance arch: {machine_arch}. Please recompile the model with --target matching this instance.")
    if older:
        msg += " To override, set NEURON_RT_ALLOW_LEGACY_NEFF=1 and restart."
    nrtlog.error("NRT", "nrt_load", msg)
    raise _load_failed(NrtStatus.UNSUPPORTED_NEFF_VERSION, msg, neff.name)


class LegacyDataMismatch:
    """The execution of an inf1 NEFF on a newer NeuronCore: its data layout is read wrongly, the run fails."""

    def __init__(self, neff: Neff, machine_arch: str) -> None:
        self.neff, self.machine_arch = neff, machine_arch

    def run(self, inputs, outputs) -> None:
        for arr in outputs.values():
            arr.view(np.uint8).fill(0xAB)
        msg = (f"data mismatch executing NEFF {self.neff.name}: compiled for arch {self.neff.architecture}, "
               f"incompatible with instance arch {self.machine_arch} (loaded because NEURON_RT_ALLOW_LEGACY_NEFF is "
               "set); recompile the model for this instance")
        nrtlog.error("NMGR", "dlr_infer", f"Inference completed with err: {int(NrtStatus.EXEC_COMPLETED_WITH_ERR)}")
        raise fail(NrtStatus.EXEC_COMPLETED_WITH_ERR, "NRT", "nrt_execute", msg)


def _legacy_gap(rt: Runtime, neff: Neff) -> int:
    """How many NeuronCore generations older than the machine the NEFF is (0: same, or "any")."""
    return _generation_gap(rt.machine, neff)


def _generation_gap(machine: Machine, neff: Neff) -> int:
    if neff.architecture in ("any", machine.generation.name):
        return 0
    return GENERATION_ORDER.get(machine.generation.name, 0) - GENERATION_ORDER.get(neff.architecture, 0)


def _legacy(rt: Runtime, neff: Neff, compiled: CompiledGraph | None):
    """The executable form of a legacy NEFF that is not compatible: a data mismatch (see module docstring)."""
    if _legacy_gap(rt, neff) == 1 and neff.architecture == "v1":
        return LegacyDataMismatch(neff, rt.machine.generation.name)
    return compiled


def _check_lnc(rt: Runtime, neff: Neff) -> None:
    if neff.architecture != rt.machine.generation.name:
        return  # a legacy NEFF of an older generation has no logical-core notion to match
    if neff.lnc_size != rt.machine.lnc:
        msg = (f"LNC mismatch: NEFF {neff.name} was compiled for logical NeuronCore size {neff.lnc_size}, "
               f"the runtime uses LNC={rt.machine.lnc}. Recompile with --lnc={rt.machine.lnc} or set "
               f"NEURON_LOGICAL_NC_CONFIG={neff.lnc_size}")
        nrtlog.error("NRT", "nrt_load", msg)
        raise _load_failed(NrtStatus.INVALID, msg, neff.name)


def _place(rt: Runtime, neff: Neff, vnc: int, vnc_count: int) -> Spot:
    """runtime.placement's answer, or NRT_LOAD_NOT_ENOUGH_NC logged as libnrt does."""
    sizes = rt.config.neuroncore_group_sizes
    group_usage = [0] * len(sizes or ())
    if sizes:
        for m in loaded(rt):
            if m.group is not None:
                group_usage[m.group] += 1
    try:
        return place([cs.models for cs in rt.cores], neff.num_cores, vnc, vnc_count, sizes, group_usage)
    except PlacementError as exc:
        nrtlog.error("TDRV", "db_vtpb_get_mla_and_tpb", f"Could not find VNC id {exc.missing}")
        msg = (f"Failed to stage graph: kelf-0.json: NEFF {neff.name} needs {exc.reason}, this process has "
               f"{rt.visible_count} visible NeuronCore(s)")
        nrtlog.error("NMGR", "stage_kelf_models", msg)
        raise _load_failed(exc.status, msg, neff.name) from None


# ---- preparation ---------------------------------------------------------------------------------------
def _bindings(tensors) -> tuple[Binding, ...]:
    return tuple(Binding(t.name, t.size, numpy_dtype(t.dtype), tuple(t.shape)) for t in tensors)


def _io_bindings(neff: Neff) -> tuple[tuple[Binding, ...], tuple[Binding, ...]]:
    """(inputs, outputs) as execute binds them: derived from the NEFF alone, so shared by its loads."""
    return _bindings(neff.inputs), _bindings(neff.outputs)


def _compile(neff: Neff) -> CompiledGraph | None:
    if neff.graph is None:
        return None
    try:
        return CompiledGraph(neff.graph, neff.weights)
    except ValueError as exc:
        msg = f"NEFF {neff.name} has an invalid graph: {exc}"
        nrtlog.error("NEFF", "neff_parse", msg)
        raise _load_failed(NrtStatus.INVALID, msg, neff.name) from None


def _share(total: int, parts: int) -> int:
    return -(-total // parts) if parts else 0


def _account(rt: Runtime, model: Model) -> None:
    neff = model.neff
    k = len(model.cores)
    code, constants = _share(neff.code_bytes, k), _share(neff.constants_bytes, k)
    for cs in model.cores:
        model.allocations.append(rt.memory.allocate(cs.core, "model_code", code, model.id))
        model.allocations.append(rt.memory.allocate(cs.core, "dma_rings", DMA_RING_BYTES, model.id))
        if constants:
            if rt.config.shared_weights:
                _share_constants(rt, model, cs, constants)
            else:
                model.allocations.append(rt.memory.allocate(cs.core, "constants", constants, model.id))
    if neff.scratchpad_bytes:
        for cs in model.cores:
            _resize_scratchpad(rt, cs, extra=neff.scratchpad_bytes)


def _share_constants(rt: Runtime, model: Model, cs: CoreState, nbytes: int) -> None:
    """One copy of a NEFF's constants per HBM bank, refcounted by the models using it."""
    key = (model.neff.uuid, model.neff.name, cs.core.device, cs.core.hbm_bank)
    shared = table(rt).shared_constants
    entry = shared.get(key)
    if entry is None:
        alloc = rt.memory.allocate(cs.core, "constants", nbytes, model.id)
        entry = shared[key] = {"alloc": alloc, "users": set(), "key": key}
    entry["users"].add(model.id)
    model.shared_entries.append(entry)


def _resize_scratchpad(rt: Runtime, cs: CoreState, extra: int = 0) -> None:
    """The shared scratchpad of a core is the largest need of its models, rounded up to whole pages."""
    need = max([extra, *(size for size, n in table(rt).scratch_needs.get(cs.vnc, {}).items() if n)])
    page = rt.config.scratchpad_page_size_mb << 20   # NEURON_SCRATCHPAD_PAGE_SIZE
    size = _share(need, page) * page
    if cs.scratchpad is None:
        if size:
            cs.scratchpad = rt.memory.allocate(cs.core, "shared_scratchpad", size)
    elif size == 0:
        rt.memory.free(cs.scratchpad)
        cs.scratchpad = None
    elif size != cs.scratchpad.nbytes:
        rt.memory.resize(cs.scratchpad, size, cs.core)


def _needs_scratchpad(tab: ModelTable, model: Model, delta: int) -> None:
    """Count a loaded model's scratchpad need on each of its cores (the largest is found without a scan)."""
    size = model.neff.scratchpad_bytes
    if size:
        for cs in model.cores:
            needs = tab.scratch_needs.setdefault(cs.vnc, {})
            needs[size] = needs.get(size, 0) + delta
            if not needs[size]:
                del needs[size]


def _release_memory(rt: Runtime, model: Model) -> None:
    rt.memory.free_many(model.allocations)
    model.allocations.clear()
    shared = table(rt).shared_constants
    for entry in model.shared_entries:
        if model.id in entry["users"]:
            entry["users"].discard(model.id)
            if not entry["users"]:
                rt.memory.free(entry["alloc"])
                shared.pop(entry["key"], None)


def sharers(model: Model) -> int:
    """How many loaded models read the same shared copy of this model's constants (1 without sharing)."""
    return max((len(e["users"]) for e in model.shared_entries), default=1)


def opaque_outputs(model: Model, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> bool:
    """Run a compiler-made NEFF: its registered reference, or sentinel bytes (returns True for sentinel)."""
    from neuron_sim.runtime.references import SENTINEL_BYTE
    ref = find_reference(model.neff.name, model.neff.uuid)
    if ref is None:
        if not model.warned_sentinel:
            model.warned_sentinel = True
            nrtlog.notice("NRT", "nrt_execute",
                          f"NEFF {model.name} (uuid {model.neff.uuid}) was made by the Neuron compiler and its "
                          "instructions cannot be run by neuron_sim; outputs are filled with 0xAB bytes. Register a "
                          "numpy reference with neuron_sim.register_reference(name_or_uuid, fn)")
        for arr in outputs.values():
            arr.view(np.uint8).fill(SENTINEL_BYTE)
        return True
    try:
        produced = ref(inputs)
        for name, arr in outputs.items():
            if name not in produced:
                raise ValueError(f"it returned no output '{name}' (returned: {', '.join(map(str, produced))})")
            np.copyto(arr, np.asarray(produced[name]).reshape(arr.shape), casting="unsafe")
    except Exception as exc:  # a user's function: any failure becomes the execution's status
        msg = (f"numpy reference registered for NEFF {model.name} failed: {exc}; it must return a dict of arrays "
               f"with the outputs' element counts ({', '.join(f'{b.name} {list(b.shape)}' for b in model.outputs)})")
        raise fail(NrtStatus.FAILURE, "NRT", "nrt_execute", msg) from None
    return False
