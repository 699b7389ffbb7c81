"""weightmap's safetensors output (any target: names as the target has them), one file or shards.

With ``shard_size`` (bytes, or text such as ``"2GB"``, ``"500MB"``, ``"4GiB"``) an output larger
than that is split as the model hubs do: ``model-00001-of-00003.safetensors`` ... beside
``model.safetensors.index.json`` (``{"metadata": {"total_size": N}, "weight_map": {tensor:
shard}}``). Tensors go to shards in target order; a shard is closed when the next tensor would
overflow it, and a tensor larger than ``shard_size`` gets a shard of its own. An output that fits
in one shard is written as one file, under its own name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from weightmap.errors import UsageError

from .shards import MAX_INDEX_BYTES
from .writer import Spec, tensor_size, write, write_jobs

INDEX_SUFFIX = ".safetensors.index.json"
_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_size(value: Any) -> int:
    """``2000000000``, ``"2GB"`` (10**9), ``"4GiB"`` (2**30), ``"1.5GB"`` → bytes (> 0)."""
    if isinstance(value, bool):
        raise UsageError(f"shard size {value!r} is not a size")
    if isinstance(value, int):
        size = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise UsageError(f"shard size {value!r} is not a size",
                             hint="write it as bytes or with a unit: 500MB, 2GB, 4GiB")
        size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    if size <= 0:
        raise UsageError(f"shard size {value!r} must be positive")
    return size


def specs_of(plan) -> list[Spec]:
    return [(t.target, tuple(t.shape), t.dtype) for t in plan.tensors]


def split(specs: Sequence[Spec], shard_size: int) -> list[list[int]]:
    """Indices of ``specs`` per shard (see the module docstring for the rule)."""
    shards: list[list[int]] = [[]]
    used = 0
    for i, (_name, shape, dtype) in enumerate(specs):
        size = tensor_size(shape, dtype)
        if shards[-1] and used + size > shard_size:
            shards.append([])
            used = 0
        shards[-1].append(i)
        used += size
    return shards


def _stem(out: Path) -> str:
    name = out.name
    for suffix in (INDEX_SUFFIX, ".safetensors"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def shard_names(out: Path, count: int) -> list[str]:
    stem = _stem(out)
    return [f"{stem}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _shards(out: Path, plan, shard_size: Any) -> list[list[int]] | None:
    """The shards to write, or None for one plain file."""
    if shard_size is None:
        return None
    shards = split(specs_of(plan), parse_size(shard_size))
    if len(shards) == 1 and not out.name.lower().endswith(INDEX_SUFFIX):
        return None
    return shards


def output_path(out: Path, plan, *, shard_size: Any = None, **_other: Any) -> Path:
    """The file the port reports as its output: the index when the output is sharded."""
    if _shards(out, plan, shard_size) is None:
        return out
    return out if out.name.lower().endswith(INDEX_SUFFIX) else \
        out.with_name(_stem(out) + INDEX_SUFFIX)


def side_outputs(out: Path, target, *, plan=None, shard_size: Any = None,
                 **_other: Any) -> list[Path]:
    """The shard files beside the index ``out`` (checked before writing: never overwritten
    without ``force``)."""
    shards = _shards(out, plan, shard_size) if plan is not None else None
    return [] if shards is None else [out.with_name(n) for n in shard_names(out, len(shards))]


def write_output(path: Path, *, kind, plan, target, tensors, final_path: Path | None = None,
                 shard_size: Any = None, direct_io: bool | None = None,
                 workers: int | None = None, read_back=None) -> None:
    """``read_back`` (``weightmap.emit.readback.ReadBack``): each tensor is read back (or
    digested as it is handed to the disk) as soon as it is written, beside the tensors still
    being written, shard by shard for a sharded output. ``direct_io``: write
    past the page cache (``weightmap.io.direct``): None for big outputs where the file system
    allows it, False never, True for any size."""
    specs = specs_of(plan)
    meta = {"format": "pt", "weightmap_source": str(plan.source.get("path", ""))}
    final = Path(final_path) if final_path is not None else Path(path)
    shards = _shards(final, plan, shard_size)
    jobs = tensors.jobs() if hasattr(tensors, "jobs") else None
    if shards is None:
        if jobs is None:   # a plain iterator of arrays: the protocol every writer accepts
            write(path, specs, ((t.target, arr) for t, arr in tensors()), metadata=meta)
        else:
            write_jobs(path, specs, jobs, metadata=meta, workers=workers,
                       written=tensors.advance, read_back=read_back, direct=direct_io)
        return
    if jobs is None:       # arrays only come in order: one thread
        jobs, workers = _array_jobs(plan, tensors), 1
    _write_sharded(Path(path), final, specs, shards, jobs, tensors, meta, workers, direct_io,
                   read_back)


def _write_sharded(index_path: Path, final: Path, specs: list[Spec], shards: list[list[int]],
                   jobs, tensors, meta, workers, direct_io, read_back) -> None:
    """Each shard beside ``index_path`` under its final name (the folder is the caller's
    staging folder: nothing is published before it has been read back), then the index."""
    names = shard_names(final, len(shards))
    for name, members in zip(names, shards):
        write_jobs(index_path.with_name(name), [specs[i] for i in members],
                   [jobs[i] for i in members], metadata=meta, workers=workers,
                   written=getattr(tensors, "advance", None), read_back=read_back,
                   direct=direct_io)
    weight_map = {specs[i][0]: name for name, members in zip(names, shards) for i in members}
    index = {"metadata": {"total_size": sum(tensor_size(s[1], s[2]) for s in specs)},
             "weight_map": weight_map}
    Path(index_path).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n",
                                encoding="utf-8")


def previous_parts(out: Path) -> list[Path]:
    """The shards an existing index at ``out`` lists (plain names of regular files beside
    it): replacing that output with ``force`` removes those the new one does not reuse."""
    if not out.name.lower().endswith(INDEX_SUFFIX):
        return []
    try:
        if out.stat().st_size > MAX_INDEX_BYTES:
            return []
        weight_map = json.loads(out.read_bytes()).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(weight_map, dict):
        return []
    names = {v for v in weight_map.values() if isinstance(v, str)}
    return [out.with_name(n) for n in sorted(names)
            if n == Path(n).name and n not in ("", ".", "..")
            and out.with_name(n).is_file() and not out.with_name(n).is_symlink()]


class _ArrayJob:
    """A job over a plain iterator of arrays (a stream that offers no jobs): computed in
    order, so it runs on one thread."""

    def __init__(self, tensor, it):
        self.tensor, self._it = tensor, it

    def compute(self):
        t, arr = next(self._it)
        if t.target != self.tensor.target:
            raise UsageError(f"tensor {t.target!r} arrives out of the header's order")
        return arr


def _array_jobs(plan, tensors) -> list[_ArrayJob]:
    it = iter(tensors())
    return [_ArrayJob(t, it) for t in plan.tensors]
