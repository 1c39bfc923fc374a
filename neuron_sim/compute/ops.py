"""numpy kernels of the graph op set, prepared once per op so that a run costs a few numpy calls per op.

Numerics (where the Neuron documentation is silent, chosen to match what the engines plausibly do):
- float32 (and fp32r) ops compute in float32 with numpy, in the order a plain numpy reference would use.
- bfloat16, float16 and fp8 inputs are widened to float32, computed in float32 (the engines accumulate in fp32) and
  the result is rounded once to the result dtype (round to nearest even).
- integer arithmetic wraps modulo 2**bits (numpy semantics); integer matmul and sums wrap the same way.
- gelu (approximate="none") evaluates erf through a Chebyshev approximation of erfc in float64 (relative error
  below 1.2e-7, i.e. within about one float32 ulp); "tanh" uses the usual tanh formula in float32.
- sigmoid uses the overflow-free form exp(-|x|) / (1 + exp(-|x|)) on the negative side; silu = x * sigmoid(x).
- ``cast``: float -> float rounds to nearest even, overflow gives inf where the target has inf, and saturates to
  +-448 for float8_e4m3 (which has no inf; the saturating "satfinite" conversion, NaN stays NaN);
  float -> int truncates toward zero, saturates at the integer range and maps NaN to 0;
  int -> int saturates (a cast never wraps); int -> float rounds to nearest.
- With NEURON_RT_STOCHASTIC_ROUNDING_EN the fp32 -> bf16/fp16/fp8 roundings (``cast`` and the low-precision ops'
  result) are stochastic instead (compute.rounding).
- ``gather`` is an indirect load: an index outside [0, data.shape[axis]) (negative ones included; the DMA engine
  takes them as unsigned) raises ``OutOfBoundsAccess``, which the runtime reports as NRT_EXEC_OOB.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from neuron_sim.compute import rounding
from neuron_sim.compute.graph import TensorSpec
from neuron_sim.compute.shapes import (
    BINARY,
    infer_op,
    normalize_axes,
    reshape_target,
    slice_bounds,
)
from neuron_sim.dtypes import dtype_name, numpy_dtype

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
_E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
_E4M3_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)
_LOWP = frozenset(
    np.dtype(t) for t in (ml_dtypes.bfloat16, np.float16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2,
                          ml_dtypes.float8_e3m4)
)
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_C = math.sqrt(2.0 / math.pi)

Fn = Callable[..., np.ndarray]


class OutOfBoundsAccess(Exception):
    """An indirect memory access (gather) outside its source tensor: the device fault behind NRT_EXEC_OOB."""


def is_float(dt: np.dtype) -> bool:
    """True for float32/float64 and the ml_dtypes / float16 low-precision floats."""
    return dt in _LOWP or np.issubdtype(dt, np.floating)


def cast_array(x: np.ndarray, dtype: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Convert ``x`` to ``dtype`` with the saturating rules in the module docstring (into ``out`` when given)."""
    dst = dtype if isinstance(dtype, np.dtype) else numpy_dtype(dtype)
    if out is None:
        out = np.empty(x.shape, dst)
    with np.errstate(all="ignore"):
        return _cast_into(x, dst, out)


def _cast_into(x: np.ndarray, dst: np.dtype, out: np.ndarray) -> np.ndarray:
    src = x.dtype
    if is_float(dst):
        if dst == _E4M3:
            x = x.astype(F32 if src in _LOWP or src == F32 else F64)
            x = np.clip(x, -_E4M3_MAX, _E4M3_MAX, out=x)       # NaN passes through np.clip
        elif dst in _LOWP and src in _LOWP:
            x = x.astype(F32)                                   # exact widening, then one rounding
        elif dst in _LOWP and not is_float(src):
            x = x.astype(F64)
        if rounding.generator is not None and dst in _LOWP and x.dtype == F32:
            return rounding.stochastic_round_into(x, dst, out, rounding.generator)
        np.copyto(out, x, casting="unsafe")
        return out
    info = np.iinfo(dst)
    if is_float(src):
        v = x.astype(F64)
        hi = v >= float(info.max)
        lo = v <= float(info.min)
        special = hi | lo | np.isnan(v)
        np.copyto(out, np.where(special, 0.0, v), casting="unsafe")  # float -> int truncates toward zero
        out[hi] = info.max
        out[lo] = info.min
        return out
    sinfo = np.iinfo(src)
    lo_b, hi_b = max(info.min, sinfo.min), min(info.max, sinfo.max)
    if lo_b > sinfo.min or hi_b < sinfo.max:
        x = np.clip(x, src.type(lo_b), src.type(hi_b))
    np.copyto(out, x, casting="unsafe")
    return out


