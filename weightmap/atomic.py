"""Outputs that appear whole or not at all, never over what they should not replace.

One mechanism for every output of a port: a single file, a sharded safetensors output (shards
and index), an ONNX model with its external data file, the manifest and a saved plan.

1. **Check** every written path before anything is written (``check_output``): not a symlink,
   folder, device, FIFO or socket (with or without ``force``), not one of the files the port
   reads (by file identity, ``st_dev``/``st_ino``: a hard link or another spelling of an input
   is the input), not an existing file without ``force``; and no two written paths the same
   file (``check_distinct``).
2. **Stage** (``Stage``): every file is written under its final name inside a hidden folder
   ``.weightmap-tmp-*`` beside its final place, on the same file system. The names inside are
   the real ones, so the writers (h5py, Keras' ``save_weights``, which insists on its suffix)
   and the read-back check (a shard index naming its shards, an ONNX model naming its data file)
   work on the staged set exactly as a user's reader will on the published one. No reader takes
   the folder for a checkpoint: folder readers never descend into it, and a file inside one
   that no running port holds is refused (``abandoned``).
3. **Verify** (the caller reads the staged files back), then **publish**
   (``Stage.publish``): side files first (shards, external data), then the output, then the
   manifest and the plan. A new file is published with ``link`` then ``unlink``, which fails if
   the name appeared meanwhile (another port racing to the same output loses, exit 2); with
   ``force`` an existing file is kept as a hard link inside the staging folder until everything
   is published, so a failure mid-way puts every old file back. Signals (SIGINT, SIGTERM,
   SIGHUP) are held during the few renames and delivered after.
4. The staging folder is removed in every case; one left by a process killed with ``kill -9``
   (its ``flock`` is gone with the process) is removed by the next port into that folder.

Why not ``O_TMPFILE`` + ``linkat``: an unnamed file cannot be handed to h5py, to Keras' saver
or to a reader that finds an ONNX model's data file or a shard by its name beside the file that
names it, and the read-back check must read what a user's reader will read. A hidden folder of
real names serves every writer alike; what a ``kill -9`` leaves there is refused by every reader
and cleared by the next port.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import OutputError, UsageError
from .spelling import option

try:
    import fcntl
except ImportError:            # no flock (Windows): staging folders are never taken as left over
    fcntl = None

STAGE_PREFIX = ".weightmap-tmp-"
_OLD = ".weightmap-old"          # inside a staging folder: the files a forced port replaces
STALE_SECONDS = 60               # a staging folder younger than this is never cleared
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def identity(path: os.PathLike | str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file ``path`` names (symlinks followed), None if none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def check_output(out: Path, *, force: bool = False, inputs: Iterable[Path] = (),
                 named_by: str = "out") -> None:
    """Refuse writing ``out`` (a ``UsageError``, before anything is written) when it is a
    symlink, a folder, a device, FIFO or socket, one of ``inputs`` (by file identity), an
    existing file without ``force``, or in a folder that does not exist. ``named_by``: the
    option that names ``out`` (``out``, ``html``, ``report``), which the messages name."""
    out = Path(out)
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise output_error(out, exc) from exc
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise UsageError("the output path is a symbolic link; weightmap never writes through "
                         "one", path=out, hint=f"choose another {option(named_by)}")
    if info is None:
        if not out.parent.is_dir():
            raise UsageError("the output folder does not exist", path=out.parent)
        return
    if stat.S_ISDIR(info.st_mode):
        raise UsageError("the output path is a folder", path=out, hint="name a file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError("the output path is a device, FIFO or socket, not a regular file; "
                         f"weightmap never writes to one, even with {option('force', True)}",
                         path=out,
                         hint="choose another path")
    mine = (info.st_dev, info.st_ino)
    if any(identity(src) == mine for src in inputs):
        raise UsageError("the output would overwrite an input of this port (the same file, "
                         "by name or by a hard link)", path=out,
                         hint="choose a path that is none of the files the port reads")
    if not force:
        raise UsageError("the output file exists", path=out,
                         hint=f"pass {option('force', True)} to replace it, or choose another "
                              f"{option(named_by)}")


def _spelled(path: Path) -> str:
    """One spelling per file for paths that may not exist yet: the real folder + the name."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def check_distinct(paths: Sequence[Path]) -> None:
    """No two of a port's written paths (output, side files, manifest, plan) name one file."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = _spelled(Path(path))
        ident = identity(path)
        for other_key, other in seen.items():
            if key == other_key or (ident is not None and identity(other) == ident):
                raise UsageError(f"two files this port writes are the same file: {other} and "
                                 f"{path}", path=path,
                                 hint=f"give {option('out')}, {option('manifest')} and "
                                      f"{option('save_plan')} different paths")
        seen[key] = Path(path)


def abandoned(path: os.PathLike | str) -> Path | None:
    """The staging folder ``path`` lies in, when that folder belongs to no running port (what a
    ``kill -9`` left behind); None for any other path. Readers refuse such files."""
    parts = Path(os.path.abspath(path)).parts
    for i, part in enumerate(parts):
        if part.startswith(STAGE_PREFIX):
            folder = Path(*parts[:i + 1])
            return folder if not _held(folder) else None
    return None


def _held(folder: Path) -> bool:
    """Whether a process holds the lock of staging folder ``folder``."""
    if fcntl is None:
        return True
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def clear_abandoned(folder: Path) -> None:
    """Remove the staging folders in ``folder`` that no running port holds (``kill -9``
    leftovers), leaving any younger than ``STALE_SECONDS`` (one being created right now)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries if fcntl is not None else ():
        if not entry.name.startswith(STAGE_PREFIX):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False) or \
                    now - entry.stat(follow_symlinks=False).st_mtime < STALE_SECONDS:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)    # fails while a port holds it
                shutil.rmtree(entry.path)
            finally:
                os.close(fd)


