"""Writing past the page cache, window by window, reading each window back from the device
(weightmap/io/direct.py). The windows here are a few blocks, so every segment shape crosses them."""
from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightmap.io import direct
from weightmap.io.direct import BLOCK, Segment

WINDOW = 2 * BLOCK


def _bytes_fill(data: bytes):
    def fill(out, start):
        out[:] = data[start:start + len(out)]
    return fill


def _segments(layout, seed=0):
    """Segments at (start, nbytes) with random bytes; the whole file's expected bytes (gaps
    zero)."""
    rng = np.random.default_rng(seed)
    size = max(s + n for s, n in layout)
    want = bytearray(size)
    segs = []
    for start, nbytes in layout:
        data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        want[start:start + nbytes] = data
        segs.append(Segment(start, nbytes, _bytes_fill(data)))
    return segs, bytes(want)


def _open(tmp_path, name="out.bin"):
    fd = direct.open_direct(tmp_path / name)
    if fd is None:
        pytest.skip("this file system does not do O_DIRECT")
    return fd


LAYOUTS = {
    "header and tensors across windows": [(0, 100), (100, 5000), (5100, 3), (5103, 20000)],
    "one window, size not a block multiple": [(0, 17)],
    "exact windows": [(0, WINDOW), (WINDOW, WINDOW)],
    "gaps are zeros": [(0, 10), (9000, 10), (20000, 5)],
    "empty segments": [(0, 8), (8, 0), (8, 9000), (9008, 0)],
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("workers", [1, 3])
def test_the_file_holds_the_segments_and_is_read_back_in_order(tmp_path, layout, workers):
    segs, want = _segments(layout)
    seen = []
    fd = _open(tmp_path)
    try:
        direct.write(fd, len(want), segs, workers=workers, window=WINDOW, depth=2,
                     reread=lambda offset, view: seen.append((offset, bytes(view))))
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == want
    assert [o for o, _ in seen] == list(range(0, len(want), WINDOW))
    assert b"".join(v for _, v in seen) == want


@pytest.mark.parametrize("workers", [1, 3])
def test_without_device_reads_the_windows_are_handed_over_as_written(tmp_path, monkeypatch,
                                                                     workers):
    segs, want = _segments(LAYOUTS["header and tensors across windows"])
    seen = []

    def no_read(*args):
        raise AssertionError("read back from the device")

    monkeypatch.setattr(direct, "_pread", no_read)
    fd = _open(tmp_path)
    try:
        direct.write(fd, len(want), segs, workers=workers, window=WINDOW, depth=2,
                     device=False, reread=lambda offset, view: seen.append((offset, bytes(view))))
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == want
    assert [o for o, _ in seen] == list(range(0, len(want), WINDOW))
    assert b"".join(v for _, v in seen) == want


def test_a_window_handed_over_is_not_reused_before_its_consumer_is_done(tmp_path):
    """A consumer that digests windows on other threads (returns a Future) reads each one
    later, while further windows are written: its buffer must still hold that window."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    segs, want = _segments([(0, 100), (100, 20 * WINDOW)], seed=4)
    seen = {}

    def late(offset, view):
        time.sleep(0.01)
        seen[offset] = bytes(view)

    fd = _open(tmp_path)
    try:
        with ThreadPoolExecutor(2) as pool:
            direct.write(fd, len(want), segs, workers=3, window=WINDOW, depth=2, device=False,
                         reread=lambda offset, view: pool.submit(late, offset, view))
    finally:
        os.close(fd)
    assert b"".join(seen[o] for o in sorted(seen)) == want


def test_a_failing_consumer_stops_the_write(tmp_path):
    from concurrent.futures import Future
    segs, want = _segments([(0, 100), (100, 6 * WINDOW)])

    def failing(offset, view):
        f = Future()
        if offset >= 2 * WINDOW:
            f.set_exception(ValueError("digest failed"))
        else:
            f.set_result(None)
        return f

    fd = _open(tmp_path)
    try:
        with pytest.raises(ValueError, match="digest failed"):
            direct.write(fd, len(want), segs, workers=2, window=WINDOW, depth=2, device=False,
                         reread=failing)
    finally:
        os.close(fd)


def test_done_is_called_once_per_segment_after_its_last_window(tmp_path):
    segs, want = _segments([(0, 100), (100, 3 * WINDOW), (100 + 3 * WINDOW, 0), (100 + 3 * WINDOW, 50)])
    calls = []
    lock = threading.Lock()

    def done_for(i):
        def done():
            with lock:
                calls.append(i)
        return done

    segs = [Segment(s.start, s.nbytes, s.fill, done_for(i)) for i, s in enumerate(segs)]
    fd = _open(tmp_path)
    try:
        direct.write(fd, len(want), segs, workers=2, window=WINDOW)
    finally:
        os.close(fd)
    assert sorted(calls) == [0, 1, 2, 3]


def test_an_existing_longer_file_is_cut_to_size(tmp_path):
    (tmp_path / "out.bin").write_bytes(b"\xff" * 50000)
    segs, want = _segments([(0, 3000)])
    fd = _open(tmp_path)
    try:
        direct.write(fd, len(want), segs, window=WINDOW)
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == want


def test_memory_is_bounded_by_depth(tmp_path):
    """At most ``depth`` windows are filled and not yet handed over at any time."""
    active, most = [0], [0]
    lock = threading.Lock()

    def fill(out, start):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        out[:] = bytes(len(out))

    def reread(offset, view):
        with lock:
            active[0] -= 1

    fd = _open(tmp_path)
    try:
        direct.write(fd, 40 * WINDOW, [Segment(0, 40 * WINDOW, fill)], workers=4,
                     window=WINDOW, depth=3, reread=reread)
    finally:
        os.close(fd)
    assert 1 <= most[0] <= 3


@pytest.mark.parametrize("where", ["fill", "reread"])
def test_the_first_error_stops_the_write_and_is_raised(tmp_path, where):
    filled = []

    def fill(out, start):
        if where == "fill" and start >= 5 * WINDOW:
            raise ValueError("bad tensor")
        filled.append(start)
        out[:] = bytes(len(out))

    def reread(offset, view):
        if where == "reread" and offset >= 5 * WINDOW:
            raise ValueError("bad digest")

    fd = _open(tmp_path)
    try:
        with pytest.raises(ValueError, match="bad"):
            direct.write(fd, 100 * WINDOW, [Segment(0, 100 * WINDOW, fill)], workers=2,
                         window=WINDOW, depth=2, reread=reread)
    finally:
        os.close(fd)
    assert len(filled) < 20           # stopped soon, not run to the end


def test_an_io_error_is_raised_as_such(tmp_path, monkeypatch):
    segs, want = _segments([(0, 5 * WINDOW)])
    real = os.pwritev

    def failing(fd, buffers, offset, *rest):
        if offset >= 2 * WINDOW:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers, offset, *rest)

    fd = _open(tmp_path)
    monkeypatch.setattr(os, "pwritev", failing)
    try:
        with pytest.raises(OSError, match="No space"):
            direct.write(fd, len(want), segs, window=WINDOW)
    finally:
        os.close(fd)


def test_an_empty_file_is_empty(tmp_path):
    (tmp_path / "out.bin").write_bytes(b"old")
    fd = _open(tmp_path)
    try:
        direct.write(fd, 0, [Segment(0, 0, _bytes_fill(b""))], window=WINDOW,
                     reread=lambda offset, view: pytest.fail("nothing to read back"))
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == b""


def test_windows_must_be_whole_blocks(tmp_path):
    fd = _open(tmp_path)
    try:
        with pytest.raises(ValueError, match="multiple of 4096"):
            direct.write(fd, 10, [], window=1000)
    finally:
        os.close(fd)


def test_no_direct_io_where_the_file_system_refuses_it(tmp_path, monkeypatch):
    """tmpfs refuses O_DIRECT at open; some file systems only at the first write. Either way the
    caller is told to use the page cache (None), and no descriptor leaks."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        path = os.path.join(shm, f"weightmap-direct-{os.getpid()}")
        try:
            fd = direct.open_direct(path)
            if fd is not None:               # a /dev/shm that does direct I/O: nothing to see
                os.close(fd)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def refuse(*args, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "pwritev", refuse)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    assert direct.open_direct(tmp_path / "x.bin") is None
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before
    monkeypatch.undo()
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    assert direct.open_direct(tmp_path / "y.bin") is None
    assert not direct.wanted(True, 1 << 40)


def test_wanted_by_size_unless_forced():
    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("no O_DIRECT on this platform")
    assert direct.wanted(None, direct.MIN_SIZE) and not direct.wanted(None, direct.MIN_SIZE - 1)
    assert direct.wanted(True, 1) and not direct.wanted(False, 1 << 40)


def test_any_layout_any_threads_gives_the_same_bytes(tmp_path):
    """Property: segments of any size (zero to a few windows) with any gaps, on any number of
    threads and windows in flight, land byte for byte and are read back in order."""
    probe = _open(tmp_path, "probe")
    os.close(probe)

    @settings(derandomize=True, max_examples=40, deadline=None, database=None)
    @given(parts=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 3 * WINDOW)),
                          min_size=1, max_size=8),
           workers=st.integers(1, 3), depth=st.integers(1, 4))
    def check(parts, workers, depth):
        layout, at = [], 0
        for gap, nbytes in parts:
            at += gap
            layout.append((at, nbytes))
            at += nbytes
        segs, want = _segments(layout, seed=len(layout))
        if not want:
            return
        seen = []
        fd = direct.open_direct(tmp_path / "prop.bin")
        try:
            direct.write(fd, len(want), segs, workers=workers, window=WINDOW, depth=depth,
                         reread=lambda offset, view: seen.append(bytes(view)))
        finally:
            os.close(fd)
        assert (tmp_path / "prop.bin").read_bytes() == want
        assert b"".join(seen) == want

    check()