@dataclass(frozen=True)
class Kernel:
    """A prepared op: ``bind(out)`` returns ``fn(*inputs) -> result`` that writes into ``out`` (None for views)."""

    kind: str
    result: TensorSpec
    needs_buffer: bool          # False: the result is a view of (or a fresh array from) the input; pass out=None
    bind: Callable[[np.ndarray | None], Fn]
    widens: bool = False        # computes in float32 from low-precision inputs: a float32 input is taken as is
    # direct(args, out) -> a no-argument call of one numpy function on fixed arrays (no Python frame per run)
    direct: Callable[[Sequence[np.ndarray], np.ndarray], Callable[[], Any]] | None = None


_DIRECT_UFUNCS = {"matmul": np.matmul, "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                  "exp": np.exp, "tanh": np.tanh}


def _direct_form(kind: str) -> Callable[[Sequence[np.ndarray], np.ndarray], Callable[[], Any]] | None:
    """The one-numpy-call form of the simplest native ops, bound to fixed input and output arrays."""
    uf = _DIRECT_UFUNCS.get(kind)
    if uf is not None:
        return lambda args, o: functools.partial(uf, *args, o)       # out positional: no keyword dict per call
    if kind == "relu":
        return lambda args, o: functools.partial(np.maximum, *args, o.dtype.type(0), out=o)   # (positional is slower here)
    return None


# ---- float32 / native kernels: each maker returns bind(out) -> fn -------------------------------------------------

def _sigmoid_into(x: np.ndarray, o: np.ndarray) -> np.ndarray:
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)                       # e = exp(-|x|) in (0, 1]
    d = e + 1
    np.divide(np.where(x >= 0, 1, e).astype(o.dtype, copy=False), d, out=o)
    return o


