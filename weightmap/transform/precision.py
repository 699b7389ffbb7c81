"""The ``cast`` step: a tensor in another dtype, and what the change cost in precision.

Casts between floating dtypes round to nearest, ties to even: numpy for float16/32/64,
ml_dtypes (the numpy extension the JAX team maintains) for bfloat16 and the float8 kinds. Both
convert from float64 directly, so a float64 value is rounded once, never twice through float32.
Values too large for the new dtype become ±inf (IEEE overflow), values too small become
subnormal (fewer significant bits) or zero; NaN and ±inf stay what they are.

``census`` counts those values, so the manifest can say what a narrowing cast did: ``overflow``
(finite → ±inf), ``subnormal`` (non-zero → below the new dtype's smallest normal number, not
zero) and ``zero`` (non-zero → ±0).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import FLOAT_DTYPES, from_numpy, to_numpy
from .steps import register

CHUNK = 1 << 20      # elements counted at a time: the temporaries stay small whatever the tensor


@register("cast")
class Cast:
    """Change the dtype (rounding to nearest even between floating dtypes)."""

    @staticmethod
    def shape(shapes, dtype):          # ``dtype`` is checked with the step (core.ARG_KINDS)
        return shapes[0]

    @staticmethod
    def apply(arrays, dtype):
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return arrays[0].astype(to_numpy(dtype))

    @staticmethod
    def census(arrays, out, dtype) -> dict[str, Any] | None:
        """Counts of a cast between floating dtypes (None for any other cast)."""
        src = np.asarray(arrays[0])
        before, after = from_numpy(src.dtype), from_numpy(out.dtype)
        if before not in FLOAT_DTYPES or after not in FLOAT_DTYPES:
            return None
        import ml_dtypes       # loaded when a cast needs it (see weightmap.dtypes)
        tiny = ml_dtypes.finfo(out.dtype).smallest_normal
        a, b = src.reshape(-1), np.ascontiguousarray(out).reshape(-1)
        counts = {"overflow": 0, "subnormal": 0, "zero": 0}
        for start in range(0, a.size, CHUNK):
            x, y = a[start:start + CHUNK], b[start:start + CHUNK]
            finite = np.isfinite(x)
            counts["overflow"] += int(np.count_nonzero(finite & np.isinf(y)))
            moved = finite & (x != 0)
            gone = y == 0
            counts["zero"] += int(np.count_nonzero(moved & gone))
            counts["subnormal"] += int(np.count_nonzero(moved & ~gone & (np.abs(y) < tiny)))
        return {"from": before, "to": after, **counts}
