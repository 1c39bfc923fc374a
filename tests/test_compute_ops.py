"""Each op's numbers against a numpy reference, and the cast rules.

Tolerances: float32 ops are bit-exact against a numpy reference doing the same operations in the same order, except
gelu (erf approximation: within 4 float32 ulp of math.erf) and gelu "tanh" (reference in another order: rtol 1e-6).
bfloat16/float16/fp8 ops are bit-exact against "widen to float32, compute the float32 reference, round once", and
within half an ulp of the result dtype (plus the float32 error) of the exact float64 value: rtol 2**-8 bfloat16,
2**-11 float16, 2**-4 float8_e4m3, 2**-3 float8_e5m2, with an absolute slack of the dtype's smallest subnormal.
"""
from __future__ import annotations

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuron_sim.compute.ops import apply_op, cast_array, gelu_erf_reference

F32 = np.float32
BF16 = np.dtype(ml_dtypes.bfloat16)
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E5M2 = np.dtype(ml_dtypes.float8_e5m2)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape: int, seed: int = 0, dtype=F32) -> np.ndarray:
    return rng(seed).standard_normal(shape).astype(dtype)


def sigmoid_ref(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e).astype(x.dtype) / (e + 1)


def layernorm_ref(x, g, b, eps=1e-5):
    d = x - x.mean(-1, keepdims=True)
    return d / np.sqrt(np.mean(np.square(d), -1, keepdims=True) + F32(eps)) * g + b


def rmsnorm_ref(x, g, eps=1e-6):
    return x / np.sqrt(np.mean(np.square(x), -1, keepdims=True) + F32(eps)) * g


def softmax_ref(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


X = randn(3, 4, 5)
Y = randn(5, 6, seed=1)
G = randn(5, seed=2)
B = randn(5, seed=3)

FP32_EXACT = [
    ("matmul", [X, Y], {}, lambda: X @ Y),
    ("matmul", [randn(2, 1, 3, 4), randn(5, 4, 2, seed=1)], {},
     lambda: randn(2, 1, 3, 4) @ randn(5, 4, 2, seed=1)),
    ("add", [X, G], {}, lambda: X + G),
    ("sub", [G, X], {}, lambda: G - X),
    ("mul", [X, X[:1]], {}, lambda: X * X[:1]),
    ("div", [X, B], {}, lambda: X / B),
    ("relu", [X], {}, lambda: np.maximum(X, 0)),
    ("exp", [X], {}, lambda: np.exp(X)),
    ("tanh", [X], {}, lambda: np.tanh(X)),
    ("sigmoid", [X], {}, lambda: sigmoid_ref(X)),
    ("silu", [X], {}, lambda: X * sigmoid_ref(X)),
    ("softmax", [X], {}, lambda: softmax_ref(X)),
    ("softmax", [X], {"axis": 1}, lambda: softmax_ref(X, 1)),
    ("layernorm", [X, G, B], {}, lambda: layernorm_ref(X, G, B)),
    ("layernorm", [X], {"eps": 0.5}, lambda: layernorm_ref(X, F32(1), F32(0), 0.5)),
    ("rmsnorm", [X, G], {}, lambda: rmsnorm_ref(X, G)),
    ("transpose", [X], {}, lambda: X.T),
    ("transpose", [X], {"perm": [1, 0, 2]}, lambda: X.transpose(1, 0, 2)),
    ("reshape", [X], {"shape": [-1, 5]}, lambda: X.reshape(12, 5)),
    ("concat", [X, X[:, :1]], {"axis": 1}, lambda: np.concatenate([X, X[:, :1]], 1)),
    ("slice", [X], {"starts": [1, -3], "stops": [3, 4], "steps": [1, 2]}, lambda: X[1:3, -3:4:2]),
    ("reduce_sum", [X], {"axes": [0, 2]}, lambda: X.sum((0, 2))),
    ("reduce_mean", [X], {"axes": [-1], "keepdims": True}, lambda: X.mean(-1, keepdims=True)),
    ("reduce_max", [X], {}, lambda: X.max()),
]


@pytest.mark.parametrize("kind, arrays, attrs, ref", FP32_EXACT, ids=[f"{c[0]}-{i}" for i, c in enumerate(FP32_EXACT)])
def test_fp32_ops_bit_exact(kind, arrays, attrs, ref):
    got = apply_op(kind, arrays, attrs)
    want = np.asarray(ref())
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_layernorm_on_a_non_last_axis():
    x = randn(4, 3)
    g = randn(4, seed=5)
    got = apply_op("layernorm", [x, g], {"axis": 0})
    want = layernorm_ref(x.T, g, F32(0)).T
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_gelu_erf_within_4_ulp_of_math_erf():
    x = np.concatenate([np.linspace(-12, 12, 4001), [-1e-30, 0.0, 1e-30, 30.0, -30.0]]).astype(F32)
    got = apply_op("gelu", [x])
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    ulp = np.spacing(np.abs(exact).astype(F32)).astype(np.float64)
    assert np.all(np.abs(got - exact) <= 4 * ulp)
    assert got.dtype == np.float32 and got[-2] == 30.0 and got[-1] == 0.0
    np.testing.assert_array_equal(gelu_erf_reference(x).astype(F32), got)


def test_gelu_tanh():
    x = X
    want = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(apply_op("gelu", [x], {"approximate": "tanh"}), want, rtol=1e-6, atol=1e-7)


def test_sigmoid_has_no_overflow_and_right_tails():
    x = np.array([-200, -100, -20, 0, 20, 200], F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = apply_op("sigmoid", [x])
    np.testing.assert_allclose(got[2], math.exp(-20) / (1 + math.exp(-20)), rtol=1e-6)
    assert got[3] == 0.5 and got[-1] == 1.0 and got[0] == 0.0


def test_ieee_specials_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = apply_op("div", [np.array([1, -1, 0], F32), np.zeros(3, F32)])
        big = apply_op("exp", [np.array([1000], F32)])
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2]) and big[0] == np.inf


