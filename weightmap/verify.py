"""Re-read what a port wrote, before it reports success.

Every written tensor is read back through weightmap's own reader for the output format and
checked against the plan (name, shape, dtype); its SHA-256 is recorded in the manifest, and
non-finite values (NaN, ±Inf) are counted, so a port never reports success for a file that does
not hold what the plan says.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import FLOAT_DTYPES
from .errors import FormatError
from .plans import Plan


def check_written(path: Path, plan: Plan, *, where: str | None = None) -> dict[str, dict[str, Any]]:
    """``{target name: {"sha256", "nonfinite"}}`` for the file at ``path``, or FormatError."""
    from .sources import read_path
    shown = where or str(path)
    graph = read_path(path)
    written = {p.name: p for p in graph.params()}
    out: dict[str, dict[str, Any]] = {}
    for t in plan.tensors:
        p = written.get(t.target)
        if p is None:
            raise FormatError("the written file lacks this tensor", path=shown, tensor=t.target,
                              hint="the writer failed; nothing was kept")
        if tuple(p.shape) != tuple(t.shape) or p.dtype != t.dtype:
            raise FormatError(f"written as {p.shape} {p.dtype}, the plan says {t.shape} "
                              f"{t.dtype}", path=shown, tensor=t.target)
        entry = _digest(np.ascontiguousarray(p.read()), t.dtype in FLOAT_DTYPES)
        out[t.target] = entry
    return out


CHUNK = 1 << 22     # elements per pass: hashing and counting never hold a full-size temporary


def _digest(arr: np.ndarray, floating: bool) -> dict[str, Any]:
    h = hashlib.sha256()
    flat = arr.reshape(-1)
    bad = 0
    for start in range(0, flat.size, CHUNK):
        part = flat[start:start + CHUNK]
        h.update(part.view(np.uint8))
        if floating:
            bad += int(part.size - np.count_nonzero(np.isfinite(part)))
    entry: dict[str, Any] = {"sha256": h.hexdigest()}
    if bad:
        entry["nonfinite"] = bad
    return entry
