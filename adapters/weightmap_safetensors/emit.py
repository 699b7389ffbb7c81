"""weightmap's safetensors output (any target: names as the target has them)."""
from __future__ import annotations

from pathlib import Path

from .writer import write


def write_output(path: Path, *, kind, plan, target, tensors) -> None:
    specs = [(t.target, tuple(t.shape), t.dtype) for t in plan.tensors]
    meta = {"format": "pt", "weightmap_source": str(plan.source.get("path", ""))}
    write(path, specs, ((t.target, arr) for t, arr in tensors()), metadata=meta)
