"""Spans of files: a tensor's stored bytes as (path, offset, length), read with ``pread`` into a
reused buffer; a writer may copy such a span file to file without reading it into Python."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from ..errors import FormatError


@dataclass(frozen=True)
class FileSpan:
    """A target tensor that is exactly a source tensor's stored bytes (C order, little-endian):
    a writer may copy them file to file (``os.copy_file_range``) without reading them into
    Python at all."""

    path: str
    offset: int
    nbytes: int


def span_chunks(path: str, offset: int, nbytes: int, buffer: memoryview, *,
                what: str = "the file") -> Iterator[memoryview]:
    """The ``nbytes`` stored at ``offset`` of ``path``, read with ``pread`` into ``buffer`` and
    handed out as views of it, each full but the last (valid until the next is asked for);
    FormatError ("``what`` ends early") when the file ends first. No memory map, no page
    faults, no temporary of the span's size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < nbytes:
            want = min(len(buffer), nbytes - done)
            if pread_full(fd, buffer[:want], offset + done) < want:
                raise FormatError(f"{what} ends early", path=path, hint="the file is truncated")
            yield buffer[:want]
            done += want
    finally:
        os.close(fd)


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` of ``fd`` with ``pread``, looping on short reads; the bytes
    read, fewer than ``len(view)`` only where the file ends."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            break
        got += n
    return got
