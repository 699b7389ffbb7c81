"""weightmap's ``.pt`` output: the complete state dict, saved by torch."""
from __future__ import annotations

from pathlib import Path

from .writer import write_pt


def write_output(path: Path, *, kind, plan, target, tensors) -> None:
    write_pt(path, ((t.target, arr) for t, arr in tensors()))
