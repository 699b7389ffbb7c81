"""Re-read what a port wrote, before it reports success.

Every written tensor is read back through weightmap's own reader for the output format and
checked against the plan (name, shape, dtype); its SHA-256 (or BLAKE3, ``ALGORITHMS``) is
recorded in the manifest, and
non-finite values (NaN, ±Inf) are counted, so a port never reports success for a file that does
not hold what the plan says.

The digests run on a few threads (``hashlib`` and numpy release the GIL on large buffers). A
tensor stored raw (``MappedData``) is read back with ``pread`` into a small buffer each thread
reuses, chunk by chunk: no memory map, no page faults, no full-size temporary, and the chunk is
still in the CPU cache when it is counted for non-finite values.

A writer that knows where each tensor lands may read it back as soon as it is written, while
other tensors are still being computed (``ReadBack.take``, run by the writer's threads), or
digest the bytes as it hands them to the device (``ReadBack.stream`` fed by
``weightmap.io.direct``: ``mode="written"``, the default, digests each window as the direct
``pwrite`` that succeeded was given it; ``mode="device"`` reads each window back from the
device first, a second pass over the disk). Once
the file is complete, ``check_written`` re-parses it with weightmap's reader as always, and uses
such a digest only when the reader places the tensor at exactly the span that was read back
(same file, offset and length; writers never write a span twice); any other tensor is read
back then.
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..dtypes import FLOAT_DTYPES, count_nonfinite, itemsize
from ..errors import FormatError, MissingDependencyError, UsageError
from ..graph import MappedData, Param
from ..io.spans import span_chunks
from ..planning.plan import Plan, TensorPlan
from ..spelling import option

CHUNK = 1 << 20     # bytes per read-back pass


MODES = ("written", "device")
# per-tensor digests: SHA-256 (the default, in the standard library) or BLAKE3 (the ``blake3``
# package, ``pip install 'weightmap[fast]'``: 2.4x SHA-256's speed on one core here); the
# manifest records which (``summary.digest``) and names each tensor's digest by it
ALGORITHMS = ("sha256", "blake3")
ALGORITHM_NAMES = {"sha256": "SHA-256", "blake3": "BLAKE3"}     # as people write them


def check_algorithm(algorithm: str) -> str:
    """``algorithm`` if it is a digest weightmap can take here; a UsageError otherwise."""
    if algorithm not in ALGORITHMS:
        raise UsageError(f"{option('digest', algorithm)} is not a digest weightmap takes",
                         hint=f"{option('digest', 'sha256')} (the default) or "
                              f"{option('digest', 'blake3')} (faster; needs the blake3 package)")
    if algorithm == "blake3":
        try:
            import blake3  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{option('digest', 'blake3')} needs the blake3 package, which is not "
                "installed", hint="pip install 'weightmap[fast]' (or blake3), or use "
                f"{option('digest', 'sha256')}") from None
    return algorithm


def digest_available(algorithm: str) -> bool:
    """Whether this installation can compute ``algorithm`` (a manifest may record BLAKE3
    digests where the blake3 package is not installed)."""
    try:
        check_algorithm(algorithm)
    except (UsageError, MissingDependencyError):
        return False
    return True


def _hasher(algorithm: str) -> Any:
    if algorithm == "blake3":
        import blake3
        return blake3.blake3()
    return hashlib.sha256()


def recorded_digest(entry: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` of a manifest's tensor entry, whichever digest it holds."""
    for algorithm in ALGORITHMS:
        if entry.get(algorithm):
            return algorithm, entry[algorithm]
    return None


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"{option('read_back', mode)} is not a read-back mode",
                         hint=f"{option('read_back', 'written')} (digest what the disk is given, "
                              f"then re-parse the fsynced file) or {option('read_back', 'device')}"
                              " (also re-read every byte from the disk)")
    return mode