LOWP = [(BF16, 2.0 ** -8), (np.dtype(np.float16), 2.0 ** -11), (E4M3, 2.0 ** -4), (E5M2, 2.0 ** -3)]
LOWP_OPS = [
    ("matmul", lambda a, b: [a, b[: a.shape[-1]]], {}),
    ("add", lambda a, b: [a, b[0]], {}),
    ("mul", lambda a, b: [a, a], {}),
    ("exp", lambda a, b: [a], {}),
    ("softmax", lambda a, b: [a], {}),
    ("layernorm", lambda a, b: [a], {}),
    ("reduce_sum", lambda a, b: [a], {"axes": [1]}),
    ("reduce_max", lambda a, b: [a], {"axes": [0]}),
]
REFS = {
    "matmul": lambda a, b: a @ b, "add": np.add, "mul": np.multiply, "exp": np.exp, "softmax": softmax_ref,
    "layernorm": lambda x: layernorm_ref(x, 1, 0), "reduce_sum": lambda x: x.sum(1), "reduce_max": lambda x: x.max(0),
}


@pytest.mark.parametrize("dtype, rtol", LOWP, ids=["bf16", "fp16", "e4m3", "e5m2"])
@pytest.mark.parametrize("kind, pick, attrs", LOWP_OPS, ids=[o[0] for o in LOWP_OPS])
def test_low_precision_computes_in_fp32_and_rounds_once(dtype, rtol, kind, pick, attrs):
    a = (randn(6, 6, seed=7) * 0.5).astype(dtype)
    b = (randn(6, 6, seed=8) * 0.5).astype(dtype)
    arrays = pick(a, b)
    got = apply_op(kind, arrays, attrs)
    assert got.dtype == dtype
    via_f32 = np.asarray(REFS[kind](*[x.astype(F32) for x in arrays]))
    np.testing.assert_array_equal(got, via_f32.astype(dtype))
    exact = np.asarray(REFS[kind](*[x.astype(np.float64) for x in arrays]))
    atol = float(ml_dtypes.finfo(dtype).smallest_subnormal)    # below the normal range, absolute steps
    np.testing.assert_allclose(got.astype(np.float64), exact, rtol=rtol, atol=atol)


def test_integer_arithmetic_wraps_like_numpy():
    a = np.array([[100, -100], [127, 1]], np.int8)
    np.testing.assert_array_equal(apply_op("add", [a, a]), (a.astype(np.int64) * 2).astype(np.int8))
    want = (a.astype(np.int64) @ a.astype(np.int64)).astype(np.int8)
    got = apply_op("matmul", [a, a])
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(apply_op("reduce_sum", [a], {"axes": [0]}), np.array([-29, -99], np.int8))
    np.testing.assert_array_equal(apply_op("relu", [a]), np.maximum(a, 0))