class Stage:
    """The files of one output, written under their final names into hidden staging folders
    (one per destination folder), then published together (see the module docstring)."""

    def __init__(self) -> None:
        self._dirs: dict[str, tuple[Path, Path, int]] = {}   # real folder -> (folder, stage, fd)

    def path(self, final: Path) -> Path:
        """Where to write the file that will be published as ``final``."""
        final = Path(final)
        key = os.path.realpath(final.parent)
        if key not in self._dirs:
            clear_abandoned(final.parent)
            try:
                stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=final.parent))
                fd = os.open(stage, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError as exc:
                raise output_error(final, exc) from exc
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)      # held until the folder is removed
            self._dirs[key] = (final.parent, stage, fd)
        return self._dirs[key][1] / final.name

    def files(self) -> dict[Path, Path]:
        """final path -> staged path of every file written so far."""
        out: dict[Path, Path] = {}
        for folder, stage, _fd in self._dirs.values():
            for entry in sorted(os.scandir(stage), key=lambda e: e.name):
                if entry.name != _OLD and entry.is_file(follow_symlinks=False):
                    out[folder / entry.name] = Path(entry.path)
        return out

    def sync(self) -> None:
        """Every staged file with the permissions a new file gets (``usual_mode``: writers
        and libraries create theirs their own way) and on the disk (a file already fsynced
        costs next to nothing)."""
        for staged in self.files().values():
            usual_mode(staged)
            _fsync_path(staged)

    def publish(self, last: Sequence[Path] = (), *, force: bool = False,
                inputs: Iterable[Path] = (), obsolete: Iterable[Path] = ()) -> list[Path]:
        """Move every staged file to its final place: the files not in ``last`` first, then
        those of ``last`` in its order (the output, then the manifest ...). A file already at
        a final place is replaced only with ``force``; each final place is checked again right
        before (``check_output``). On any failure every file published so far is taken back
        and every replaced one restored. Once all are published, the ``obsolete`` files (an old
        output's parts the new one does not have) are removed. Returns the published paths."""
        files = self.files()
        rank = {Path(p): i for i, p in enumerate(last)}
        order = sorted(files, key=lambda p: (rank.get(p, -1), str(p)))
        inputs = list(inputs)
        done: list[tuple[Path, Path | None]] = []
        current = order[0] if order else Path(".")
        with _signals_held():
            try:
                self.sync()
                for current in order:
                    check_output(current, force=True, inputs=inputs)   # it may have changed
                    done.append((current, self._put(files[current], current, force)))
                for folder, _stage, _fd in self._dirs.values():
                    _fsync_path(folder)             # the new names on the disk too
            except BaseException as exc:
                self._take_back(done)
                if isinstance(exc, OSError):
                    raise output_error(current, exc) from exc
                raise
        kept = {_spelled(p) for p in order}
        read = {identity(p) for p in inputs} - {None}
        for old in obsolete:
            if _spelled(Path(old)) not in kept and identity(old) not in read:
                with contextlib.suppress(OSError):
                    os.unlink(old)
        return order

    def _put(self, staged: Path, final: Path, force: bool) -> Path | None:
        """``staged`` to ``final``; returns where the file it replaced is kept, if any."""
        try:
            os.link(staged, final)                  # fails if the name exists: no clobbering
        except FileExistsError:
            if not force:
                raise _appeared(final) from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if not os.path.lexists(final):           # no hard links here: check, then rename
                os.rename(staged, final)
                return None
            if not force:
                raise _appeared(final) from None
        else:
            with contextlib.suppress(OSError):      # the staging folder goes anyway
                os.unlink(staged)
            return None
        old = staged.parent / _OLD
        old.mkdir(exist_ok=True)
        keep = old / final.name
        try:
            os.link(final, keep)                    # the old file stays where it is
            os.replace(staged, final)
        except OSError as exc:
            if os.path.lexists(keep) or exc.errno not in _NO_LINKS:
                raise
            os.rename(final, keep)                  # no hard links here
            try:
                os.replace(staged, final)
            except OSError:
                os.replace(keep, final)
                raise
        return keep

    @staticmethod
    def _take_back(done: list[tuple[Path, Path | None]]) -> None:
        for final, kept in reversed(done):
            with contextlib.suppress(OSError):
                if kept is not None:
                    os.replace(kept, final)
                else:
                    os.unlink(final)

    def discard(self) -> None:
        """Remove the staging folders and whatever is left in them."""
        for _folder, stage, fd in self._dirs.values():
            with contextlib.suppress(OSError):
                shutil.rmtree(stage)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()


