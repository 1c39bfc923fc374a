"""nrt_dtype_t codes (nrt.h) and their numpy dtypes; bf16 and fp8 come from ml_dtypes."""
from __future__ import annotations

from enum import IntEnum

import ml_dtypes
import numpy as np


class NrtDtype(IntEnum):
    """nrt_dtype_t as in the header (the developer guide's sequential list is stale)."""

    UNKNOWN = 0x0
    UINT64 = 0x1
    INT8 = 0x2
    UINT8 = 0x3
    INT16 = 0x4
    UINT16 = 0x5
    BFLOAT16 = 0x6
    FLOAT16 = 0x7
    INT32 = 0x8
    UINT32 = 0x9
    FLOAT32 = 0xA
    FP32R = 0xB
    INT64 = 0xC
    FP8_E3 = 0xD
    FP8_E4 = 0xE
    FP8_E5 = 0xF


_NUMPY: dict[NrtDtype, np.dtype] = {
    NrtDtype.UINT64: np.dtype(np.uint64),
    NrtDtype.INT8: np.dtype(np.int8),
    NrtDtype.UINT8: np.dtype(np.uint8),
    NrtDtype.INT16: np.dtype(np.int16),
    NrtDtype.UINT16: np.dtype(np.uint16),
    NrtDtype.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    NrtDtype.FLOAT16: np.dtype(np.float16),
    NrtDtype.INT32: np.dtype(np.int32),
    NrtDtype.UINT32: np.dtype(np.uint32),
    NrtDtype.FLOAT32: np.dtype(np.float32),
    NrtDtype.FP32R: np.dtype(np.float32),
    NrtDtype.INT64: np.dtype(np.int64),
    NrtDtype.FP8_E3: np.dtype(ml_dtypes.float8_e3m4),
    NrtDtype.FP8_E4: np.dtype(ml_dtypes.float8_e4m3fn),
    NrtDtype.FP8_E5: np.dtype(ml_dtypes.float8_e5m2),
}

# Spellings found in neff.json / tensor_map.json and the ones users type.
_ALIASES: dict[str, NrtDtype] = {
    "uint64": NrtDtype.UINT64, "int8": NrtDtype.INT8, "uint8": NrtDtype.UINT8,
    "int16": NrtDtype.INT16, "uint16": NrtDtype.UINT16,
    "bfloat16": NrtDtype.BFLOAT16, "bf16": NrtDtype.BFLOAT16,
    "float16": NrtDtype.FLOAT16, "fp16": NrtDtype.FLOAT16, "half": NrtDtype.FLOAT16,
    "int32": NrtDtype.INT32, "uint32": NrtDtype.UINT32,
    "float32": NrtDtype.FLOAT32, "fp32": NrtDtype.FLOAT32, "float": NrtDtype.FLOAT32,
    "fp32r": NrtDtype.FP32R, "int64": NrtDtype.INT64,
    "float8_e3m4": NrtDtype.FP8_E3, "fp8_e3": NrtDtype.FP8_E3,
    "float8_e4m3": NrtDtype.FP8_E4, "float8_e4m3fn": NrtDtype.FP8_E4, "fp8_e4m3": NrtDtype.FP8_E4,
    "fp8_e4": NrtDtype.FP8_E4,
    "float8_e5m2": NrtDtype.FP8_E5, "fp8_e5m2": NrtDtype.FP8_E5, "fp8_e5": NrtDtype.FP8_E5,
}

_CANONICAL: dict[NrtDtype, str] = {
    NrtDtype.UINT64: "uint64", NrtDtype.INT8: "int8", NrtDtype.UINT8: "uint8",
    NrtDtype.INT16: "int16", NrtDtype.UINT16: "uint16", NrtDtype.BFLOAT16: "bfloat16",
    NrtDtype.FLOAT16: "float16", NrtDtype.INT32: "int32", NrtDtype.UINT32: "uint32",
    NrtDtype.FLOAT32: "float32", NrtDtype.FP32R: "fp32r", NrtDtype.INT64: "int64",
    NrtDtype.FP8_E3: "float8_e3m4", NrtDtype.FP8_E4: "float8_e4m3", NrtDtype.FP8_E5: "float8_e5m2",
}

SUPPORTED_NAMES: tuple[str, ...] = tuple(sorted(_ALIASES))
_NUMPY_BY_NAME: dict[str, np.dtype] = {name: _NUMPY[code] for name, code in _ALIASES.items()}
_NAME_BY_NAME: dict[str, str] = {name: _CANONICAL[code] for name, code in _ALIASES.items()}
_BY_NUMPY: dict[np.dtype, NrtDtype] = {}
for _code, _dt in _NUMPY.items():
    if _code is not NrtDtype.FP32R:
        _BY_NUMPY.setdefault(_dt, _code)


def nrt_dtype(value: str | np.dtype | type | NrtDtype | int) -> NrtDtype:
    """Resolve a dtype name, numpy dtype or code to its nrt_dtype_t; ValueError names the accepted forms."""
    if type(value) is str:                # fast paths: the spellings and dtypes loads and executes meet
        code = _ALIASES.get(value)
        if code is not None:
            return code
    elif isinstance(value, np.dtype):
        code = _BY_NUMPY.get(value)
        if code is not None:
            return code
    if isinstance(value, NrtDtype):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return NrtDtype(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        raise ValueError(f"unknown dtype {value!r}; accepted: {', '.join(SUPPORTED_NAMES)}")
    dt = np.dtype(value)
    for code, candidate in _NUMPY.items():
        if candidate == dt and code is not NrtDtype.FP32R:
            return code
    raise ValueError(f"numpy dtype {dt} has no nrt_dtype_t; accepted: {', '.join(SUPPORTED_NAMES)}")


def numpy_dtype(value: str | np.dtype | type | NrtDtype | int) -> np.dtype:
    """The numpy dtype that holds tensors of this nrt_dtype_t."""
    if type(value) is str:
        dt = _NUMPY_BY_NAME.get(value)
        if dt is not None:
            return dt
    elif type(value) is NrtDtype and value is not NrtDtype.UNKNOWN:
        return _NUMPY[value]
    code = nrt_dtype(value)
    if code is NrtDtype.UNKNOWN:
        raise ValueError("NRT_DTYPE_UNKNOWN has no numpy dtype")
    return _NUMPY[code]


def dtype_name(value: str | np.dtype | type | NrtDtype | int) -> str:
    """Canonical lower-case name (as neff.json spells it)."""
    if type(value) is str:
        name = _NAME_BY_NAME.get(value)
        if name is not None:
            return name
    elif type(value) is NrtDtype and value in _CANONICAL:
        return _CANONICAL[value]
    return _CANONICAL[nrt_dtype(value)]
