"""``NrtpyModel`` (load a NEFF, call it, benchmark it), ``TensorMetadata`` and ``BenchmarkResult``."""
from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuron_sim.nrtpy import _backend
from neuron_sim.nrtpy.errors import face_error, nrtpy_error
from neuron_sim.nrtpy.session import SESSION
from neuron_sim.nrtpy.tensor import NrtpyTensor, NrtTensor
from neuron_sim.nrtpy.trace import trace_path, write_trace
from neuron_sim.status import NrtStatus

BENCHMARK_MODES = ("device", "host")


@dataclass(frozen=True)
class TensorMetadata:
    """One model input or output: ``shape`` (a list, as nrtpy prints it), ``size`` in bytes, numpy ``dtype``."""

    shape: list[int]
    size: int
    dtype: np.dtype


@dataclass(frozen=True)
class BenchmarkResult:
    """Durations in milliseconds; ``std_dev_ms`` is the population standard deviation."""

    mean_ms: float
    min_ms: float
    max_ms: float
    std_dev_ms: float
    iterations: int
    warmup_iterations: int
    durations_ms: list[float]

    @classmethod
    def of(cls, durations_ms: list[float], warmup_iterations: int) -> "BenchmarkResult":
        d = np.asarray(durations_ms, dtype=np.float64)
        return cls(float(d.mean()), float(d.min()), float(d.max()), float(d.std()), len(durations_ms),
                   warmup_iterations, list(durations_ms))


def _unload(handle: Any, runtime: Any) -> None:
    """GC finaliser: unload the model unless reset() already closed its runtime."""
    if SESSION.live(runtime):
        _backend.unload(handle)


