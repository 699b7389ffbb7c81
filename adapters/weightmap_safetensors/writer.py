"""Streaming safetensors writer: the header is known from the plan, so every tensor's place in the
file is known before the first byte is written. No framework needed.

``write`` takes an iterator of arrays in header order (one tensor in memory at a time).
``write_jobs`` takes independent per-tensor jobs (``weightmap.transform.execute.Job``) and runs a few at a
time on threads, each writing at its own offset: untransformed tensors are copied file to file
(``fastio.copy_span``), strided views (transposes of the mapped source) are copied tile by tile
into a buffer each thread reuses, other arrays are written as they are. Memory stays at a few
tensors (``workers`` in flight), and the output is the same bytes whatever the thread timing.
(Asking the kernel to start writing each range back early, ``sync_file_range``, was measured:
the writes then block on the disk queue, and the final fsync is no shorter.)
"""
from __future__ import annotations

import json
import os
import struct
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from weightmap.io import direct as direct_io
from weightmap.io.atomic import open_output
from weightmap.dtypes import TO_SAFETENSORS, from_numpy, itemsize
from weightmap.errors import UsageError
from weightmap.io.spans import FileSpan, span_chunks
from weightmap.io.bytes import (Buffer, byte_view, contiguous, contiguous_le, copy_bytes,
                                little_endian)
from weightmap.transform.execute import FileSpans

from .fastio import copy_span, pwrite_all

Spec = tuple[str, tuple[int, ...], str]     # (name, shape, dtype)


