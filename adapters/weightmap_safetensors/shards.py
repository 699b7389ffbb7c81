"""Find the shard files of a sharded safetensors checkpoint.

Accepted inputs: a ``*.safetensors.index.json`` file (``{"metadata": {...}, "weight_map":
{tensor: shard file}}``), a folder holding one such index, or a folder of ``*.safetensors`` files
without an index (every file is a shard, read in natural order). Shard names come from the index,
so they are resolved with :func:`weightmap.io.paths.resolve_inside` (plain relative names,
inside the folder; Hugging Face cache symlinks into ``blobs/`` allowed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from weightmap.io.atomic import STAGE_PREFIX
from weightmap.errors import FormatError, UsageError
from weightmap.io.paths import natural_key, resolve_inside

from .header import parse_json_object

INDEX_SUFFIX = ".safetensors.index.json"
PREFERRED_INDEX = "model.safetensors.index.json"
MAX_INDEX_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ShardSet:
    """The shards to read, in reading order, and what the index says about them."""

    folder: Path
    index: Path | None
    shards: tuple[tuple[str, Path], ...]            # (name as listed, resolved path)
    weight_map: Mapping[str, str] = field(default_factory=dict)   # tensor -> shard name
    index_metadata: Mapping[str, Any] = field(default_factory=dict)


def is_index_name(path: Path) -> bool:
    return path.name.endswith(INDEX_SUFFIX)


def find_index(folder: Path) -> Path | None:
    """The folder's index file; several indices are ambiguous unless one is the standard name."""
    found = sorted((p for p in folder.iterdir() if is_index_name(p) and p.is_file()),
                   key=lambda p: natural_key(p.name))
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    for p in found:
        if p.name == PREFERRED_INDEX:
            return p
    raise UsageError(f"the folder holds {len(found)} safetensors indices: "
                     f"{', '.join(p.name for p in found)}", path=folder,
                     hint="name the index file to read")


def shard_files(folder: Path) -> list[Path]:
    """The ``*.safetensors`` regular files directly in ``folder``, in natural order (names of
    weightmap's staging folders, ``.weightmap-tmp-*``, are never shards)."""
    return sorted((p for p in folder.iterdir() if p.name.endswith(".safetensors")
                   and not p.name.startswith(STAGE_PREFIX) and p.is_file()),
                  key=lambda p: natural_key(p.name))


def resolve(path: Path) -> ShardSet:
    """The shard set named by an index file or a folder."""
    path = Path(path)
    if path.is_dir():
        index = find_index(path)
        if index is None:
            return _unindexed(path)
        # the index the folder holds is checked like a shard before it is opened: inside the
        # folder (or its Hugging Face cache repository), a regular file with one link
        checked = resolve_inside(path, index.name, what="shard index", referrer=path,
                                 allow_hf_cache=True)
        return _from_index(index, checked)
    return _from_index(path)


def _unindexed(folder: Path) -> ShardSet:
    files = shard_files(folder)
    if not files:
        raise FormatError("the folder holds neither a *.safetensors.index.json nor any "
                          "*.safetensors file", path=folder)
    shards = tuple((p.name, resolve_inside(folder, p.name, what="shard", referrer=folder,
                                           allow_hf_cache=True)) for p in files)
    return ShardSet(folder=folder, index=None, shards=shards)


def _from_index(index: Path, checked: Path | None = None) -> ShardSet:
    """The shard set of ``index`` (its shards beside it), read from ``checked`` (where the
    index resolves after ``resolve_inside``) when given."""
    source = checked or index
    if os.path.getsize(source) > MAX_INDEX_BYTES:
        raise FormatError(f"index is larger than {MAX_INDEX_BYTES} bytes", path=index)
    obj = parse_json_object(source.read_bytes(), path=index, what="safetensors index")
    weight_map = obj.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError("index has no 'weight_map' object (tensor name -> shard file)",
                          path=index)
    bad = [k for k, v in weight_map.items() if not isinstance(v, str)]
    if bad:
        raise FormatError(f"weight_map entry must name a shard file, found "
                          f"{weight_map[bad[0]]!r:.80}", path=index, tensor=bad[0])
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FormatError(f"index 'metadata' must be an object, found {metadata!r:.80}",
                          path=index)
    folder = index.parent
    # The writer numbers shards in model order (model-00001-of-00003 ...); the weight_map is
    # usually sorted by tensor name, so its first mentions would scramble that order.
    names = sorted(set(weight_map.values()), key=natural_key)
    shards = tuple((name, resolve_inside(folder, name, what="shard", referrer=index,
                                         allow_hf_cache=True)) for name in names)
    return ShardSet(folder=folder, index=index, shards=shards, weight_map=dict(weight_map),
                    index_metadata=dict(metadata))
