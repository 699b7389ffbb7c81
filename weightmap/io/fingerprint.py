"""What a source was when an output was made from it: size, modification time, SHA-256.

Recorded in the manifest's ``source`` entry, so a migration can tell an output that is still
current from one whose source has changed since (docs/migrate.md, resume). A source is one file,
or several: a sharded safetensors index with its shards, a folder of files (each regular file
directly in it). For several files the size is their sum, the time the latest, and the digest
the SHA-256 of the lines ``NAME SHA256`` of each file, in name order.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def source_files(path: Path) -> list[Path]:
    """The files that make up the source at ``path`` (empty if it is none)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    if not path.is_file():
        return []
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8")).get("weight_map", {})
            names = sorted({str(n) for n in weight_map.values()})
        except (OSError, ValueError, AttributeError):
            names = []
        return [path] + [path.parent / n for n in names if (path.parent / n).is_file()]
    return [path]


def stat(path: Path) -> dict[str, int] | None:
    """``{"size", "mtime_ns"}`` of the source at ``path``; None when it is no file."""
    files = source_files(path)
    if not files:
        return None
    infos = [os.stat(f) for f in files]
    return {"size": sum(i.st_size for i in infos), "mtime_ns": max(i.st_mtime_ns for i in infos)}


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
            else _sha256_chunks(fh)


def _sha256_chunks(fh: Any) -> str:          # Python 3.10 has no hashlib.file_digest
    sha = hashlib.sha256()
    for block in iter(lambda: fh.read(CHUNK), b""):
        sha.update(block)
    return sha.hexdigest()


def sha256(path: Path) -> str | None:
    """The digest of the source at ``path`` (see the module doc); None when it is no file."""
    files = source_files(path)
    if not files:
        return None
    if len(files) == 1:
        return file_sha256(files[0])
    lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def fingerprint(path: str | os.PathLike | None, *, digest: bool = False) -> dict[str, Any]:
    """``{"size", "mtime_ns"}`` (and ``"sha256"`` with ``digest``) of a source named by a path
    (``model.py:NAME`` counts as its file); empty for a live object or a missing path."""
    if path is None:
        return {}
    from ..reading.modelfile import split_pyref
    text = os.fspath(path)
    pyfile, _ = split_pyref(text)
    where = pyfile if pyfile is not None else Path(text)
    found = stat(where)
    if found is None:
        return {}
    return {**found, "sha256": sha256(where)} if digest else found