# ---- casts -------------------------------------------------------------------------------------------------------

FLOATS = ["float32", "float16", "bfloat16", "float8_e4m3", "float8_e5m2"]
INTS = ["int8", "uint8", "int16", "int32", "int64", "uint64"]


def _np(name):
    from neuron_sim.dtypes import numpy_dtype
    return numpy_dtype(name)


@pytest.mark.parametrize("src", FLOATS)
@pytest.mark.parametrize("dst", FLOATS)
def test_float_casts_round_to_nearest_within_range(src, dst):
    x = (randn(200, seed=11) * 8).astype(_np(src))
    got = apply_op("cast", [x], {"dtype": dst})
    assert got.dtype == _np(dst)
    want = x.astype(np.float64).astype(np.float32).astype(_np(dst))   # in range: one rounding from the value
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


def test_fp8_bit_patterns_round_trip_through_every_float():
    for dt in (E4M3, E5M2):
        allbits = np.arange(256, dtype=np.uint8).view(dt)
        finite = allbits[np.isfinite(allbits.astype(F32))]
        for mid in ("float32", "float16", "bfloat16"):
            back = cast_array(cast_array(finite, mid), dt)
            np.testing.assert_array_equal(back.view(np.uint8), finite.view(np.uint8))


def test_overflow_rules():
    x = np.array([1e6, -1e6, 460.0, 500.0, np.inf, -np.inf, np.nan], F32)
    e4 = cast_array(x, "float8_e4m3").astype(F32)
    np.testing.assert_array_equal(e4[:6], [448, -448, 448, 448, 448, -448])   # saturates: e4m3 has no inf
    assert np.isnan(e4[6])
    e5 = cast_array(x, "float8_e5m2").astype(F32)
    assert e5[0] == np.inf and e5[1] == -np.inf and e5[3] == 512
    assert cast_array(np.array([70000], F32), "float16")[0] == np.inf
    assert cast_array(np.array([1e38], F32), "bfloat16").astype(F32)[0] == pytest.approx(1e38, rel=2 ** -8)


@pytest.mark.parametrize("dst", INTS)
def test_float_to_int_truncates_saturates_and_zeroes_nan(dst):
    info = np.iinfo(_np(dst))
    x = np.array([2.9, -2.9, 0.5, 1e30, -1e30, np.nan, np.inf, -np.inf], F32)
    got = apply_op("cast", [x], {"dtype": dst})
    lo = info.min
    want = [2, max(-2, lo), 0, info.max, lo, 0, info.max, lo]
    assert got.dtype == _np(dst) and got.tolist() == want
    assert cast_array(np.array([2.0 ** 70], ml_dtypes.bfloat16), dst)[0] == info.max


def test_int_casts_saturate_and_int_to_float_rounds():
    assert cast_array(np.array([300, -300, 5], np.int32), "uint8").tolist() == [255, 0, 5]
    assert cast_array(np.array([300, -300, 5], np.int32), "int8").tolist() == [127, -128, 5]
    assert cast_array(np.array([2 ** 64 - 1], np.uint64), "int64").tolist() == [2 ** 63 - 1]
    assert cast_array(np.array([-1], np.int64), "uint64").tolist() == [0]
    assert cast_array(np.array([200, 1000, -1000], np.int32), "float8_e4m3").astype(F32).tolist() == [192, 448, -448]
    assert cast_array(np.array([2 ** 24 + 1], np.int32), "float32").tolist() == [2 ** 24]
    assert cast_array(np.array([257], np.int16), "bfloat16").astype(F32).tolist() == [256]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    a=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    b=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    kind=st.sampled_from(["add", "sub", "mul", "div"]),
    seed=st.integers(0, 2 ** 16),
)
def test_broadcasting_binary_matches_numpy(a, b, kind, seed):
    x = randn(*a, seed=seed)
    y = randn(*b, seed=seed + 1) + F32(3)
    try:
        want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[kind](x, y)
    except ValueError:
        with pytest.raises(ValueError, match="do not broadcast"):
            apply_op(kind, [x, y])
        return
    np.testing.assert_array_equal(apply_op(kind, [x, y]), want)


def test_apply_op_rejects_non_neuron_dtypes():
    with pytest.raises(ValueError, match="float64 has no nrt_dtype_t"):
        apply_op("relu", [np.zeros(2)])
