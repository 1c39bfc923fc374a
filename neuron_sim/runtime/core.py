"""The Runtime: one libnrt instance of this process — its configuration, cores, device memory and tensors.

Called through ``neuron_sim.runtime.interface`` (faces never import this module); every failure raises
NrtError with the NRT status and has already been logged in the runtime's wording.

State owned here: the ``Runtime`` (configuration, machine, reservation, clock, ``DeviceMemory``, the
runtime's own microcode allocations, ``tensor_cv``), every ``Tensor``'s contents and ``freed`` flag.
``CoreState`` is created here; its fields belong to the modules that change them: ``lock``,
``busy_until`` and ``stats`` to execution, ``models`` and ``scratchpad`` to models. ``async_queue`` is
set once by async_exec (``ensure_queue``), ``execution_units`` by xu; models keep their own table (``models.table``).
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Mapping

from neuron_sim import nrtlog
from neuron_sim.compute import rounding
from neuron_sim.config import RuntimeConfig, check_cores_in_range, load_config, runtime_version_string
from neuron_sim.nrtlog import fail
from neuron_sim.hardware.model import LogicalCore, Machine
from neuron_sim.hardware.select import select_machine
from neuron_sim.runtime import faults, reset, trace
from neuron_sim.runtime.clock import Timeline, make_clock
from neuron_sim.runtime.memory import DeviceMemory, OutOfDeviceMemory
from neuron_sim.runtime.memory_ledger import ResetFailed
from neuron_sim.runtime.placement import group_reservation, warn_misaligned
from neuron_sim.runtime.reservation import CoresUnavailable, Reservation, default_state_dir, reserve
from neuron_sim.runtime.tensors import FILL_BYTES, Placement, Storage, Tensor
from neuron_sim.status import NrtError, NrtStatus

HOST_TENSOR_LIMIT = 4 << 20      # deprecated HOST placement: DMA-able host memory, at most 4 MB
TENSOR_SIZE_LIMIT = 4 << 30      # nrt_tensor_allocate does not support 4 GB or more (known issue)

# a failed execution's counter by status; every other failure (hardware errors, OOB, ...) is completed_with_err
FAILED_EXECUTION_COUNTERS = {NrtStatus.TIMEOUT: "timed_out", NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR:
                             "completed_with_num_err", NrtStatus.INVALID: "incorrect_input"}


class CoreState:
    """Per logical core of this process: execution lock, simulated timeline, counters."""

    __slots__ = ("core", "vnc", "lock", "timeline", "models", "scratchpad", "stats")

    def __init__(self, core: LogicalCore, vnc: int) -> None:
        self.core = core
        self.vnc = vnc
        self.lock = threading.Lock()
        self.timeline = Timeline(f"nc{vnc}")   # the core's own simulated time (see runtime.clock)
        self.models = 0                  # models placed here (for least-used placement)
        self.scratchpad = None           # Allocation of the shared scratchpad
        self.stats = {"completed": 0, "completed_with_num_err": 0, "timed_out": 0, "incorrect_input": 0,
                      "completed_with_err": 0, "device_time_s": 0.0}

    def count_failure(self, status: NrtStatus) -> None:
        """Count an execution that failed with ``status`` under its neuron-monitor execution_summary counter."""
        self.stats[FAILED_EXECUTION_COUNTERS.get(status, "completed_with_err")] += 1


class Runtime:
    """An initialised runtime: reserved cores renumbered from 0, device memory, loaded models, tensors."""

    def __init__(self, config: RuntimeConfig, machine: Machine, reservation: Reservation,
                 reset_banks: frozenset[tuple[int, int]] = frozenset()) -> None:
        self.config = config
        self.machine = machine
        self.reservation = reservation
        self.clock = make_clock(config.clock)
        # machine-wide through the ledger; NEURON_RT_RESET_CORES clears ``reset_banks`` when it claims its entry
        self.memory = DeviceMemory(machine, reservation.state_dir, reset_banks)
        self.cores = [CoreState(machine.core(g), vnc) for vnc, g in enumerate(reservation.logical_cores)]
        self.fill = FILL_BYTES[config.fill]
        self.lock = threading.RLock()
        self.tensor_cv = threading.Condition()
        self.closed = False
        self._runtime_allocs = []
        try:
            for cs in self.cores:
                mem = machine.generation.microcode_bytes * max(1, len(cs.core.physical_ids))
                self._runtime_allocs.append(self.memory.allocate(cs.core, "runtime", mem))
            if self.memory.ledger is not None:
                self.memory.ledger.claim()   # (done by the first allocation: the ledger mutex is taken once)
        except BaseException:
            self.memory.close()
            raise
        self.async_queue = None          # the AsyncQueue, set by async_exec.ensure_queue at init
        self.execution_units = None      # the nrta_* execution units, set by runtime.xu on first use
        # (total, device) simulated seconds per execution, drained by neuron_sim.runtime.publish
        self.latency_samples: deque = deque(maxlen=4096)
        self.publisher = None            # set by neuron_sim.runtime.publish.attach at init
        self.rounding = _rounding_generator(config, machine, self.cores)   # installed in compute.rounding
        rounding.install(self.rounding)

    # ---- cores -------------------------------------------------------------------------------------
    @property
    def visible_count(self) -> int:
        return len(self.cores)

    def core_state(self, vnc: int, function: str) -> CoreState:
        """The core a process-local index names, or NRT_INVALID naming the accepted range."""
        if isinstance(vnc, bool) or not isinstance(vnc, int) or not 0 <= vnc < len(self.cores):
            raise fail(NrtStatus.INVALID, "NRT", function,
                       f"Invalid NeuronCore index {vnc}: this process has {len(self.cores)} visible "
                       f"NeuronCore(s), valid indices are 0-{len(self.cores) - 1}")
        return self.cores[vnc]

    def global_core_ids(self) -> tuple[int, ...]:
        """Process-local index i → machine-wide logical core id (the renumbering of VISIBLE_CORES)."""
        return tuple(cs.core.global_id for cs in self.cores)

    # ---- tensors -----------------------------------------------------------------------------------
    def tensor_allocate(self, placement: int, vnc: int, size: int, name: str | None) -> Tensor:
        """nrt_tensor_allocate: device bytes are accounted on the core's HBM bank, never allocated."""
        fn = "nrt_tensor_allocate"
        try:
            placement = Placement(placement)
        except ValueError:
            raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid tensor placement {placement}: expected "
                       "0 (NRT_TENSOR_PLACEMENT_DEVICE), 1 (HOST) or 2 (VIRTUAL)") from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid tensor size {size!r}: expected a byte count >= 0")
        if size >= TENSOR_SIZE_LIMIT:
            raise fail(NrtStatus.RESOURCE, "NRT", fn,
                       f"Failed to allocate tensor '{name}' of {size} bytes: tensors of 4 GB or more are not "
                       "supported; split it into smaller tensors")
        label = tensor_name(name, fn) or "tensor"
        if placement is Placement.DEVICE:
            cs = self.core_state(vnc, fn)
            if faults.active is not None: faults.active.hit("tensor_allocate", (cs,))  # noqa: E701
            try:
                alloc = self.memory.allocate(cs.core, "tensors", size)
            except OutOfDeviceMemory as exc:
                self.log_oom(exc)
                raise fail(NrtStatus.RESOURCE, "NRT", fn,
                           f"nrt_tensor_allocate status=4 message=\"Allocation Failure\" tensor '{label}' "
                           f"({size} bytes) on NC {vnc}") from None
            storage = Storage(size, self.fill, alloc, self.memory)
            return Tensor(label, placement, cs.core, vnc, size, storage)
        if placement is Placement.HOST and size > HOST_TENSOR_LIMIT:
            raise fail(NrtStatus.RESOURCE, "NRT", fn,
                       f"HOST placement is limited to 4 MB of DMA-able host memory, tensor '{label}' asks "
                       f"{size} bytes; use NRT_TENSOR_PLACEMENT_VIRTUAL or DEVICE")
        return Tensor(label, placement, None, -1, size, Storage(size, self.fill))

    def tensor_allocate_empty(self, name: str | None) -> Tensor:
        return Tensor(tensor_name(name, "nrt_tensor_allocate_empty") or "tensor", Placement.VIRTUAL, None, -1, 0, None)

    def tensor_free(self, t: Tensor) -> None:
        """Free a tensor; slices keep shared storage alive until the last one is freed."""
        if t.freed:
            return
        self.wait_idle(t)
        t.free()

    def check_tensor(self, t: object, function: str) -> Tensor:
        if not isinstance(t, Tensor):
            raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid tensor handle {t!r}")
        if t.freed:
            raise fail(NrtStatus.INVALID_HANDLE, "NRT", function, f"Tensor '{t.name}' was already freed")
        return t

    def check_range(self, t: Tensor, offset: int, size: int, function: str) -> None:
        if (isinstance(offset, bool) or isinstance(size, bool) or not isinstance(offset, int)
                or not isinstance(size, int) or offset < 0 or size < 0 or offset + size > t.size):
            raise fail(NrtStatus.INVALID, "NRT", function,
                       f"Out of bounds access to tensor '{t.name}': offset {offset} + size {size} exceeds its "
                       f"{t.size} bytes; nothing was copied")

    def tensor_write(self, t: Tensor, data, offset: int, size: int) -> None:
        """Copy ``size`` bytes of ``data`` into the tensor at ``offset`` (waits for async users of it)."""
        fn = "nrt_tensor_write"
        self.check_tensor(t, fn)
        self.check_range(t, offset, size, fn)
        src = as_bytes(data, fn)
        if src.nbytes < size:
            raise fail(NrtStatus.INVALID, "NRT", fn,
                       f"Buffer of {src.nbytes} bytes is smaller than the {size} bytes to write to '{t.name}'")
        self.wait_idle(t)
        t.bytes_view()[offset:offset + size] = src[:size]
        if trace.recorder is not None: trace.recorder.tensor_io("nrt_tensor_write", t, size)  # noqa: E701

    def tensor_read(self, t: Tensor, offset: int, size: int, out=None):
        """Copy ``size`` bytes from the tensor at ``offset``; into ``out`` if given, else a new bytearray."""
        fn = "nrt_tensor_read"
        self.check_tensor(t, fn)
        self.check_range(t, offset, size, fn)
        self.wait_idle(t)
        if trace.recorder is not None: trace.recorder.tensor_io("nrt_tensor_read", t, size)  # noqa: E701
        if out is None:
            return bytearray(t.bytes_view()[offset:offset + size])
        dst = as_bytes(out, fn, writable=True)
        if dst.nbytes < size:
            raise fail(NrtStatus.INVALID, "NRT", fn,
                       f"Buffer of {dst.nbytes} bytes is smaller than the {size} bytes to read from '{t.name}'")
        dst[:size] = t.bytes_view()[offset:offset + size]
        return out

    def tensor_copy(self, src: Tensor, src_off: int, dst: Tensor, dst_off: int, size: int) -> None:
        """Device-to-device copies need both tensors on the same NeuronCore."""
        fn = "nrt_tensor_copy"
        self.check_tensor(src, fn)
        self.check_tensor(dst, fn)
        self.check_range(src, src_off, size, fn)
        self.check_range(dst, dst_off, size, fn)
        if (src.placement is Placement.DEVICE and dst.placement is Placement.DEVICE
                and src.core.global_id != dst.core.global_id):
            raise fail(NrtStatus.INVALID, "NRT", fn,
                       f"Device to device copy from '{src.name}' (NC {src.vnc}) to '{dst.name}' (NC {dst.vnc}) "
                       "is only supported between tensors on the same NeuronCore")
        self.wait_idle(src)
        self.wait_idle(dst)
        dst.bytes_view()[dst_off:dst_off + size] = src.bytes_view()[src_off:src_off + size]

    def tensor_memset(self, t: Tensor, offset: int, value: int, size: int) -> None:
        fn = "nrt_tensor_memset"
        self.check_tensor(t, fn)
        self.check_range(t, offset, size, fn)
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(NrtStatus.INVALID, "NRT", fn, f"Invalid memset value {value!r}: expected an integer byte value")
        self.wait_idle(t)
        t.bytes_view()[offset:offset + size] = value & 0xFF

    def tensor_slice(self, src: Tensor, offset: int, size: int, name: str | None) -> Tensor:
        """A view sharing ``src``'s storage (refcounted: it outlives a freed source)."""
        fn = "nrt_tensor_allocate_slice"
        self.check_tensor(src, fn)
        self.check_range(src, offset, size, fn)
        if src.storage is None:
            raise fail(NrtStatus.INVALID, "NRT", fn, f"Tensor '{src.name}' has no storage to slice")
        src.storage.retain()
        return Tensor(tensor_name(name, fn) or f"{src.name}[slice]", src.placement, src.core, src.vnc, size, src.storage,
                      src.offset + offset)

    def tensor_attach_buffer(self, t: Tensor, buffer, size: int) -> None:
        """Free owned storage and use caller memory (the caller keeps owning it); placement becomes VIRTUAL."""
        fn = "nrt_tensor_attach_buffer"
        self.check_tensor(t, fn)
        mem = as_bytes(buffer, fn, writable=True)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > mem.nbytes:
            raise fail(NrtStatus.INVALID, "NRT", fn,
                       f"Invalid size {size!r} for a buffer of {mem.nbytes} bytes attached to '{t.name}'")
        self.wait_idle(t)
        if t.storage is not None:
            t.storage.release()
        t.storage = Storage(size, 0, buffer=mem[:size])
        t.size, t.offset, t.placement, t.core, t.vnc = size, 0, Placement.VIRTUAL, None, -1
        t.drop_views()

    def wait_completions(self, t: Tensor, expected: int, timeout_s: float | None, function: str) -> None:
        """Block until the tensor's output completion counter reaches ``expected``; NRT_TIMEOUT after ``timeout_s``.

        The timeout is simulated time, as for every wait (wall time on the real clock): the counter reaches
        ``expected`` at the simulated end of the request that brings it there; the caller's time moves to that
        end, or to its deadline when that end is later or no accepted request can reach ``expected``.
        """
        if self.clock.kind == "real":
            with self.tensor_cv:
                if self.tensor_cv.wait_for(lambda: t.completions >= expected, timeout=timeout_s):
                    return
            raise self._completion_timeout(t, expected, function)
        deadline = float("inf") if timeout_s is None else self.clock.thread_now() + timeout_s
        if expected <= 0:
            return
        with self.tensor_cv:
            ends = t.completion_ends
            while len(ends) < expected - t.completion_base and deadline == float("inf"):
                self.tensor_cv.wait()      # no timeout: wait for requests another thread has yet to submit
            index = expected - t.completion_base
            when = t.completion_floor if index <= 0 else ends[index - 1] if len(ends) >= index else None
            if when is not None and when <= deadline:
                self.clock.wait_until(when)
                self.tensor_cv.wait_for(lambda: t.completions >= expected)   # the runtime thread catches up
                return
        self.clock.wait_until(deadline)
        raise self._completion_timeout(t, expected, function)

    def reset_completions(self, t: Tensor) -> None:
        """Counter back to 0; requests still running count from 0 again (their ends are kept)."""
        with self.tensor_cv:
            del t.completion_ends[:t.completions - t.completion_base]
            t.completions = t.completion_base = 0

    @staticmethod
    def _completion_timeout(t: Tensor, expected: int, function: str) -> NrtError:
        return fail(NrtStatus.TIMEOUT, "NRT", function,
                    f"Tensor '{t.name}' completion counter {t.completions} did not reach {expected}")

    def wait_idle(self, t: Tensor) -> None:
        """Block while a pending async request uses the tensor (no stale reads, no torn writes).

        The calling thread also waits in simulated time until the last request using the tensor ends.
        """
        if t.pending:
            with self.tensor_cv:
                while t.pending:
                    self.tensor_cv.wait()
        if t.ready_at:
            self.clock.wait_until(t.ready_at)

    # ---- memory ------------------------------------------------------------------------------------
    def log_oom(self, exc: OutOfDeviceMemory) -> None:
        for module, function, text in exc.log_lines:
            nrtlog.error(module, function, text)

    def memory_stats(self, vnc: int) -> tuple[int, int]:
        """(bytes_used, bytes_limit) of a visible core."""
        cs = self.core_state(vnc, "nrt_get_vnc_memory_stats")
        return self.memory.core_used(cs.core), self.memory.core_limit(cs.core)

    # ---- close -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Return the runtime's own bytes and release the cores (lifecycle.close drained and unloaded first)."""
        if self.closed:
            return
        if self.publisher is not None:
            self.publisher.close()
        if rounding.generator is self.rounding:
            rounding.install(None)
        self.memory.close()              # first: the ledger entry goes as a whole, no shrink written before
        for a in self._runtime_allocs:
            self.memory.free(a)
        self.closed = True
        self.reservation.release()


