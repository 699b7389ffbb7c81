"""Re-read what a port wrote, before it reports success.

Every written tensor is read back through weightmap's own reader for the output format and
checked against the plan (name, shape, dtype); its SHA-256 is recorded in the manifest, and
non-finite values (NaN, ±Inf) are counted, so a port never reports success for a file that does
not hold what the plan says.

The digests run on a few threads (``hashlib`` and numpy release the GIL on large buffers). A
tensor stored raw (``MappedData``) is read back with ``pread`` into a small buffer each thread
reuses, chunk by chunk: no memory map, no page faults, no full-size temporary, and the chunk is
still in the CPU cache when it is counted for non-finite values.

A writer that knows where each tensor lands may read it back as soon as it is written, while
other tensors are still being computed (``ReadBack.take``, run by the writer's threads). Once
the file is complete, ``check_written`` re-parses it with weightmap's reader as always, and uses
such a digest only when the reader places the tensor at exactly the span that was read back
(same file, offset and length; writers never write a span twice); any other tensor is read
back then.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .dtypes import FLOAT_DTYPES, to_numpy
from .errors import FormatError
from .graph import MappedData, Param, span_chunks
from .plans import Plan, TensorPlan

CHUNK = 1 << 20     # bytes per read-back pass


class ReadBack:
    """Digests of tensors read back from the output right after they were written, keyed by
    target name with the span they were read from. Thread-safe: writers call ``take`` from
    their worker threads."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[tuple[str, int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._buffers = _Buffers()

    def take(self, path: Path, t: TensorPlan, offset: int, nbytes: int) -> None:
        """Read back and digest target tensor ``t``, just written raw at ``offset`` of
        ``path``."""
        data = MappedData(str(path), offset, tuple(t.shape), t.dtype, span=nbytes)
        if data.nbytes() != nbytes or nbytes == 0:
            return                                  # left to check_written
        entry = _digest_file(data, t.dtype in FLOAT_DTYPES, self._buffers.chunk)
        with self._lock:
            self._done[t.target] = ((os.path.realpath(path), offset, nbytes), entry)

    def lookup(self, name: str, p: Param) -> dict[str, Any] | None:
        """The digest taken for ``name`` if the re-parsed file stores it at that very span."""
        got = self._done.get(name)
        data = p.data
        if got is None or not isinstance(data, MappedData) or data.fortran_order:
            return None
        span = (os.path.realpath(data.path), data.offset, data.nbytes())
        return got[1] if span == got[0] else None


def check_written(paths: Path | Sequence[Path], plan: Plan, *, where: str | None = None,
                  workers: int | None = None, read_back: ReadBack | None = None
                  ) -> dict[str, dict[str, Any]]:
    """``{target name: {"sha256"[, "nonfinite"]}}`` for the file(s) at ``paths`` (one output,
    or the shards of one), in plan order; FormatError when a tensor is missing or differs from
    the plan. ``read_back``: digests a writer took as it wrote (see the module doc)."""
    from .sources import read_path
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    shown = where or str(files[0])
    written: dict[str, Param] = {}
    for path in files:
        try:
            written.update((p.name, p) for p in read_path(path).params())
        except FormatError as exc:      # named after the output, not its temporary file
            raise FormatError(f"the written output does not read back: {exc.message}",
                              path=shown, tensor=exc.tensor,
                              hint="the writer failed; nothing was kept") from exc
    todo: list[tuple[str, Param, bool]] = []
    for t in plan.tensors:
        p = written.get(t.target)
        if p is None:
            raise FormatError("the written file lacks this tensor", path=shown, tensor=t.target,
                              hint="the writer failed; nothing was kept")
        if tuple(p.shape) != tuple(t.shape) or p.dtype != t.dtype:
            raise FormatError(f"written as {p.shape} {p.dtype}, the plan says {t.shape} "
                              f"{t.dtype}", path=shown, tensor=t.target)
        todo.append((t.target, p, t.dtype in FLOAT_DTYPES))
    done = {name: read_back.lookup(name, p) for name, p, _ in todo} if read_back else {}
    rest = [job for job in todo if done.get(job[0]) is None]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    buffers = _Buffers()
    if workers == 1 or len(rest) < 2:
        digests = [_digest_param(p, floating, buffers) for _, p, floating in rest]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weightmap-verify") as pool:
            digests = list(pool.map(lambda job: _digest_param(job[1], job[2], buffers), rest))
    done.update((name, entry) for (name, _, _), entry in zip(rest, digests))
    return {name: done[name] for name, _, _ in todo}


class _Buffers(threading.local):
    def __init__(self) -> None:
        self.chunk = np.empty(CHUNK, dtype=np.uint8)


def _digest_param(p: Param, floating: bool, buffers: _Buffers) -> dict[str, Any]:
    data = p.data
    if isinstance(data, MappedData) and not data.fortran_order and data.nbytes() > 0:
        return _digest_file(data, floating, buffers.chunk)
    return _digest(np.ascontiguousarray(p.read()), floating)


def _digest_file(data: MappedData, floating: bool, chunk: np.ndarray) -> dict[str, Any]:
    """The digest of a raw stored tensor, read with ``pread`` chunk by chunk (the bytes
    ``MappedData.read()`` would view, in the same order)."""
    need = data.stored_nbytes()
    npdt = to_numpy(data.dtype)
    h = hashlib.sha256()
    bad = 0
    for part in span_chunks(data.path, data.offset, need, memoryview(chunk),
                            what="the written file"):
        h.update(part)
        if floating:
            values = np.frombuffer(part, dtype=npdt)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    return _entry(h, bad)


def _digest(arr: np.ndarray, floating: bool) -> dict[str, Any]:
    h = hashlib.sha256()
    flat = arr.reshape(-1)
    bad = 0
    step = max(1, CHUNK // max(1, arr.itemsize))
    for start in range(0, flat.size, step):
        part = flat[start:start + step]
        h.update(part.view(np.uint8))
        if floating:
            bad += int(part.size - np.count_nonzero(np.isfinite(part)))
    return _entry(h, bad)


def _entry(h: Any, bad: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": h.hexdigest()}
    if bad:
        entry["nonfinite"] = bad
    return entry
