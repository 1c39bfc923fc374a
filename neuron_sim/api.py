"""The Pythonic face: ``with Runtime() as rt: model = rt.load(path); outputs = model(x=array)``.

Every failure raises ``NrtError`` carrying the NRT status and the message (also logged in the runtime's
format). Numerical errors raise ``NumericalError`` (a subclass) with the outputs still attached.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from neuron_sim.dtypes import NrtDtype, dtype_name, nrt_dtype
from neuron_sim.runtime import async_exec, execution, lifecycle, models
from neuron_sim.runtime.core import Runtime as _CoreRuntime, fail
from neuron_sim.runtime.tensors import Placement, Tensor as _Tensor, TensorSet
from neuron_sim.status import NrtError, NrtStatus


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

    def __init__(self, rt: "Runtime", handle: _Tensor, dtype: np.dtype | None = None,
                 shape: tuple[int, ...] | None = None) -> None:
        self._rt = rt
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
        raw = self._rt._core().tensor_read(self.handle, 0, self.handle.size)
        return np.frombuffer(raw, self.dtype).reshape(self.shape)

    def write(self, array: Any) -> None:
        """Overwrite the whole tensor; the array's byte size must equal the tensor's."""
        arr = np.ascontiguousarray(array)
        if arr.nbytes != self.handle.size:
            raise fail(NrtStatus.INVALID, "NRT", "nrt_tensor_write", f"array of {arr.nbytes} bytes does not fit tensor '{self.name}' "
                                              f"of {self.handle.size} bytes")
        self._rt._core().tensor_write(self.handle, arr, 0, arr.nbytes)

    def free(self) -> None:
        self._rt._core().tensor_free(self.handle)

    def __repr__(self) -> str:
        return f"<Tensor {self.name!r} {dtype_name(self.dtype) if self.dtype != np.uint8 else 'bytes'} " \
               f"{list(self.shape)} on NC {self.core}>"


class Model:
    """A loaded model: call it with numpy arrays, or run it on tensors you allocated."""

    def __init__(self, rt: "Runtime", handle: models.Model) -> None:
        self._rt = rt
        self.handle = handle
        self.inputs = {b.name: TensorInfo(b.name, b.dtype, b.shape, b.size) for b in handle.inputs}
        self.outputs = {b.name: TensorInfo(b.name, b.dtype, b.shape, b.size) for b in handle.outputs}
        self._io: tuple[TensorSet, TensorSet] | None = None

    name = property(lambda self: self.handle.name)
    id = property(lambda self: self.handle.id)
    core = property(lambda self: self.handle.start_vnc, doc="visible index of the model's first core")
    cores = property(lambda self: tuple(cs.vnc for cs in self.handle.cores))
    duration_s = property(lambda self: self.handle.duration_s, doc="simulated duration of one execution")

    def _bind_arrays(self, arrays: Mapping[str, Any]) -> tuple[TensorSet, TensorSet]:
        rt = self._rt._core()
        unknown = set(arrays) - set(self.inputs)
        if unknown:
            raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"model {self.name} has no input(s) {sorted(unknown)}; "
                                              f"inputs are {list(self.inputs)}")
        if self._io is None:
            ins, outs = TensorSet(), TensorSet()
            for info in self.inputs.values():
                ins[info.name] = rt.tensor_allocate(0, self.core, info.size, info.name)
            for info in self.outputs.values():
                outs[info.name] = rt.tensor_allocate(0, self.core, info.size, info.name)
            self._io = (ins, outs)
        ins, outs = self._io
        for name, info in self.inputs.items():
            if name not in arrays:
                raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"missing input '{name}' ({dtype_name(info.dtype)} "
                                                  f"{list(info.shape)}) for model {self.name}")
            arr = np.asarray(arrays[name])
            if arr.shape != info.shape:
                raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"input '{name}' has shape {list(arr.shape)}, model {self.name} "
                                                  f"expects {list(info.shape)}")
            if arr.dtype != info.dtype:
                arr = arr.astype(info.dtype)
            ins[name].view(info.dtype, info.shape)[...] = arr
        return ins, outs

    def __call__(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Execute on numpy inputs (converted to the model's dtypes); returns copies of the outputs."""
        rt = self._rt._core()
        ins, outs = self._bind_arrays(arrays)
        status = execution.execute(rt, self.handle, ins, outs)
        result = {name: outs[name].view(info.dtype, info.shape).copy() for name, info in self.outputs.items()}
        if status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR:
            raise NumericalError(f"model {self.name} completed with numerical errors (NaN in outputs)", result)
        return result

    def run(self, inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> NrtStatus:
        """Execute on tensors you allocated; outputs are written in place. Returns the status."""
        ins, outs = TensorSet(), TensorSet()
        ins.update({k: v.handle for k, v in inputs.items()})
        outs.update({k: v.handle for k, v in outputs.items()})
        return execution.execute(self._rt._core(), self.handle, ins, outs)

    def submit(self, inputs: Mapping[str, Any] | None = None, /, *, block: bool = False, **arrays: Any) -> Future:
        """Async mode: enqueue one execution and return a Future of its outputs (NrtError on failure).

        When NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS requests of the core are in flight, raises
        ``NrtError(NRT_QUEUE_FULL)`` at once, or with ``block=True`` waits for the oldest to end. Inputs
        go as keywords or as a mapping (for an input named ``block``). ``result()`` also waits in
        simulated time for the request's end.
        """
        arrays = {**(inputs or {}), **arrays}
        rt = self._rt._core()
        if rt.async_queue is None:
            raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", "async execution is off: set NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS"
                                              " to a queue depth > 0 before the runtime starts")
        ins, outs = TensorSet(), TensorSet()
        allocated = []
        future = async_exec.Completion(rt.clock)
        try:
            for info in self.inputs.values():
                t = ins[info.name] = rt.tensor_allocate(0, self.core, info.size, info.name)
                allocated.append(t)
                arr = np.asarray(arrays[info.name], dtype=info.dtype)
                if arr.shape != info.shape:
                    raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"input '{info.name}' has shape {list(arr.shape)}, model "
                                                      f"{self.name} expects {list(info.shape)}")
                t.view(info.dtype, info.shape)[...] = arr
            for info in self.outputs.values():
                t = outs[info.name] = rt.tensor_allocate(0, self.core, info.size, info.name)
                allocated.append(t)
        except KeyError as exc:
            for t in allocated:
                rt.tensor_free(t)
            raise fail(NrtStatus.INVALID, "NRT", "nrt_execute", f"missing input {exc} for model {self.name}") from None
        except NrtError:
            for t in allocated:
                rt.tensor_free(t)
            raise

        def done(status: int) -> None:
            future.end = rt.clock.thread_now()      # the runtime thread is at the request's simulated end
            result = {n: outs[n].view(i.dtype, i.shape).copy() for n, i in self.outputs.items()}
            for t in allocated:
                rt.tensor_free(t)
            if status == 0:
                future.set_result(result)
            elif status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR:
                future.set_exception(NumericalError(f"model {self.name} completed with numerical errors", result))
            else:
                future.set_exception(NrtError(status, f"async execution of model {self.name} failed"))

        try:
            rt.async_queue.submit(self.handle, ins, outs, on_done=done, block=block)
        except NrtError:
            for t in allocated:
                rt.tensor_free(t)
            raise
        return future

    def unload(self) -> None:
        rt = self._rt._core()
        if self._io is not None:
            for s in self._io:
                for t in s.values():
                    rt.tensor_free(t)
            self._io = None
        models.unload(rt, self.handle)

    def __repr__(self) -> str:
        return f"<Model {self.name!r} id {self.id} on NC {self.core}, {self.duration_s * 1e6:.1f} µs simulated>"