def tensor_size(shape: Sequence[int], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * itemsize(dtype)


def layout(specs: Iterable[Spec], metadata: Mapping[str, str] | None = None,
           data_start: int | None = None) -> tuple[bytes, list[int]]:
    """The header (length prefix included) and each tensor's absolute offset in the file.

    ``data_start`` (a multiple of 8 below ``PAGE``): the header is padded so that the data
    begins at that offset modulo ``PAGE`` (see ``page_residue``)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    starts = []
    for name, shape, dtype in specs:
        if dtype not in TO_SAFETENSORS:
            raise UsageError(f"safetensors cannot store dtype {dtype}", tensor=name)
        size = tensor_size(shape, dtype)
        header[name] = {"dtype": TO_SAFETENSORS[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        starts.append(offset)
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)          # keep tensor data 8-byte aligned
    if data_start is not None:
        raw += b" " * ((data_start - 8 - len(raw)) % PAGE)
    prefix = struct.pack("<Q", len(raw)) + raw
    return prefix, [len(prefix) + s for s in starts]


def header_bytes(specs: Iterable[Spec], metadata: Mapping[str, str] | None = None) -> bytes:
    return layout(specs, metadata)[0]


PAGE = 4096


def page_residue(specs: Sequence[Spec], jobs: Sequence[Any]) -> int | None:
    """Where, modulo a page, the data section should start so that most of the bytes copied
    file to file keep their page offset: the kernel copies whole page-cache pages then, about
    40% faster than shifted ones. None when nothing is copied that way."""
    votes: dict[int, int] = {}
    offset = 0
    for (_, shape, dtype), job in zip(specs, jobs):
        span = getattr(job, "span", None)
        if span is not None:
            residue = (span.offset - offset) % PAGE
            if residue % 8 == 0:
                votes[residue] = votes.get(residue, 0) + span.nbytes
        offset += tensor_size(shape, dtype)
    return max(votes, key=lambda r: (votes[r], -r)) if votes else None


def _check_array(name: str, arr: np.ndarray, shape: tuple[int, ...], dtype: str) -> None:
    if tuple(arr.shape) != tuple(shape) or from_numpy(arr.dtype) != dtype:
        raise UsageError(f"tensor has {tuple(arr.shape)} {from_numpy(arr.dtype)}, header says "
                         f"{tuple(shape)} {dtype}", tensor=name)


def _check_span(name: str, span: FileSpan | FileSpans, shape: tuple[int, ...], dtype: str
                ) -> None:
    if span.nbytes != tensor_size(shape, dtype):
        raise UsageError(f"source span holds {span.nbytes} bytes, the header needs "
                         f"{tensor_size(shape, dtype)}", tensor=name)


def _checked(name: str, arr: np.ndarray, shape: tuple[int, ...], dtype: str,
             scratch: "Scratch | None" = None) -> memoryview:
    """The bytes to write for ``arr``; a strided view is copied into ``scratch`` (a buffer
    the thread reuses, so big tensors do not each cost a fresh allocation and its page
    faults)."""
    _check_array(name, arr, shape, dtype)
    if scratch is not None and not arr.flags.c_contiguous and arr.dtype.byteorder in "=|<" \
            and sys.byteorder == "little":
        return byte_view(contiguous(arr, out=scratch.view(arr.shape, arr.dtype)))
    return byte_view(contiguous_le(arr))


class Scratch(Buffer, threading.local):
    """One reusable buffer per thread, grown to the largest strided tensor it copies."""


def write(path: Path, specs: list[Spec], tensors: Iterable[tuple[str, np.ndarray]],
          metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (in the order of ``specs``) to ``path``."""
    prefix, offsets = layout(specs, metadata)
    fd = open_output(path)    # no O_TRUNC; _set_size cuts the rest
    try:
        pwrite_all(fd, memoryview(prefix), 0)
        count = 0
        for i, (name, arr) in enumerate(tensors):
            if i >= len(specs) or name != specs[i][0]:
                raise UsageError(f"tensor {name!r} arrives out of the header's order")
            pwrite_all(fd, _checked(name, arr, specs[i][1], specs[i][2]), offsets[i])
            count += 1
        if count != len(specs):
            raise UsageError(f"{len(specs) - count} tensor(s) of the header never arrived")
        _set_size(fd, offsets[-1] + tensor_size(*specs[-1][1:]) if specs else len(prefix))
    finally:
        os.close(fd)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def write_jobs(path: Path, specs: list[Spec], jobs: Sequence[Any],
               metadata: Mapping[str, str] | None = None, *, workers: int | None = None,
               written: Callable[[Any], None] | None = None, read_back: Any = None,
               direct: bool | None = None) -> None:
    """Run ``jobs`` (one per spec, same order; ``job.compute()`` gives an array or a FileSpan)
    on up to ``workers`` threads, each tensor written at its offset. ``written(job.tensor)`` is
    called as each tensor lands. ``read_back`` (``weightmap.emit.readback.ReadBack``): each tensor is
    read back and digested as soon as it is written, while others are still being computed.

    ``direct``: write past the page cache (``weightmap.io.direct``; True: wherever the file system
    allows it, None: for outputs of ``direct.MIN_SIZE`` and more, False: never). The file's
    bytes are the same either way."""
    if len(jobs) != len(specs):
        raise UsageError(f"{len(jobs)} tensors for a header of {len(specs)}")
    prefix, offsets = layout(specs, metadata, page_residue(specs, jobs))
    workers = workers or default_workers()
    end = offsets[-1] + tensor_size(*specs[-1][1:]) if specs else len(prefix)
    fd = direct_io.open_direct(path) if direct_io.wanted(direct, end) else None
    if fd is not None:
        try:
            _write_direct(fd, path, prefix, offsets, specs, jobs, workers=workers,
                          written=written, read_back=read_back, end=end)
        finally:
            os.close(fd)
        return
    fd = open_output(path)    # no O_TRUNC; _set_size cuts the rest
    try:
        pwrite_all(fd, memoryview(prefix), 0)
        scratch = Scratch()
        # One thread writes at a time: Linux takes the file's inode lock for every buffered
        # write, and a second writer spins on it (measured: ~50 % more system time, no gain in
        # wall time). The threads still compute (transpose, convert) in parallel.
        file_lock = threading.Lock()

        def run(i: int) -> None:
            name, shape, dtype = specs[i]
            value = jobs[i].compute()
            if isinstance(value, (FileSpan, FileSpans)):
                _check_span(name, value, shape, dtype)
                at = offsets[i]
                with file_lock:
                    for part in _pieces(value):
                        copy_span(part.path, part.offset, part.nbytes, fd, at)
                        at += part.nbytes
            else:
                data = _checked(name, value, shape, dtype, scratch)
                with file_lock:
                    pwrite_all(fd, data, offsets[i])
            if read_back is not None:
                read_back.take(path, jobs[i].tensor, offsets[i], tensor_size(shape, dtype))
            if written is not None:
                written(jobs[i].tensor)

        _run_bounded(run, len(specs), workers)
        _set_size(fd, end)
    finally:
        os.close(fd)


def _write_direct(fd: int, path: Path, prefix: bytes, offsets: list[int], specs: list[Spec],
                  jobs: Sequence[Any], *, workers: int, written: Callable[[Any], None] | None,
                  read_back: Any, end: int) -> None:
    """``write_jobs`` past the page cache: the file is written front to back in windows
    (``weightmap.io.direct``), each filled from the header and the tensors it holds, and
    digested as it lands (as written, or read back from the device: ``read_back.device``)."""
    segments = [direct_io.Segment(0, len(prefix), _header_fill(prefix))]
    spans = []
    for job, spec, offset in zip(jobs, specs, offsets):
        done = None if written is None else (lambda job=job: written(job.tensor))
        part = _Parts(job, spec)
        segments.append(direct_io.Segment(offset, part.size, part.fill, done))
        spans.append((job.tensor, offset, part.size))
    if read_back is None:
        direct_io.write(fd, end, segments, workers=workers + 1)
        return
    with read_back.stream(path, spans) as feed:
        direct_io.write(fd, end, segments, reread=feed, device=read_back.device,
                        workers=workers + 1)


def _header_fill(prefix: bytes) -> Callable[[memoryview, int], None]:
    def fill(out: memoryview, start: int) -> None:
        out[:] = prefix[start:start + len(out)]
    return fill


class _Parts:
    """One tensor cut into the windows it spans: its job is computed once, by the first thread
    that needs a part of it, and dropped when its last part is filled (a computed array stays
    in memory only that long; a transposed view or a file span costs nothing)."""

    def __init__(self, job: Any, spec: Spec) -> None:
        self.job, self.spec = job, spec
        self.size = tensor_size(*spec[1:])
        self.left = self.size
        self.value: Any = None
        self.lock = threading.Lock()

    def fill(self, out: memoryview, start: int) -> None:
        with self.lock:
            if self.value is None:
                self.value = self._compute()
            value = self.value
        if isinstance(value, (FileSpan, FileSpans)):
            at = 0
            for part in _pieces(value, start, len(out)):     # one chunk each: all of its view
                for _ in span_chunks(part.path, part.offset, part.nbytes,
                                     out[at:at + part.nbytes], what="the source"):
                    pass
                at += part.nbytes
        else:
            copy_bytes(value, start, out)
        with self.lock:
            self.left -= len(out)
            if self.left == 0:
                self.value = None

    def _compute(self) -> Any:
        name, shape, dtype = self.spec
        value = self.job.compute()
        if isinstance(value, (FileSpan, FileSpans)):
            _check_span(name, value, shape, dtype)
            return value
        _check_array(name, value, shape, dtype)
        return little_endian(value)


def _pieces(value: FileSpan | FileSpans, start: int = 0, length: int | None = None
            ) -> Iterable[FileSpan]:
    """Bytes ``start`` .. ``start + length`` of a span or of spans laid end to end."""
    if isinstance(value, FileSpans):
        return value.pieces(start, length)
    length = value.nbytes - start if length is None else length
    return [FileSpan(value.path, value.offset + start, length)]


def _set_size(fd: int, end: int) -> None:
    if os.fstat(fd).st_size != end:
        os.ftruncate(fd, end)


def _run_bounded(run: Callable[[int], None], count: int, workers: int) -> None:
    """``run(0..count-1)`` on ``workers`` threads, at most ``workers`` started at a time (so at
    most that many tensors are in memory); the first error stops the rest and is raised."""
    if workers <= 1:
        for i in range(count):
            run(i)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weightmap-write") as pool:
        pending: set[Future] = set()
        try:
            for i in range(count):
                if len(pending) >= workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                pending.add(pool.submit(run, i))
            for f in pending:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
