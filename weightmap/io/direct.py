"""Writing a big output front to back past the page cache (``O_DIRECT``), reading each part back
from the device as soon as it is there.

Why: a buffered write of a multi-GB file first copies every byte into freshly allocated
page-cache pages, and what that costs swings with the machine's memory state — measured on the
2-core CI machine (a VM), the same 1.4 GB of ``pwrite`` took 0.3 s in one run and 3.7 s in the
next — then the fsync waits for the disk anyway. With ``O_DIRECT`` the disk reads the bytes
straight from a few reused buffers (1.4 GB in 0.55-0.8 s here, steady), the port does not evict
the page cache of everything else on the machine, and the read-back check sees what the device
holds, not a cached copy.

The file is cut into windows of ``WINDOW`` bytes (a multiple of ``BLOCK``: direct I/O needs
block-aligned offsets, lengths and memory). A window is filled by one of a few threads from the
segments that overlap it (``Segment.fill``: the header, a source span read with ``pread``, rows of
a transposed array ...), written with one ``pwrite``, then read back from the device into a
second buffer (``device=True``), or not (``device=False``: the consumer gets the very buffer
the device was given by the ``pwrite`` that succeeded). The calling thread hands the windows to
``reread(offset, bytes)`` strictly in file order, so a digest can run over the file as one
stream while the threads fill, write (and read) the next windows; a consumer that digests on
other threads keeps a window's buffer until it is done. At most ``depth`` windows are being
written and as many wait for their consumer: memory is at most ``2 x depth x WINDOW`` (twice
that when reading back from the device) whatever the file size. The last window is padded to a whole block and the file cut back to its size at
the end.

Where the file system refuses direct I/O (tmpfs, some network and FUSE file systems) or the
platform has no ``O_DIRECT``, ``open_direct`` says so and the writer keeps the page-cache path.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import mmap
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from .spans import pread_full

BLOCK = 4096                # alignment of offsets, lengths and buffers (covers 512 B devices)
WINDOW = 8 << 20            # bytes per write; a multiple of BLOCK
MIN_SIZE = 64 << 20         # smaller outputs go through the page cache (auto mode): as fast


@dataclass(frozen=True)
class Segment:
    """``nbytes`` bytes of the file at ``start``. ``fill(out, offset)`` writes bytes ``offset`` ..
    ``offset + len(out)`` of the segment into ``out`` (called from several threads, for
    different parts); ``done()``, if given, once all of them are written."""

    start: int
    nbytes: int
    fill: Callable[[memoryview, int], None]
    done: Callable[[], None] | None = None


def wanted(direct: bool | None, size: int) -> bool:
    """Whether to try direct I/O: ``direct`` True/False forces it, None decides by size."""
    return bool(getattr(os, "O_DIRECT", 0)) and (size >= MIN_SIZE if direct is None else direct)


def open_direct(path: os.PathLike | str) -> int | None:
    """``path`` opened for direct reads and writes (created if missing), or None where the file
    system or platform does not do direct I/O. Probes with one block at offset 0, which the
    first window overwrites."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flag, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise
    probe = mmap.mmap(-1, BLOCK)
    try:
        os.pwritev(fd, [probe], 0)
        os.preadv(fd, [probe], 0)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise
    finally:
        probe.close()
    return fd


