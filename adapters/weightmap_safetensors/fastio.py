"""Moving tensor bytes into an output file with as few copies as the platform allows.

* ``copy_span``: bytes already in a file go file to file with ``os.copy_file_range`` (in the
  kernel; nothing mapped into this process), falling back to ``pwrite`` from a memory map of the
  source window, chunk by chunk.
* ``pwrite_all``: positioned writes (threads writing one file at different offsets never share a
  file position), looping on short writes.
"""
from __future__ import annotations

import errno
import mmap
import os

CHUNK = 64 << 20           # bytes per copy_file_range / pwrite call, and per mapped window
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                       errno.ETXTBSY, errno.EPERM, errno.EBADF}


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:done + CHUNK], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        done += n


def copy_span(src_path: str, src_offset: int, nbytes: int, dst_fd: int, dst_offset: int) -> None:
    """Copy ``nbytes`` at ``src_offset`` of ``src_path`` to ``dst_offset`` of ``dst_fd``."""
    with open(src_path, "rb") as src:
        done = _copy_file_range(src.fileno(), src_offset, nbytes, dst_fd, dst_offset)
        if done < nbytes:
            _copy_mapped(src.fileno(), src_offset + done, nbytes - done, dst_fd,
                         dst_offset + done)


def _copy_file_range(src_fd: int, src_offset: int, nbytes: int, dst_fd: int,
                     dst_offset: int) -> int:
    """Bytes copied in the kernel; fewer than asked when the call is not supported here (the
    rest is then copied by the caller)."""
    copy_range = getattr(os, "copy_file_range", None)
    done = 0
    while copy_range is not None and done < nbytes:
        try:
            n = copy_range(src_fd, dst_fd, min(CHUNK, nbytes - done), src_offset + done,
                           dst_offset + done)
        except OSError as exc:
            if exc.errno in _NO_COPY_FILE_RANGE:
                return done
            raise
        if n == 0:                        # end of the source: it is shorter than it said
            raise OSError(errno.EIO, f"{os.fstat(src_fd).st_size}-byte source ended early")
        done += n
    return done


def _copy_mapped(src_fd: int, src_offset: int, nbytes: int, dst_fd: int,
                 dst_offset: int) -> None:
    """pwrite from a memory map of the source, one window at a time (bounded resident set)."""
    done = 0
    while done < nbytes:
        start = src_offset + done
        base = start - start % mmap.ALLOCATIONGRANULARITY
        length = min(CHUNK, nbytes - done)
        with mmap.mmap(src_fd, length + (start - base), access=mmap.ACCESS_READ,
                       offset=base) as window:
            with memoryview(window) as view:
                pwrite_all(dst_fd, view[start - base:start - base + length], dst_offset + done)
        done += length
