"""The Pythonic face: ``with Runtime() as rt: model = rt.load(path); outputs = model(x=array)``.

Every runtime failure raises ``NrtError`` carrying the NRT status and the message (also logged in the
runtime's format); numerical errors raise ``NumericalError`` (a subclass) with the outputs still attached.
A ``Model`` may be called from many threads at once: each call gets its own device tensors. Inputs are
converted to the model's dtypes only when no value changes meaning: integers or floats to a float input
while every finite value stays finite, integers to an integer input while in range; bool, complex, float
to integer and out-of-range values are ``NrtError(NRT_INVALID)`` naming the input.

Explicit placement, as the placement guide's ``neuron_cores_context(start_nc, nc_count)`` and
``multicore_context()``: loads inside the ``with`` block go to the chosen cores whatever the load order, and
replicate to ``floor(nc_count / cores_per_model)`` copies; one ``Model`` spreads its calls over its copies.

A translation of ``neuron_sim.runtime.interface``: this module keeps no runtime state of its own (the placement
contexts are arguments waiting for the next ``load`` of this thread or task).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from neuron_sim.dtypes import dtype_name
from neuron_sim.runtime import interface as rt
from neuron_sim.status import NrtError, NrtStatus

_PLACEMENTS = {"device": rt.Placement.DEVICE, "host": rt.Placement.HOST, "virtual": rt.Placement.VIRTUAL}
_NUM_ERR = NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR    # a global: cheaper than the enum's attribute per call
_MULTICORE = -2      # nc_count of multicore_context: every visible core, resolved at load time
_placement: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("neuron_sim_placement",
                                                                                    default=None)


@contextlib.contextmanager
def neuron_cores_context(start_nc: int, nc_count: int = -1) -> Iterator[None]:
    """Loads in the block start at visible core ``start_nc``; ``nc_count`` > 0 replicates over that many cores."""
    token = _placement.set((start_nc, nc_count))
    try:
        yield
    finally:
        _placement.reset(token)


@contextlib.contextmanager
def multicore_context() -> Iterator[None]:
    """Loads in the block replicate over every visible core (one copy per core for a 1-core model)."""
    token = _placement.set((0, _MULTICORE))
    try:
        yield
    finally:
        _placement.reset(token)


class NumericalError(NrtError):
    """NRT_EXEC_COMPLETED_WITH_NUM_ERR: the execution finished but an output holds NaN; outputs are attached."""

    def __init__(self, message: str, outputs: dict[str, np.ndarray]) -> None:
        super().__init__(NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR, message)
        self.outputs = outputs


class TensorInfo:
    """Name, dtype, shape and byte size of one model input or output."""

    __slots__ = ("name", "dtype", "shape", "size")

    def __init__(self, name: str, dtype: np.dtype, shape: tuple[int, ...], size: int) -> None:
        self.name, self.dtype, self.shape, self.size = name, dtype, shape, size

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {dtype_name(self.dtype)}, {list(self.shape)}, {self.size} B)"


class Tensor:
    """A runtime tensor with numpy in and out."""

    def __init__(self, runtime: "Runtime", handle: rt.Tensor, dtype: np.dtype | None = None,
                 shape: tuple[int, ...] | None = None) -> None:
        self._runtime = runtime
        self.handle = handle
        self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.uint8)
        self.shape = shape if shape is not None else (handle.size // self.dtype.itemsize,)

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def size(self) -> int:
        return self.handle.size

    @property
    def core(self) -> int:
        return self.handle.vnc

    def numpy(self) -> np.ndarray:
        """A copy of the contents as an array of the tensor's dtype and shape."""
        return rt.tensor_array(self.handle, self.dtype, self.shape)

    def write(self, array: Any) -> None:
        """Overwrite the whole tensor; the array's byte size must equal the tensor's."""
        rt.tensor_fill(self.handle, np.ascontiguousarray(array))

    def free(self) -> None:
        rt.tensor_free(self.handle)

    def __repr__(self) -> str:
        return f"<Tensor {self.name!r} {dtype_name(self.dtype) if self.dtype != np.uint8 else 'bytes'} " \
               f"{list(self.shape)} on NC {self.core}>"