# link() fails so on file systems without hard links (FAT, some FUSE and network mounts)
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS)


def _appeared(final: Path) -> UsageError:
    return UsageError("the output file appeared while the port ran (another port to the same "
                      "file?)", path=final, hint=f"nothing of this port was kept; pass "
                      f"{option('force', True)} to replace it, or choose another "
                      f"{option('out')}")


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Stage]:
    """A ``Stage`` whose staging folders are removed when the block ends, however it ends
    (an ``OSError`` on the way becomes an ``OutputError`` naming ``out``)."""
    stage = Stage()
    try:
        yield stage
    except OSError as exc:
        raise output_error(Path(out), exc) from exc
    finally:
        stage.discard()


def write_texts(texts: dict[Path, str], *, force: bool = False,
                inputs: Iterable[Path] = (), named_by: str = "out") -> None:
    """Small text files (a plan, a manifest) through the same check, stage and publish."""
    paths = list(texts)
    check_distinct(paths)
    inputs = list(inputs)
    for path in paths:
        check_output(path, force=force, inputs=inputs, named_by=named_by)
    with staged(paths[0]) as stage:
        for path, text in texts.items():
            stage.path(path).write_text(text, encoding="utf-8")
        stage.publish(paths, force=force, inputs=inputs)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait while the block runs (publishing: a few renames, which
    an interruption would leave half done); they are delivered when it ends."""
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
                            f"output folder, or choose another {option('out')}")


@contextlib.contextmanager
def background_fsync(paths: Iterable[Path]) -> Iterator[None]:
    """fsync ``paths`` on a thread while the block runs (the disk works while the CPU checks the
    files); an fsync error is raised when the block ends. ``Stage.publish`` fsyncs again before
    publishing, which then costs next to nothing."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    errors: list[OSError] = []

    def sync() -> None:
        for path in paths:
            try:
                _fsync_path(path)
            except OSError as exc:
                errors.append(exc)

    worker = None
    if any(p.is_file() for p in paths):
        worker = threading.Thread(target=sync, name="weightmap-fsync", daemon=True)
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.join()
    if errors:
        raise errors[0]
