"""Atomic output files: write to a temporary file in the same folder, fsync, rename.

A failed write leaves nothing behind; an existing file is replaced only with ``force``; a symlink
is never written through, and the output may not be one of the inputs.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError, UsageError


def check_output(out: Path, *, force: bool = False, inputs: Iterable[Path] = ()) -> None:
    if out.is_symlink():
        raise UsageError("the output path is a symbolic link; weightmap never writes through "
                         "one", path=out, hint="choose another --out")
    for src in inputs:
        try:
            if src.exists() and out.exists() and os.path.samefile(src, out):
                raise UsageError("the output would overwrite an input", path=out,
                                 hint="choose another --out")
        except OSError:
            pass
    if out.exists() and not force:
        raise UsageError("the output file exists", path=out,
                         hint="pass --force (force=True) to replace it, or choose another --out")
    if out.exists() and out.is_dir():
        raise UsageError("the output path is a folder", path=out)
    if not out.parent.is_dir():
        raise UsageError("the output folder does not exist", path=out.parent)


@contextlib.contextmanager
def atomic_path(out: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it onto ``out`` if the block succeeds.

    An ``OSError`` on the way (no space left, no permission, an I/O error) becomes an
    ``OutputError`` naming ``out``; the temporary file is removed either way."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp" + suffix,
                                   dir=out.parent)
    except OSError as exc:
        raise output_error(out, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            usual_mode(tmp_path)
        os.replace(tmp_path, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError):
            raise output_error(out, exc) from exc
        raise


def usual_mode(path: Path) -> None:
    """Give ``path`` the permissions a new file gets (0666 less the umask), as ``open`` would:
    temporary files are created 0600, and an output is not a secret."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status`` on Linux); else
    set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_output(path: Path) -> int:
    """A file descriptor to write ``path`` (created if missing), opened without ``O_TRUNC``:
    ext4 treats a truncate-to-zero-and-rewrite as a file replacement and flushes the whole file,
    synchronously, when it is closed (0.4 s per GB here); without it the flush waits for the
    fsync, which runs beside the read-back check. The writer cuts what lies beyond its last
    byte (``os.ftruncate``), so nothing of an older content survives."""
    return os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)


def output_error(out: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
    return OutputError(f"writing the output failed: {reason}{where}", path=out,
                       hint="nothing was kept; check the free space and permissions of the "
                            "output folder, or choose another --out")


@contextlib.contextmanager
def background_fsync(path: Path) -> Iterator[None]:
    """fsync ``path`` on a thread while the block runs (the disk works while the CPU checks the
    file); an fsync error is raised when the block ends. ``atomic_path`` fsyncs again before
    renaming, which then costs next to nothing."""
    errors: list[OSError] = []

    def sync() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            errors.append(exc)

    worker = None
    if Path(path).is_file():
        worker = threading.Thread(target=sync, name="weightmap-fsync", daemon=True)
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.join()
    if errors:
        raise errors[0]