def _rounding_generator(config: RuntimeConfig, machine: Machine, cores: list[CoreState]):
    """The process's stochastic-rounding generator (None: round to nearest even), as the device cores are told.

    Seeded with NEURON_RT_STOCHASTIC_ROUNDING_SEED; on inf1 (NeuronCore-v1) the seed has no effect
    (runtime-semantics §4), so the generator is seeded from the OS.
    """
    import numpy as np
    v1 = machine.generation.name == "v1"
    if nrtlog.enabled("INFO", "TDRV") and not v1:
        for cs in cores:
            nrtlog.info("TDRV", "tdrv_init_one_mla_phase2", f"Configuring stochastic rounding seed for device: "
                        f"{cs.core.device}, nc {cs.core.local_id}. seed: {config.stochastic_rounding_seed}")
    if not config.stochastic_rounding:
        return None
    return np.random.Generator(np.random.PCG64(None if v1 else config.stochastic_rounding_seed))


def tensor_name(name: object, function: str) -> str | None:
    """A tensor name as given (None or a string), else NRT_INVALID."""
    if name is None or isinstance(name, str):
        return name
    raise fail(NrtStatus.INVALID, "NRT", function, f"Invalid tensor name {name!r}: expected None or a string")


def as_bytes(data, function: str, writable: bool = False):
    """A flat uint8 view of any buffer-protocol object (numpy array, bytes, bytearray, memoryview)."""
    import numpy as np
    try:
        if isinstance(data, np.ndarray):
            arr = data if data.flags.c_contiguous else (None if writable else np.ascontiguousarray(data))
            if arr is None:
                raise ValueError("buffer is not C-contiguous")
            if writable and not arr.flags.writeable:
                raise ValueError("buffer is read-only")
            return arr.reshape(-1).view(np.uint8)
        mv = memoryview(data)
        if writable and mv.readonly:
            raise ValueError("buffer is read-only")
        return np.frombuffer(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv, np.uint8)
    except (TypeError, ValueError) as exc:
        raise fail(NrtStatus.INVALID, "NRT", function,
                   f"Invalid buffer {type(data).__name__}: {exc}; expected a contiguous "
                   f"{'writable ' if writable else ''}bytes-like object or numpy array") from None


