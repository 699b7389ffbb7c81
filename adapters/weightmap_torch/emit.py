"""weightmap's ``.pt`` output: the complete state dict in torch's zip format, streamed tensor by
tensor without torch (``zip_writer``)."""
from __future__ import annotations

from pathlib import Path

from . import zip_writer


def write_output(path: Path, *, kind, plan, target, tensors, final_path: Path | None = None
                 ) -> None:
    specs = [(t.target, tuple(t.shape), t.dtype) for t in plan.tensors]
    stem = Path(final_path or path).name.split(".")[0]     # torch names the top folder after it
    zip_writer.write(path, specs, ((t.target, arr) for t, arr in tensors()), top=stem)