def write(fd: int, size: int, segments: Sequence[Segment], *,
          reread: Callable[[int, memoryview], Future | None] | None = None,
          device: bool = True, workers: int = 2, window: int | None = None,
          depth: int | None = None) -> None:
    """Write ``segments`` (sorted, not overlapping; gaps are zeros) as the first ``size`` bytes
    of ``fd`` (from ``open_direct``) and cut the file to ``size``. ``workers`` threads fill,
    write (and read back) windows, at most ``depth`` windows at a time; with ``reread`` every
    window is handed over in file order, on the calling thread, once written: read back from
    the device (``device``) or as it was written. ``reread`` may return a Future: the window's
    buffer is then kept until it is done (so the consumer can digest windows on other
    threads; up to ``depth`` more windows wait for it), and ``write`` returns once all are
    done, raising the first error. The first error (a failing ``fill``, an I/O error, a
    consumer's) stops the rest and is raised."""
    window = window or WINDOW
    if window % BLOCK or window <= 0:
        raise ValueError(f"window {window} is not a positive multiple of {BLOCK}")
    count = -(-size // window)
    if count == 0:
        os.ftruncate(fd, 0)
        return
    plan = _Windows(segments, window, count)
    depth = min(depth or 2 * workers, count)
    slots = min(2 * depth if reread else depth, count)
    buffers = [(mmap.mmap(-1, window), mmap.mmap(-1, window) if reread and device else None)
               for _ in range(slots)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(slots):
        free.put(slot)
    consumed: list[Future] = []

    def run(k: int, slot: int) -> tuple[int, int, int]:
        out, back = buffers[slot]
        lo = k * window
        n = min(window, size - lo)
        view = memoryview(out)
        plan.fill(k, view, lo, n)
        length = -(-n // BLOCK) * BLOCK
        _pwrite(fd, view[:length], lo)
        plan.written(k)
        if back is not None:
            _pread(fd, memoryview(back)[:length], lo)
        return slot, lo, n

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weightmap-direct") as pool:
            pending: collections.deque[Future] = collections.deque()
            try:
                k = 0
                while k < count or pending:
                    while k < count and len(pending) < depth:
                        pending.append(pool.submit(run, k, free.get()))
                        k += 1
                    slot, lo, n = pending.popleft().result()
                    taken = None
                    if reread is not None:
                        out, back = buffers[slot]
                        taken = reread(lo, memoryview(out if back is None else back)[:n])
                    if taken is None:
                        free.put(slot)
                    else:
                        consumed.append(taken)
                        taken.add_done_callback(lambda _, slot=slot: free.put(slot))
                        if taken.done() and taken.exception() is not None:
                            taken.result()
                for f in consumed:
                    f.result()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        os.ftruncate(fd, size)
    finally:
        for f in consumed:      # no buffer is closed under a consumer still reading it
            with contextlib.suppress(BaseException):
                f.exception()
        for pair in buffers:
            for buf in pair:
                if buf is not None:
                    with contextlib.suppress(BufferError):     # a view kept by a traceback
                        buf.close()


class _Windows:
    """Which segments each window holds, and when a segment is completely written."""

    def __init__(self, segments: Sequence[Segment], window: int, count: int) -> None:
        self.window = window
        self.by_window: list[list[int]] = [[] for _ in range(count)]
        self.segments = list(segments)
        self.left = []
        for i, seg in enumerate(self.segments):
            first = min(seg.start // window, count - 1)
            last = max(first, min((seg.start + seg.nbytes - 1) // window, count - 1))
            for k in range(first, last + 1):
                self.by_window[k].append(i)
            self.left.append(last - first + 1)
        self.lock = threading.Lock()

    def fill(self, k: int, out: memoryview, lo: int, n: int) -> None:
        at = lo
        for i in self.by_window[k]:
            seg = self.segments[i]
            a, b = max(lo, seg.start), min(lo + n, seg.start + seg.nbytes)
            if a > at:
                out[at - lo:a - lo] = bytes(a - at)
            if b > a:
                seg.fill(out[a - lo:b - lo], a - seg.start)
            at = max(at, b)
        pad = -(-n // BLOCK) * BLOCK
        if at < lo + pad:
            out[at - lo:pad] = bytes(lo + pad - at)

    def written(self, k: int) -> None:
        finished = []
        with self.lock:
            for i in self.by_window[k]:
                self.left[i] -= 1
                if self.left[i] == 0:
                    finished.append(self.segments[i])
        for seg in finished:
            if seg.done is not None:
                seg.done()


def _pwrite(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.pwritev(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "a direct write wrote nothing")
        done += n


def _pread(fd: int, view: memoryview, offset: int) -> None:
    got = pread_full(fd, view, offset)
    if got < len(view):
        raise OSError(errno.EIO, f"the file ended {offset + got} bytes in, while reading "
                                 f"back what was written there")
