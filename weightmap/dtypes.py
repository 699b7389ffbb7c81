"""Canonical dtype names and their numpy equivalents.

weightmap names dtypes by plain strings (``"float32"``, ``"bfloat16"`` ...) so that specs are
framework-free and JSON-friendly. bfloat16 and the float8 variants come from ``ml_dtypes``, the
numpy extension maintained by the JAX team, so every dtype round-trips bit-exactly.

``ml_dtypes`` is imported only when one of its dtypes is first needed as a numpy dtype (an array
of bfloat16 or float8 values): loading its extension is most of what ``import weightmap`` would
otherwise cost (0.45 s of 0.6 s measured), and a port that copies bfloat16 tensors file to file
never makes such an array. Names, item sizes and the non-finite bit patterns (``nonfinite``)
need no numpy dtype.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from .errors import FormatError

# dtypes numpy lacks: name -> (ml_dtypes attribute, item size)
_ML_DTYPES = {"bfloat16": 2, "float8_e4m3fn": 1, "float8_e4m3fnuz": 1, "float8_e5m2": 1,
              "float8_e5m2fnuz": 1}
_ML_LOCK = threading.Lock()

_NUMPY: dict[str, np.dtype] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
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

DTYPES = frozenset(_NUMPY) | frozenset(_ML_DTYPES)
FLOAT_DTYPES = frozenset(n for n in DTYPES if n.startswith(("float", "bfloat")))
_ITEMSIZE = {**{n: dt.itemsize for n, dt in _NUMPY.items()}, **_ML_DTYPES}

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
        if name not in _ML_DTYPES:
            raise FormatError(f"unknown dtype {name!r}; known: {', '.join(sorted(DTYPES))}"
                              ) from None
    _load_ml_dtypes()
    return _NUMPY[name]


def _load_ml_dtypes() -> None:
    with _ML_LOCK:
        if "bfloat16" not in _NUMPY:
            import ml_dtypes
            _NUMPY.update((n, np.dtype(getattr(ml_dtypes, n))) for n in _ML_DTYPES)


def from_numpy(dtype: object) -> str:
    """The canonical name of a numpy dtype (any byte order)."""
    dt = np.dtype(dtype)
    if dt.byteorder == ">":
        dt = dt.newbyteorder("<")
    if "bfloat16" not in _NUMPY and "ml_dtypes" in sys.modules:
        _load_ml_dtypes()       # an ml_dtypes array made elsewhere: its dtypes exist already
    for name, known in _NUMPY.items():
        if known == dt:
            return name
    raise FormatError(f"unsupported dtype {dt!s}; weightmap handles {', '.join(sorted(DTYPES))}")


def itemsize(name: str) -> int:
    try:
        return _ITEMSIZE[name]
    except KeyError:
        return to_numpy(name).itemsize      # raises the FormatError naming the known dtypes


# Bit patterns of the non-finite values of each floating dtype, on its bytes as unsigned
# integers of its size: (mask, value) -- an element is NaN or ±Inf when ``bits & mask ==
# value``. IEEE-like formats: all exponent bits set; float8_e4m3fn has no Inf and one NaN per
# sign (all bits but the sign set); the "fnuz" kinds have one NaN, the negative zero pattern.
NONFINITE = {
    "float64": (0x7FF0000000000000, 0x7FF0000000000000),
    "float32": (0x7F800000, 0x7F800000),
    "float16": (0x7C00, 0x7C00),
    "bfloat16": (0x7F80, 0x7F80),
    "float8_e5m2": (0x7C, 0x7C),
    "float8_e4m3fn": (0x7F, 0x7F),
    "float8_e4m3fnuz": (0xFF, 0x80),
    "float8_e5m2fnuz": (0xFF, 0x80),
}


def count_nonfinite(data: bytes | memoryview, dtype: str) -> int:
    """How many elements of ``data`` (whole little-endian elements of floating ``dtype``) are
    NaN or ±Inf, from their bit patterns (no float conversion, no ml_dtypes)."""
    mask, value = NONFINITE[dtype]
    bits = np.frombuffer(data, dtype=f"<u{_ITEMSIZE[dtype]}")
    return int(np.count_nonzero((bits & mask) == value))
