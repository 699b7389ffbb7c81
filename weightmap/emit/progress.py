"""Progress of a long port on the terminal: tensors and bytes done, rate, time left.

Shown on stderr only when it is a terminal (never in logs, pipes or CI output) and not asked to
be quiet; redrawn at most a few times a second, on one line, erased when the port ends. Thread
safe: writers may report from several threads.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

REDRAW_SECONDS = 0.2


def wanted(stream: IO[str] | None = None, quiet: bool = False) -> bool:
    """Progress is drawn only on a terminal, and never when quiet."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"   # pragma: no cover (the loop returns at GB)


class Progress:
    """Counts tensors and bytes; draws ``label: 12/292 tensors, 0.36/1.42 GB (25%), 0.9 GB/s``.
    ``unit`` names what is counted (a migration counts jobs, and those that failed)."""

    def __init__(self, tensors: int, nbytes: int, *, label: str = "writing",
                 stream: IO[str] | None = None, clock: Any = time.monotonic,
                 unit: str = "tensors") -> None:
        self.total_tensors, self.total_bytes = tensors, nbytes
        self.done_tensors = self.done_bytes = self.failed = 0
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.last_draw = -1.0
        self.width = 0
        self.lock = threading.Lock()

    def advance(self, nbytes: int, tensors: int = 1, failed: int = 0) -> None:
        with self.lock:
            self.done_tensors += tensors
            self.done_bytes += nbytes
            self.failed += failed
            now = self.clock()
            if now - self.last_draw >= REDRAW_SECONDS or self.done_tensors >= self.total_tensors:
                self.last_draw = now
                self._draw(self.line(now))

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        pct = 100.0 * self.done_bytes / self.total_bytes if self.total_bytes else 100.0
        rate = self.done_bytes / elapsed
        text = (f"{self.label}: {self.done_tensors}/{self.total_tensors} {self.unit}, "
                + (f"{self.failed} failed, " if self.failed else "") +
                f"{human_bytes(self.done_bytes)}/{human_bytes(self.total_bytes)} ({pct:.0f}%), "
                f"{human_bytes(rate)}/s")
        if 0 < self.done_bytes < self.total_bytes:
            text += f", {(self.total_bytes - self.done_bytes) / rate:.0f} s left"
        return text

    def _draw(self, text: str) -> None:
        pad = " " * max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def close(self) -> None:
        """Erase the line (the report follows on stdout)."""
        with self.lock:
            if self.width:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self.width = 0


def start(tensors: int, nbytes: int, *, quiet: bool = False, stream: IO[str] | None = None,
          label: str = "writing", unit: str = "tensors") -> Progress | None:
    """A Progress when it should be shown, else None."""
    return Progress(tensors, nbytes, label=label, stream=stream, unit=unit) \
        if wanted(stream, quiet) else None