class NrtpyModel:
    """A NEFF loaded on one NeuronCore; unloaded when garbage-collected (or by nrtpy.reset())."""

    def __init__(self, handle: Any, name: str, neff_path: Path, core_id: int, runtime: Any) -> None:
        self.name = name
        self.neff_path = neff_path
        self.core_id = core_id
        self._handle = handle
        self._runtime = runtime
        info = _backend.tensor_info(handle, f"Failed to read the tensor info of model {name}")
        meta = {i.name: TensorMetadata(list(i.shape), i.size, i.np_dtype) for i in info}
        self.input_tensors_info: dict[str, TensorMetadata] = {i.name: meta[i.name] for i in info
                                                              if _backend.is_input(i)}
        self.output_tensors_info: dict[str, TensorMetadata] = {i.name: meta[i.name] for i in info
                                                               if not _backend.is_input(i)}
        weakref.finalize(self, _unload, handle, runtime).atexit = False

    @classmethod
    def load_from_neff(cls, neff_path: str | os.PathLike, name: str | None = None, core_id: int = 0,
                       cc_enabled: bool = False, rank_id: int = 0, world_size: int = 1) -> "NrtpyModel":
        """Load a NEFF file onto ``core_id``; ``name`` defaults to the file stem."""
        if not isinstance(neff_path, (str, os.PathLike)):
            raise TypeError(f"neff_path must be a str or pathlib.Path, got {type(neff_path).__name__}")
        path = Path(neff_path)
        runtime = SESSION.start()
        context = f"Failed to load model {path}"
        try:
            data = _backend.read_neff_file(path) if cc_enabled else _backend.check_readable(path)
        except OSError as exc:
            raise face_error(NrtStatus.FAILURE, "nrt_load", f"{context}: cannot read the NEFF file "
                                                            f"({exc.strerror})") from None
        if cc_enabled:
            handle = _backend.load_collectives(data, core_id, rank_id, world_size, context)
        else:
            handle = _backend.load_file(path, core_id, context)
        return cls(handle, name if name is not None else path.stem, path, core_id, runtime)

    def _model(self, function: str) -> Any:
        SESSION.check(self._runtime, f"NrtpyModel '{self.name}'", function)
        return self._handle

    def _handles(self, tensors: Any, kind: str, expected: Mapping[str, TensorMetadata],
                 function: str) -> dict[str, Any]:
        """Runtime handles by name; the names must be exactly the model's (NRT_INVALID otherwise)."""
        if not isinstance(tensors, Mapping):
            raise TypeError(f"{kind}s must be a dict of name -> NrtpyTensor, got {type(tensors).__name__}")
        if set(tensors) != set(expected):
            raise face_error(NrtStatus.INVALID, "nrt_execute",
                             f"Failed to execute model {self.name}: {kind} names {sorted(tensors)} do not match "
                             f"the model's {kind}s {sorted(expected)}")
        handles = {}
        for key, t in tensors.items():
            if not isinstance(t, NrtpyTensor):
                raise TypeError(f"{kind} '{key}' must be an NrtpyTensor, got {type(t).__name__}")
            handles[key] = t.handle(function)
        return handles

    def _allocate_outputs(self) -> dict[str, NrtpyTensor]:
        """Auto-allocated outputs on the model's core, with the model's (true) dtypes."""
        out = {}
        for key, meta in self.output_tensors_info.items():
            ref = NrtTensor.allocate(meta.size, self.core_id, key)
            out[key] = NrtpyTensor(ref, tuple(meta.shape), meta.dtype, key)
        return out

    def _prepare(self, inputs: Any, outputs: Any, function: str) -> tuple[Any, Any, Any, dict[str, NrtpyTensor]]:
        model = self._model(function)
        in_handles = self._handles(inputs, "input", self.input_tensors_info, function)
        out_tensors = self._allocate_outputs() if outputs is None else outputs
        out_handles = self._handles(out_tensors, "output", self.output_tensors_info, function)
        ins, outs = _backend.tensor_sets(in_handles, out_handles)
        return model, ins, outs, out_tensors

    def __call__(self, inputs: dict[str, NrtpyTensor], outputs: dict[str, NrtpyTensor] | None = None,
                 save_trace: bool = False, ntff_name: str | os.PathLike | None = None
                 ) -> dict[str, NrtpyTensor] | None:
        """Execute once. With ``outputs=None`` the outputs are allocated and returned, else written in place."""
        model, ins, outs, out_tensors = self._prepare(inputs, outputs, "NrtpyModel.__call__")
        try:
            before_host = time.perf_counter()
            _backend.execute(model, ins, outs, f"Failed to execute model {self.name}")
            host_s = time.perf_counter() - before_host
            if save_trace:
                write_trace(trace_path(self.neff_path, ntff_name), model=self.name, neff=self.neff_path,
                            core_id=self.core_id, device_time_s=_backend.execution_device_time_s(model) or 0.0,
                            host_time_s=host_s, inputs=inputs, outputs=out_tensors)
        finally:
            _backend.destroy_sets(ins, outs)
        return out_tensors if outputs is None else None

    def benchmark(self, inputs: dict[str, NrtpyTensor], outputs: dict[str, NrtpyTensor] | None = None,
                  warmup_iter: int = 5, benchmark_iter: int = 5, mode: str = "device") -> BenchmarkResult:
        """Run ``warmup_iter`` unmeasured then ``benchmark_iter`` measured executions.

        ``"device"``: the simulated device time of each execution; ``"host"``: wall time of each call.
        """
        if mode not in BENCHMARK_MODES:
            raise ValueError(f"benchmark mode must be 'device' or 'host', got {mode!r}")
        for arg, value, low in (("warmup_iter", warmup_iter, 0), ("benchmark_iter", benchmark_iter, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{arg} must be >= {low}, got {value}")
        model, ins, outs, out_tensors = self._prepare(inputs, outputs, "NrtpyModel.benchmark")  # kept alive
        context = f"Failed to execute model {self.name}"
        durations_ms = []
        try:
            for _ in range(warmup_iter):
                _backend.execute(model, ins, outs, context)
            for _ in range(benchmark_iter):
                start = time.perf_counter()
                _backend.execute(model, ins, outs, context)
                elapsed = (time.perf_counter() - start if mode == "host"
                           else _backend.execution_device_time_s(model))
                if elapsed is not None:
                    durations_ms.append(elapsed * 1e3)
        finally:
            _backend.destroy_sets(ins, outs)
        if not durations_ms:
            raise nrtpy_error("NrtpyModel.benchmark", f"benchmark of model {self.name}: no device events were "
                              f"captured in {benchmark_iter} executions (asynchronous executions complete "
                              "after the call returns)")
        return BenchmarkResult.of(durations_ms, int(warmup_iter))

    def __repr__(self) -> str:
        return f"NrtpyModel(name={self.name!r}, core_id={self.core_id}, neff={str(self.neff_path)!r})"