def visible_count_for(config: RuntimeConfig, machine: Machine, function: str) -> int:
    """How many cores nrt_init would give: NRT_INVALID / NRT_RESOURCE exactly where nrt_init fails."""
    try:
        check_cores_in_range(config, machine.total_cores)
    except NrtError as exc:
        raise fail(exc.status, "NRT", function, exc.message) from None
    num_cores, refused = group_reservation(config.neuroncore_group_sizes, config.visible_cores, config.num_cores,
                                           machine.total_cores)
    if refused is not None:
        raise fail(NrtStatus.INVALID, "NRT", function, refused)
    if config.visible_cores is not None:
        return len(config.visible_cores)
    if num_cores > machine.total_cores:
        asked = (f"NEURON_RT_NUM_CORES={num_cores}" if config.num_cores
                 else f"NEURONCORE_GROUP_SIZES (sum {num_cores})")
        raise fail(NrtStatus.RESOURCE, "NRT", function,
                   f"Logical Neuron Core(s) not available - Requested:{num_cores} "
                   f"Available:{machine.total_cores} Logical Core size {machine.lnc}: {asked} "
                   f"is more than the {machine.total_cores} NeuronCores of {machine.instance_type}")
    return num_cores or machine.total_cores


def read_config(environ: Mapping[str, str] | None, function: str) -> RuntimeConfig:
    """Every NEURON_RT_*/NEURON_SIM_* variable parsed; a bad one is logged (default log settings) and raised."""
    try:
        return load_config(os.environ if environ is None else environ)
    except NrtError as exc:
        nrtlog.configure(None)
        raise fail(exc.status, "NRT", function, exc.message) from None