class Model:
    """A loaded model: call it with numpy arrays (from any thread), or run it on tensors you allocated."""

    def __init__(self, runtime: "Runtime", handle: rt.Model) -> None:
        self._runtime = runtime
        self.handle = handle
        infos = rt.model_tensor_info(handle)
        self.inputs = {i.name: TensorInfo(i.name, i.np_dtype, i.shape, i.size) for i in infos if i.usage == 0}
        self.outputs = {i.name: TensorInfo(i.name, i.np_dtype, i.shape, i.size) for i in infos if i.usage == 1}

    name = property(lambda self: self.handle.name)
    id = property(lambda self: self.handle.id)
    core = property(lambda self: self.handle.start_vnc, doc="visible index of the model's first core")
    cores = property(lambda self: tuple(cs.vnc for cs in self.handle.cores), doc="visible cores of one copy")
    copies = property(lambda self: tuple(tuple(cs.vnc for cs in m.cores) for m in rt.model_copies(self.handle)),
                      doc="visible cores of every copy (one entry unless the load replicated the model)")
    instance_count = property(lambda self: rt.model_instance_count(self.handle))
    duration_s = property(lambda self: self.handle.duration_s, doc="simulated duration of one execution")

    def __call__(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Execute on numpy inputs (converted as the module docstring says); returns copies of the outputs."""
        status, result = rt.run_arrays(self.handle, arrays)
        if status == _NUM_ERR:
            raise NumericalError(f"model {self.name} completed with numerical errors (NaN in outputs)", result)
        return result

    def run(self, inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> NrtStatus:
        """Execute on tensors you allocated; outputs are written in place. Returns the status."""
        return rt.execute_now(self.handle, _tensor_set(inputs), _tensor_set(outputs))

    def submit(self, inputs: Mapping[str, Any] | None = None, /, *, block: bool = False, **arrays: Any) -> Future:
        """Enqueue one execution and return a Future of its outputs (NrtError on failure): on the legacy async
        queue with NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS > 0, else on the core's COMPUTE execution unit
        (the explicit async API, 64 in flight).

        When the queue's limit of requests of the core are in flight, raises
        ``NrtError(NRT_QUEUE_FULL)`` at once, or with ``block=True`` waits for the oldest to end. Inputs
        go as keywords or as a mapping (for an input named ``block``). ``result()`` also waits in
        simulated time for the request's end.
        """
        arrays = {**(inputs or {}), **arrays}
        future = rt.completion_future()
        clock = future.clock

        def done(status: int, result: dict[str, np.ndarray]) -> None:
            future.end = clock.thread_now()      # the runtime thread is at the request's simulated end
            if status == 0:
                future.set_result(result)
            elif status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR:
                future.set_exception(NumericalError(f"model {self.name} completed with numerical errors", result))
            else:
                future.set_exception(NrtError(status, f"async execution of model {self.name} failed"))

        rt.submit_arrays(self.handle, arrays, done, block=block)
        return future

    def unload(self) -> None:
        rt.unload(self.handle)

    def __repr__(self) -> str:
        return f"<Model {self.name!r} id {self.id} on NC {self.core}, {self.duration_s * 1e6:.1f} µs simulated>"


def _tensor_set(tensors: Any) -> Any:
    """The runtime's tensor set of a name -> Tensor mapping (the interface checks every entry)."""
    if isinstance(tensors, Mapping):
        tensors = {k: getattr(v, "handle", v) for k, v in tensors.items()}
    return rt.tensor_set_of(tensors)


class Runtime:
    """This process's Neuron runtime; ``env`` entries override os.environ for its configuration."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ, **(env or {})) if env else None
        self._handle: Any = None

    def start(self) -> "Runtime":
        self._handle = rt.init(self._env)
        return self

    def close(self) -> None:
        if self._handle is not None:
            rt.close(self._handle)
        self._handle = None

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- introspection --
    @property
    def machine(self):
        return rt.machine("neuron_sim.Runtime")

    @property
    def config(self):
        return rt.config("neuron_sim.Runtime")

    @property
    def cores(self) -> tuple[int, ...]:
        """Machine-wide ids of this process's cores; index i here is visible core i."""
        return rt.global_core_ids("neuron_sim.Runtime")

    def memory_stats(self, core: int = 0) -> tuple[int, int]:
        """(bytes_used, bytes_limit) of visible core ``core``."""
        return rt.memory_stats(core)

    @property
    def clock(self):
        return rt.clock("neuron_sim.Runtime")

    # -- models and tensors --
    def load(self, neff: str | os.PathLike | bytes, core: int = -1, *, start_core: int | None = None,
             core_count: int | None = None) -> Model:
        """Load a NEFF file (or its bytes) at visible core ``start_core`` (alias ``core``; -1: least-used or the
        NeuronCore groups); ``core_count`` > 0 replicates. Unset, both come from the enclosing placement context."""
        context = _placement.get()
        start = start_core if start_core is not None else (core if core != -1 or context is None else context[0])
        count = core_count if core_count is not None else (context[1] if context is not None else -1)
        if count == _MULTICORE:
            count = rt.visible_nc_count()
        if isinstance(neff, (str, os.PathLike)):
            return Model(self, rt.load_file(neff, start, count))
        return Model(self, rt.load(neff, start, count))

    neuron_cores_context = staticmethod(neuron_cores_context)
    multicore_context = staticmethod(multicore_context)

    def tensor(self, array: Any = None, *, shape: tuple[int, ...] | None = None, dtype: Any = None,
               core: int = 0, name: str | None = None, placement: str = "device") -> Tensor:
        """A tensor holding ``array``, or an empty one of ``shape`` and ``dtype``, on visible core ``core``."""
        fn = "nrt_tensor_allocate"
        where = _PLACEMENTS.get(placement) if isinstance(placement, str) else None
        if where is None:
            raise rt.fail(NrtStatus.INVALID, "NRT", fn, f"placement {placement!r}: expected device, host or virtual")
        vnc = core if where is rt.Placement.DEVICE else -1
        if array is not None:
            handle = rt.tensor_of_array(array, where, vnc, name)
            arr = np.asarray(array)
            return Tensor(self, handle, arr.dtype, arr.shape)
        if shape is None or dtype is None:
            raise rt.fail(NrtStatus.INVALID, "NRT", fn, "tensor(): give an array, or shape= and dtype=")
        np_dtype = rt.numpy_dtype_of(dtype, fn)
        try:
            shp = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise rt.fail(NrtStatus.INVALID, "NRT", fn, f"tensor(): shape {shape!r} is not a tuple of integers") from None
        size = int(np.prod(shp, dtype=np.int64)) * np_dtype.itemsize
        return Tensor(self, rt.tensor_allocate(where, vnc, size, name), np_dtype, shp)
