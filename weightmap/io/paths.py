"""Resolve a file name that one model file gives for another: a shard listed in a
safetensors index, an ONNX external data ``location``.

The rule: such a name comes from the file, so it is untrusted. It must be a plain relative path
(a non-empty string; no absolute path, no drive letter, no ``..`` part, no NUL) and, once every
symlink is resolved, it must land on a regular file (not a folder, device or pipe) inside the
folder of the file that names it, and have a single hard link (a second link may be the inode of
a file elsewhere). A name that breaks the rule is an ``UnsafeInputError``; a name
that follows it but whose file is missing (or a dangling symlink) is a ``FormatError``: the
checkpoint is incomplete, not hostile.

One relaxation exists for the Hugging Face cache layout, where ``snapshots/<rev>/model.safetensors``
is a symlink to ``../../blobs/<sha>``: with ``allow_hf_cache`` a target is also accepted when it
lies inside the nearest enclosing folder named ``models--*`` (the cache's per-repository folder).

Used by the safetensors adapter (shards) and the ONNX adapter (external data, without the
relaxation). Framework-free: the standard library only.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .atomic import STAGE_PREFIX
from ..errors import FormatError, UnsafeInputError

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_plain_name(name: object, *, what: str, referrer: Path) -> str:
    """``name`` if it is a plain relative file name, else UnsafeInputError naming the referrer."""
    if not isinstance(name, str) or not name.strip():
        raise FormatError(f"{what} name must be a non-empty string, found {name!r}", path=referrer)
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or os.path.isabs(name):
        raise UnsafeInputError(f"{what} {name!r} is an absolute path", path=referrer,
                               hint="a checkpoint may only name files inside its own folder")
    if any(part.startswith(STAGE_PREFIX) for part in parts):
        raise FormatError(f"{what} {name!r} lies in a weightmap staging folder (an unfinished "
                          f"output)", path=referrer, hint="a checkpoint never names one")
    if ".." in parts or "\x00" in name:
        raise UnsafeInputError(f"{what} {name!r} climbs out of the folder ('..')", path=referrer,
                               hint="a checkpoint may only name files inside its own folder")
    return name


def natural_key(name: str) -> tuple:
    """``model-2`` before ``model-10``: runs of decimal digits compare as numbers. Only what
    ``int`` reads counts as a digit (``isdecimal``): ``²`` is a digit to ``isdigit`` but not to
    ``int``, and a file name holding one must not crash the sort."""
    return tuple(int(p) if p.isdecimal() else p for p in re.split(r"(\d+)", name))


def hf_cache_root(folder: Path) -> Path | None:
    """The nearest enclosing ``models--*`` folder of ``folder`` (unresolved path), if any."""
    for candidate in [folder, *folder.parents]:
        if candidate.name.startswith("models--"):
            return candidate
    return None


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def resolve_inside(folder: Path, name: object, *, what: str, referrer: Path,
                   allow_hf_cache: bool = False) -> Path:
    """The resolved path of ``name`` inside ``folder``; refuses escapes and non-regular files.

    A missing file is a FormatError naming it (the checkpoint is incomplete); a name or symlink
    leading outside the folder, or a target that is not a regular file, is an UnsafeInputError.
    """
    plain = check_plain_name(name, what=what, referrer=referrer)
    folder = Path(os.path.abspath(folder))
    candidate = folder / plain
    if not os.path.lexists(candidate):
        raise FormatError(f"{what} {plain!r} is missing (looked for {candidate})", path=referrer,
                          hint="the checkpoint is incomplete; copy every file it lists")
    target = os.path.realpath(candidate)
    roots = [os.path.realpath(folder)]
    hf_root = hf_cache_root(folder) if allow_hf_cache else None
    if hf_root is not None:
        roots.append(os.path.realpath(hf_root))
    if not any(_inside(target, root) for root in roots):
        raise UnsafeInputError(f"{what} {plain!r} resolves to {target}, outside the folder "
                               f"{folder}", path=referrer,
                               hint="symlinks may not lead out of the checkpoint's folder")
    try:
        info = os.stat(target)
    except OSError as exc:
        raise FormatError(f"{what} {plain!r} cannot be opened: {exc.strerror}", path=referrer,
                          hint="a symlink points at a file that does not exist") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeInputError(f"{what} {plain!r} is not a regular file", path=referrer,
                               hint="devices, pipes and folders are never read as data")
    if info.st_nlink > 1:
        # a hard link inside the folder can be the very inode of a file outside it (unpacking
        # an archive creates them); nothing in the folder tells the two apart
        raise UnsafeInputError(f"{what} {plain!r} has {info.st_nlink} hard links", path=referrer,
                               hint="a hard link may be a file outside the folder; copy the "
                                    "file so that it has one link")
    return Path(target)