def build_machine(config: RuntimeConfig, function: str) -> Machine:
    """The simulated machine the configuration names (catalog instance type or topology file)."""
    try:
        return select_machine(config.instance_type, config.topology_file, config.logical_nc_config)
    except ValueError as exc:
        raise fail(NrtStatus.INVALID, "NRT", function, str(exc)) from None


def preview(environ: Mapping[str, str] | None, function: str) -> tuple[RuntimeConfig, Machine]:
    """The configuration and machine nrt_init would use, without reserving anything (counts before init)."""
    config = read_config(environ, function)
    return config, build_machine(config, function)


def start_runtime(environ: Mapping[str, str] | None = None) -> Runtime:
    """nrt_init's work: parse the configuration, build the machine, reserve the cores, log as libnrt does."""
    fn = "nrt_init"
    config = read_config(environ, fn)
    nrtlog.configure(config)
    nrtlog.log_config_warnings(config)
    machine = build_machine(config, fn)
    if not machine.devices:
        raise fail(NrtStatus.FAILURE, "TDRV", "tdrv_get_dev_info",
                   f"No neuron device available (the simulated machine {machine.instance_type} has no device)")
    try:
        check_cores_in_range(config, machine.total_cores)
    except NrtError as exc:
        raise fail(exc.status, "NRT", fn, exc.message) from None
    version = runtime_version_string(config)
    nrtlog.info("NRT", fn, f"Neuron Runtime {version} built on neuron_sim")
    nrtlog.info("NRT", "nrt_allocate_neuron_cores",
                f"Instance info:: device count:{len(machine.devices)} cores per device:"
                f"{machine.cores_per_device} architecture:{machine.family}")
    visible = config.visible_cores
    visible_count_for(config, machine, "nrt_allocate_neuron_cores")
    try:
        state_dir = default_state_dir(machine, {"NEURON_SIM_STATE_DIR": config.state_dir} if config.state_dir else {})
        num_cores = group_reservation(config.neuroncore_group_sizes, visible, config.num_cores,
                                      machine.total_cores)[0]
        reservation = reserve(state_dir, machine, visible=visible, num_cores=num_cores,
                              runtime_version=version)
    except CoresUnavailable as exc:
        error = fail(exc.status, "NRT", "nrt_allocate_neuron_cores", exc.message)
        for line in exc.lines:
            nrtlog.error("NRT", "nrt_allocate_neuron_cores", line)
        raise error from None
    except NrtError as exc:                       # state directory refused or unusable: say why and what to do
        raise fail(exc.status, "NRT", "nrt_allocate_neuron_cores", exc.message) from None
    except OSError as exc:
        raise fail(NrtStatus.FAILURE, "NRT", "nrt_allocate_neuron_cores",
                   f"Cannot use the state directory (NEURON_SIM_STATE_DIR): {exc}") from None
    try:
        if not config.reset_cores:
            reset.warn_leftovers(reservation.state_dir, machine, reservation.logical_cores)
    except OSError as exc:
        reservation.release()
        raise fail(NrtStatus.FAILURE, "NRT", fn, f"Cannot reset the NeuronCores' state in the state directory "
                   f"(NEURON_SIM_STATE_DIR): {exc}") from None
    try:
        rt = Runtime(config, machine, reservation, reset.banks(machine, reservation) if config.reset_cores
                     else frozenset())
    except ResetFailed as exc:
        reservation.release()
        raise fail(NrtStatus.FAILURE, "NRT", fn, exc.message) from None
    except NrtError as exc:                       # out of device memory, or the memory ledger is unusable
        reservation.release()
        raise fail(NrtStatus.RESOURCE, "NRT", fn, exc.message) from None
    if config.reset_cores:
        reset.report(rt)
    if nrtlog.enabled("INFO", "NRT"):
        nrtlog.info("NRT", fn, f"Visible cores: {', '.join(str(c) for c in rt.global_core_ids())}, "
                    f"LNC: {machine.lnc}")
    if config.reset_cores:
        reset.charge(rt)
    warn_misaligned(rt.global_core_ids()[0], rt.visible_count)
    return rt