class ReadBack:
    """Digests of tensors read back from the output right after they were written, keyed by
    target name with the span they were read from. Thread-safe: writers call ``take`` from
    their worker threads. ``mode`` (``MODES``): what a writer past the page cache digests —
    the bytes it gave the device (``"written"``) or the bytes read back from it (``"device"``);
    ``device`` says which."""

    def __init__(self, mode: str = "written", algorithm: str = "sha256") -> None:
        self.mode = check_mode(mode)
        self.device = mode == "device"
        self.algorithm = check_algorithm(algorithm)
        self._done: dict[str, tuple[tuple[str, int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._buffers = _Buffers()

    def take(self, path: Path, t: TensorPlan, offset: int, nbytes: int) -> None:
        """Read back and digest target tensor ``t``, just written raw at ``offset`` of
        ``path``."""
        data = MappedData(str(path), offset, tuple(t.shape), t.dtype, span=nbytes)
        if data.nbytes() != nbytes or nbytes == 0:
            return                                  # left to check_written
        self._record(path, t, offset, nbytes,
                     _digest_file(data, self._buffers.chunk, self.algorithm))

    @contextlib.contextmanager
    def stream(self, path: Path, spans: Sequence[tuple[TensorPlan, int, int]],
               workers: int | None = None) -> Iterator[Callable[[int, memoryview], Future]]:
        """A consumer of the bytes of ``path`` in file order (``feed(offset, bytes)``, offsets
        rising without gaps between calls, from one thread) that digests the tensors at
        ``spans`` (tensor, offset, nbytes; not overlapping) as their bytes go by, on
        ``workers`` threads (default: the CPUs, at most 2): each tensor's parts in order, on
        one thread at a time, different tensors at once. ``feed`` returns a Future done when
        this part of the bytes is digested (the caller keeps the buffer until then); leaving
        the block waits for every digest."""
        order = sorted((s for s in spans if s[2] > 0), key=lambda s: s[1])
        starts = [s[1] for s in order]
        workers = workers or max(1, min(2, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix="weightmap-digest") as pool:
            lanes: dict[int, _Lane] = {}

            def feed(offset: int, view: memoryview) -> Future:
                end = offset + len(view)
                parts = []
                i = max(0, bisect.bisect_right(starts, offset) - 1)
                while i < len(order) and order[i][1] < end:
                    t, start, nbytes = order[i]
                    a, b = max(offset, start), min(end, start + nbytes)
                    if b > a:
                        parts.append((i, view[a - offset:b - offset], b == start + nbytes))
                    i += 1
                done = _Countdown(len(parts))
                for i, part, last in parts:
                    if i not in lanes:
                        lanes[i] = _Lane(pool, Digest(order[i][0].dtype, self.algorithm),
                                         self._recorder(path, order[i]))
                    lanes[i].push(part, last, done.one)
                    if last:
                        del lanes[i]
                return done.future
            yield feed

    def _recorder(self, path: Path, span: tuple[TensorPlan, int, int]
                  ) -> Callable[[dict[str, Any]], None]:
        t, offset, nbytes = span
        return lambda entry: self._record(path, t, offset, nbytes, entry)

    def _record(self, path: Path, t: TensorPlan, offset: int, nbytes: int,
                entry: dict[str, Any]) -> None:
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


class _Lane:
    """One tensor's digest, fed its parts in order on a pool thread, one part at a time."""

    def __init__(self, pool: ThreadPoolExecutor, digest: "Digest",
                 record: Callable[[dict[str, Any]], None]) -> None:
        self.pool, self.record = pool, record
        self.digest = digest
        self.parts: collections.deque = collections.deque()
        self.busy = False
        self.lock = threading.Lock()

    def push(self, part: memoryview, last: bool, done: Callable[[BaseException | None], None]
             ) -> None:
        with self.lock:
            self.parts.append((part, last, done))
            if self.busy:
                return
            self.busy = True
        self.pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self.lock:
                if not self.parts:
                    self.busy = False
                    return
                part, last, done = self.parts.popleft()
            try:
                self.digest.update(part)
                if last:
                    self.record(self.digest.entry())
            except BaseException as exc:        # handed to the writer, which raises it
                done(exc)
            else:
                done(None)
            finally:
                del part


class _Countdown:
    """A Future done when ``one`` has been called ``count`` times (failed with the first
    error given)."""

    def __init__(self, count: int) -> None:
        self.future: Future = Future()
        self.left, self.error = count, None
        self.lock = threading.Lock()
        if count == 0:
            self.future.set_result(None)

    def one(self, error: BaseException | None) -> None:
        with self.lock:
            self.left -= 1
            self.error = self.error or error
            finished = self.left == 0
        if finished:
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(None)


def check_written(paths: Path | Sequence[Path], plan: Plan, *, where: str | None = None,
                  workers: int | None = None, read_back: ReadBack | None = None,
                  algorithm: str = "sha256") -> dict[str, dict[str, Any]]:
    """``{target name: {algorithm: hex[, "nonfinite"]}}`` for the file(s) at ``paths`` (one
    output, or the shards of one), in plan order; FormatError when a tensor is missing or
    differs from the plan. ``read_back``: digests a writer took as it wrote (see the module
    doc; its algorithm is used then)."""
    if read_back is not None:
        algorithm = read_back.algorithm
    from ..reading.read import read_path
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
    todo: list[tuple[str, Param]] = []
    for t in plan.tensors:
        p = written.get(t.target)
        if p is None:
            raise FormatError("the written file lacks this tensor", path=shown, tensor=t.target,
                              hint="the writer failed; nothing was kept")
        if tuple(p.shape) != tuple(t.shape) or p.dtype != t.dtype:
            raise FormatError(f"written as {p.shape} {p.dtype}, the plan says {t.shape} "
                              f"{t.dtype}", path=shown, tensor=t.target)
        todo.append((t.target, p))
    done = {name: read_back.lookup(name, p) for name, p in todo} if read_back else {}
    rest = [job for job in todo if done.get(job[0]) is None]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    buffers = _Buffers()
    if workers == 1 or len(rest) < 2:
        digests = [_digest_param(p, buffers, algorithm) for _, p in rest]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weightmap-readback") as pool:
            digests = list(pool.map(lambda job: _digest_param(job[1], buffers, algorithm),
                                    rest))
    done.update((name, entry) for (name, _), entry in zip(rest, digests))
    return {name: done[name] for name, _ in todo}


def digest(p: Param, algorithm: str = "sha256") -> dict[str, Any]:
    """One tensor's ``{algorithm: hex[, "nonfinite"]}``, as ``check_written`` records it."""
    return _digest_param(p, _Buffers(), algorithm)


class _Buffers(threading.local):
    def __init__(self) -> None:
        self.chunk = np.empty(CHUNK, dtype=np.uint8)


def _digest_param(p: Param, buffers: _Buffers, algorithm: str) -> dict[str, Any]:
    data = p.data
    if isinstance(data, MappedData) and not data.fortran_order and data.nbytes() > 0:
        return _digest_file(data, buffers.chunk, algorithm)
    digest = Digest(p.dtype, algorithm)
    flat = np.ascontiguousarray(p.read()).reshape(-1)
    step = max(1, CHUNK // max(1, flat.itemsize))
    for start in range(0, flat.size, step):
        digest.update(memoryview(flat[start:start + step].view(np.uint8)))
    return digest.entry()


def _digest_file(data: MappedData, chunk: np.ndarray, algorithm: str) -> dict[str, Any]:
    """The digest of a raw stored tensor, read with ``pread`` chunk by chunk (the bytes
    ``MappedData.read()`` would view, in the same order)."""
    digest = Digest(data.dtype, algorithm)
    for part in span_chunks(data.path, data.offset, data.stored_nbytes(), memoryview(chunk),
                            what="the written file"):
        digest.update(part)
    return digest.entry()


class Digest:
    """A tensor's digest (SHA-256, or BLAKE3: ``ALGORITHMS``) and count of non-finite values
    (floating dtypes), over its bytes fed in order in parts of any length (an element cut
    between two parts is counted once)."""

    def __init__(self, dtype: str, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.sha = _hasher(algorithm)
        self.dtype = dtype if dtype in FLOAT_DTYPES else None
        self.carry = b""
        self.bad = 0

    def update(self, part: memoryview) -> None:
        self.sha.update(part)
        if self.dtype is None:
            return
        size = itemsize(self.dtype)
        if self.carry:
            take = min(size - len(self.carry), len(part))
            self.carry += bytes(part[:take])
            part = part[take:]
            if len(self.carry) < size:
                return
            self._count(self.carry)
            self.carry = b""
        whole = len(part) - len(part) % size
        self._count(part[:whole])
        self.carry = bytes(part[whole:])

    def _count(self, data: bytes | memoryview) -> None:
        for start in range(0, len(data), CHUNK):        # temporaries that stay in the cache
            self.bad += count_nonfinite(data[start:start + CHUNK], self.dtype)

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {self.algorithm: self.sha.hexdigest()}
        if self.bad:
            entry["nonfinite"] = self.bad
        return entry
