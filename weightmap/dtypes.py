"""Canonical dtype names and their numpy equivalents.

weightmap names dtypes by plain strings (``"float32"``, ``"bfloat16"`` ...) so that specs are
framework-free and JSON-friendly. bfloat16 and the float8 variants come from ``ml_dtypes``, the
numpy extension maintained by the JAX team, so every dtype round-trips bit-exactly.
"""
from __future__ import annotations

import numpy as np
import ml_dtypes

from .errors import FormatError

_NUMPY: dict[str, np.dtype] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "uint32": np.dtype("<u4"),
    "uint16": np.dtype("<u2"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
    "complex64": np.dtype("<c8"),
    "complex128": np.dtype("<c16"),
}

DTYPES = frozenset(_NUMPY)
FLOAT_DTYPES = frozenset(n for n in _NUMPY if n.startswith(("float", "bfloat")))

# safetensors header codes
SAFETENSORS = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "C64": "complex64",
}
TO_SAFETENSORS = {v: k for k, v in SAFETENSORS.items()}


def to_numpy(name: str) -> np.dtype:
    """The numpy dtype (little-endian) for a canonical dtype name."""
    try:
        return _NUMPY[name]
    except KeyError:
        raise FormatError(f"unknown dtype {name!r}; known: {', '.join(sorted(_NUMPY))}") from None


def from_numpy(dtype: object) -> str:
    """The canonical name of a numpy dtype (any byte order)."""
    dt = np.dtype(dtype)
    if dt.byteorder == ">":
        dt = dt.newbyteorder("<")
    for name, known in _NUMPY.items():
        if known == dt:
            return name
    raise FormatError(f"unsupported dtype {dt!s}; weightmap handles {', '.join(sorted(_NUMPY))}")


def itemsize(name: str) -> int:
    return to_numpy(name).itemsize