def _erfc64(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -0.82215223 + t * 0.17087277
    for c in (1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly = c + t * poly
    ans = t * np.exp(-z * z - 1.26551223 + t * poly)
    return np.where(x >= 0, ans, 2.0 - ans)


def gelu_erf_reference(x: np.ndarray) -> np.ndarray:
    """gelu(x) = x * Phi(x) in float64 via the erfc approximation (used by the kernel and exported for checks)."""
    v = x.astype(F64)
    return 0.5 * v * _erfc64(-v * _SQRT1_2)


def _unary_maker(kind: str, attrs: Mapping[str, Any]) -> Callable[[np.ndarray], Fn]:
    if kind == "relu":
        def bind(o: np.ndarray) -> Fn:
            zero = o.dtype.type(0)
            return lambda x: np.maximum(x, zero, out=o)
    elif kind == "exp":
        def bind(o: np.ndarray) -> Fn:
            return lambda x: np.exp(x, out=o)
    elif kind == "tanh":
        def bind(o: np.ndarray) -> Fn:
            return lambda x: np.tanh(x, out=o)
    elif kind == "sigmoid":
        def bind(o: np.ndarray) -> Fn:
            return lambda x: _sigmoid_into(x, o)
    elif kind == "silu":
        def bind(o: np.ndarray) -> Fn:
            def silu(x: np.ndarray) -> np.ndarray:
                _sigmoid_into(x, o)
                return np.multiply(x, o, out=o)
            return silu
    elif attrs.get("approximate", "none") == "tanh":
        def bind(o: np.ndarray) -> Fn:
            def gelu_tanh(x: np.ndarray) -> np.ndarray:
                np.multiply(x, x, out=o)
                np.multiply(o, x, out=o)
                np.multiply(o, o.dtype.type(0.044715), out=o)
                np.add(o, x, out=o)
                np.multiply(o, o.dtype.type(_GELU_TANH_C), out=o)
                np.tanh(o, out=o)
                np.add(o, o.dtype.type(1), out=o)
                np.multiply(o, x, out=o)
                return np.multiply(o, o.dtype.type(0.5), out=o)
            return gelu_tanh
    else:
        def bind(o: np.ndarray) -> Fn:
            def gelu(x: np.ndarray) -> np.ndarray:
                np.copyto(o, gelu_erf_reference(x), casting="same_kind")
                return o
            return gelu
    return bind


def _param_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    return tuple(size if i == axis else 1 for i in range(ndim))


def _make_native(kind: str, specs: Sequence[TensorSpec], attrs: Mapping[str, Any], res: TensorSpec) -> Callable:
    """bind(out) -> fn for ops computed in the inputs' own dtype (float32 or integers)."""
    ndim = len(specs[0].shape)
    if kind == "matmul":
        return lambda o: (lambda a, b: np.matmul(a, b, out=o))
    if kind in BINARY:
        uf = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[kind]
        return lambda o: (lambda a, b: uf(a, b, out=o))
    if kind in ("relu", "gelu", "silu", "tanh", "sigmoid", "exp"):
        return _unary_maker(kind, attrs)
    if kind == "softmax":
        ax = int(attrs.get("axis", -1)) % ndim

        def bind_softmax(o: np.ndarray) -> Fn:
            def softmax(x: np.ndarray) -> np.ndarray:
                np.subtract(x, np.max(x, axis=ax, keepdims=True), out=o)
                np.exp(o, out=o)
                return np.divide(o, np.sum(o, axis=ax, keepdims=True), out=o)
            return softmax
        return bind_softmax
    if kind in ("layernorm", "rmsnorm"):
        ax = int(attrs.get("axis", -1)) % ndim
        eps_value = float(attrs.get("eps", 1e-5 if kind == "layernorm" else 1e-6))
        pshape = _param_shape(ndim, ax, specs[0].shape[ax])
        nparams = len(specs) - 1

        def bind_norm(o: np.ndarray) -> Fn:
            eps = o.dtype.type(eps_value)

            def norm(x: np.ndarray, *params: np.ndarray) -> np.ndarray:
                if kind == "layernorm":
                    np.subtract(x, np.mean(x, axis=ax, keepdims=True), out=o)
                    var = np.mean(np.square(o), axis=ax, keepdims=True)
                else:
                    np.copyto(o, x)
                    var = np.mean(np.square(x), axis=ax, keepdims=True)
                np.add(var, eps, out=var)
                np.sqrt(var, out=var)
                np.divide(o, var, out=o)
                if nparams >= 1:
                    np.multiply(o, params[0].reshape(pshape), out=o)
                if nparams >= 2:
                    np.add(o, params[1].reshape(pshape), out=o)
                return o
            return norm
        return bind_norm
    if kind == "transpose":
        perm = tuple(attrs["perm"]) if attrs.get("perm") is not None else None
        return lambda o: (lambda x: np.transpose(x, perm))
    if kind == "reshape":
        target = reshape_target(kind, specs[0].shape, attrs["shape"])
        return lambda o: (lambda x: np.reshape(x, target))
    if kind == "slice":
        sl = slice_bounds(kind, specs[0].shape, attrs)
        return lambda o: (lambda x: x[sl])
    if kind == "concat":
        ax = int(attrs.get("axis", 0)) % ndim
        return lambda o: (lambda *xs: np.concatenate(xs, axis=ax, out=o))
    if kind in ("reduce_sum", "reduce_mean", "reduce_max"):
        axes = normalize_axes(kind, attrs.get("axes"), ndim)
        keep = bool(attrs.get("keepdims", False))
        red = {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max}[kind]
        if kind == "reduce_max":
            return lambda o: (lambda x: red(x, axis=axes, keepdims=keep, out=o))
        return lambda o: (lambda x: red(x, axis=axes, keepdims=keep, dtype=o.dtype, out=o))
    if kind == "cast":
        dst = numpy_dtype(res.dtype)
        return lambda o: (lambda x: _cast_into(x, dst, o))
    if kind == "gather":
        return _gather_maker(int(attrs.get("axis", 0)) % ndim)
    raise ValueError(f"unknown op kind {kind!r}")


def _gather_maker(axis: int) -> Callable[[np.ndarray], Fn]:
    def bind(o: np.ndarray) -> Fn:
        def gather(data: np.ndarray, indices: np.ndarray) -> np.ndarray:
            limit = data.shape[axis]
            if indices.size and (indices.min() < 0 or indices.max() >= limit):
                bad = indices[(indices < 0) | (indices >= limit)].flat[0]
                raise OutOfBoundsAccess(f"gather index {int(bad)} is outside [0, {limit}) on axis {axis} of a "
                                        f"{list(data.shape)} tensor")
            return np.take(data, indices, axis=axis, out=o)
        return gather
    return bind


def make_kernel(kind: str, inputs: Sequence[TensorSpec], attrs: Mapping[str, Any],
                result: TensorSpec | None = None) -> Kernel:
    """Validate (ValueError as infer_op) and prepare one op; low-precision float ops are wrapped to compute in fp32.
    ``result``: the op's spec when infer_op already gave it for these very inputs (no second inference)."""
    res = infer_op(kind, inputs, attrs) if result is None else result
    in_dt = numpy_dtype(inputs[0].dtype)
    out_dt = numpy_dtype(res.dtype)
    if kind in ("transpose", "reshape", "slice"):
        return Kernel(kind, res, False, _make_native(kind, inputs, attrs, res))
    if kind in ("cast", "concat", "gather") or in_dt not in _LOWP:
        return Kernel(kind, res, True, _make_native(kind, inputs, attrs, res), direct=_direct_form(kind))
    f32_specs = [TensorSpec(s.name, "float32", s.shape) for s in inputs]
    inner = _make_native(kind, f32_specs, attrs, TensorSpec("", "float32", res.shape))

    def bind_lowp(o: np.ndarray) -> Fn:
        fn = inner(np.empty(res.shape, F32))

        def lowp(*xs: np.ndarray) -> np.ndarray:
            r = fn(*[x.astype(F32, copy=False) for x in xs])    # constants arrive widened once, at load
            return _cast_into(r, out_dt, o)
        return lowp
    return Kernel(kind, res, True, bind_lowp, widens=True)


def has_nan(arr: np.ndarray) -> bool:
    """Whether a float array holds a NaN, without a full-size temporary (x·x is NaN only when some x is)."""
    if arr.dtype.kind in "fc":
        if arr.size == 0:
            return False
        return bool(np.isnan(np.vdot(arr, arr)))
    if arr.dtype in _LOWP:                        # ml_dtypes floats: a min reduction propagates NaN
        if arr.size == 0:
            return False
        with np.errstate(all="ignore"):
            return bool(np.isnan(np.minimum.reduce(arr, axis=None).astype(F32)))
    return False


def apply_op(kind: str, arrays: Sequence[np.ndarray], attrs: Mapping[str, Any] | None = None) -> np.ndarray:
    """Run one op on arrays once (allocating its result); convenient for references and one-off use."""
    attrs = attrs or {}
    specs = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        try:
            dt = numpy_dtype(a.dtype)
        except ValueError as exc:
            raise ValueError(f"{kind}: input {i}: {exc}") from None
        specs.append(TensorSpec(f"in{i}", dtype_name(dt), a.shape))
    k = make_kernel(kind, specs, attrs)
    out = np.empty(k.result.shape, numpy_dtype(k.result.dtype)) if k.needs_buffer else None
    with np.errstate(all="ignore"):
        return np.asarray(k.bind(out)(*[np.asarray(a) for a in arrays]))