class Runtime:
    """This process's Neuron runtime; ``env`` entries override os.environ for its configuration."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ, **(env or {})) if env else None
        self._rt: _CoreRuntime | None = None

    def start(self) -> "Runtime":
        self._rt = lifecycle.init(self._env)
        return self

    def close(self) -> None:
        if self._rt is not None and lifecycle.peek() is self._rt:
            lifecycle.close()
        self._rt = None

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _core(self) -> _CoreRuntime:
        if self._rt is None or self._rt.closed:
            return lifecycle.current("neuron_sim.Runtime")
        return self._rt

    # -- introspection --
    @property
    def machine(self):
        return self._core().machine

    @property
    def config(self):
        return self._core().config

    @property
    def cores(self) -> tuple[int, ...]:
        """Machine-wide ids of this process's cores; index i here is visible core i."""
        return self._core().global_core_ids()

    def memory_stats(self, core: int = 0) -> tuple[int, int]:
        """(bytes_used, bytes_limit) of visible core ``core``."""
        return self._core().memory_stats(core)

    @property
    def clock(self):
        return self._core().clock

    # -- models and tensors --
    def load(self, neff: str | os.PathLike | bytes, core: int = -1) -> Model:
        """Load a NEFF file (or its bytes) at visible core ``core`` (-1: least-used)."""
        rt = self._core()
        if isinstance(neff, (str, os.PathLike)):
            try:
                data = Path(neff).read_bytes()
            except OSError as exc:
                raise fail(NrtStatus.INVALID, "NRT", "nrt_load", f"Cannot read NEFF {neff}: {exc.strerror}") from None
        else:
            data = neff
        return Model(self, models.load(rt, data, core, source=str(neff) if isinstance(neff, (str, os.PathLike)) else None))

    def tensor(self, array: Any = None, *, shape: tuple[int, ...] | None = None, dtype: Any = None,
               core: int = 0, name: str | None = None, placement: str = "device") -> Tensor:
        """A tensor holding ``array``, or an empty one of ``shape`` and ``dtype``, on visible core ``core``."""
        rt = self._core()
        if array is not None:
            arr = np.ascontiguousarray(array)
            np_dtype, shp = arr.dtype, arr.shape
        else:
            if shape is None or dtype is None:
                raise fail(NrtStatus.INVALID, "NRT", "nrt_tensor_allocate", "tensor(): give an array, or shape= and dtype=")
            np_dtype, shp = np.dtype(_np_dtype(dtype)), tuple(shape)
        size = int(np.prod(shp, dtype=np.int64)) * np_dtype.itemsize
        where = {"device": Placement.DEVICE, "host": Placement.HOST, "virtual": Placement.VIRTUAL}.get(placement)
        if where is None:
            raise fail(NrtStatus.INVALID, "NRT", "nrt_tensor_allocate", f"placement {placement!r}: expected device, host or virtual")
        t = Tensor(self, rt.tensor_allocate(where, core if where is Placement.DEVICE else -1, size, name),
                   np_dtype, shp)
        if array is not None:
            t.write(arr)
        return t


def _np_dtype(dtype: Any) -> np.dtype:
    from neuron_sim.dtypes import numpy_dtype
    if isinstance(dtype, (str, NrtDtype, int)):
        return numpy_dtype(nrt_dtype(dtype))
    return np.dtype(dtype)
