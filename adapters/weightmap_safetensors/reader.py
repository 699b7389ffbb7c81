"""Build a ParamGraph from one safetensors file or a set of shards (headers only, data mapped).

Tensors keep the order of their data offsets (the writer's order; the safetensors library itself
writes by dtype, then name), shard by shard. Names follow Hugging Face / torch state-dict naming,
so grouping into layers is :func:`weightmap.reading.statedict.group` with the convention
state dicts are named in (``registry.state_dict_convention``).

Tied weights: ``safetensors.torch.save_model`` drops every tensor that shares storage with a kept
one and records ``{removed name: kept name}`` in ``__metadata__``. Such entries come back as
parameters with ``tied_to`` set, sharing the kept tensor's data; ``meta["tied"]`` lists them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from weightmap.errors import FormatError
from weightmap.graph import MappedData, ParamGraph
from weightmap.reading.statedict import Entry, group
from weightmap import registry

from .header import MAX_HEADER_BYTES, Header, read_header
from .shards import ShardSet, resolve

FORMAT_FILE = "safetensors"
FORMAT_SHARDED = "safetensors-sharded"
LIBRARY_ORDER = "by dtype, then name (the safetensors library's sort), not the model's order"


def entries_of(header: Header) -> list[Entry]:
    """One lazy, memory-mapped entry per tensor, in data-offset order."""
    return [Entry(name=r.name, shape=r.shape, dtype=r.dtype,
                  data=MappedData(path=str(header.path), offset=r.begin, shape=r.shape,
                                  dtype=r.dtype, span=r.end - r.begin))
            for r in header.records]


def tied_entries(entries: list[Entry], metadata: dict[str, str]) -> list[Entry]:
    """Entries for names the writer removed as duplicates of a kept tensor (see module doc)."""
    by_name = {e.name: e for e in entries}
    out = []
    for removed, kept in metadata.items():
        if removed in by_name or kept not in by_name:
            continue   # ordinary metadata ("format": "pt" ...), not a tie
        e = by_name[kept]
        out.append(Entry(name=removed, shape=e.shape, dtype=e.dtype, data=e.data, tied_to=kept))
    return out


def library_sorted(header: Header) -> bool:
    """True when the offsets follow the safetensors library's own sort (one run per dtype, names
    sorted within each run): the file then carries no trace of the model's order."""
    records = header.records
    if len(records) < 2:
        return False
    runs: list[list[str]] = []
    last_dtype = None
    seen: set[str] = set()
    for r in records:
        if r.dtype != last_dtype:
            if r.dtype in seen:
                return False
            seen.add(r.dtype)
            runs.append([])
            last_dtype = r.dtype
        runs[-1].append(r.name)
    return all(run == sorted(run) for run in runs)


def _order_meta(headers: list[Header]) -> dict[str, str]:
    if headers and all(library_sorted(h) or len(h.records) < 2 for h in headers) \
            and any(library_sorted(h) for h in headers):
        return {"stored_order": LIBRARY_ORDER}
    return {}


def read_file(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> ParamGraph:
    """The graph of a single ``.safetensors`` file."""
    header = read_header(path, max_header_bytes=max_header_bytes)
    entries = entries_of(header)
    ties = tied_entries(entries, dict(header.metadata))
    meta: dict[str, Any] = {"metadata": dict(header.metadata), **_order_meta([header])}
    if ties:
        meta["tied"] = {e.name: e.tied_to for e in ties}
    names = registry.state_dict_convention()       # a state dict's names
    return ParamGraph(format=FORMAT_FILE, framework=names.name, source=str(path),
                      layers=tuple(group(entries + ties, names)), order="stored", meta=meta)


def read_sharded(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> ParamGraph:
    """The graph of a sharded checkpoint (index file, or folder with or without an index)."""
    shard_set = resolve(path)
    entries: list[Entry] = []
    metadata: dict[str, str] = {}
    owner: dict[str, str] = {}
    headers: list[Header] = []
    for name, shard_path in shard_set.shards:
        header = read_header(shard_path, max_header_bytes=max_header_bytes)
        headers.append(header)
        shard_entries = entries_of(header)
        _check_against_index(shard_set, name, shard_entries, owner)
        entries.extend(shard_entries)
        metadata.update(header.metadata)
    _check_index_complete(shard_set, owner)
    ties = tied_entries(entries, metadata)
    meta: dict[str, Any] = {"metadata": metadata, "shards": [n for n, _ in shard_set.shards],
                            **_order_meta(headers)}
    if shard_set.index is not None:
        meta["index"] = shard_set.index.name
        meta["index_metadata"] = dict(shard_set.index_metadata)
    if ties:
        meta["tied"] = {e.name: e.tied_to for e in ties}
    names = registry.state_dict_convention()       # a state dict's names
    return ParamGraph(format=FORMAT_SHARDED, framework=names.name, source=str(path),
                      layers=tuple(group(entries + ties, names)), order="stored", meta=meta)


def _check_against_index(shard_set: ShardSet, shard: str, entries: Iterable[Entry],
                         owner: dict[str, str]) -> None:
    """Each tensor in one shard only, and in the shard the index says."""
    where = shard_set.index or shard_set.folder
    for e in entries:
        if e.name in owner:
            raise FormatError(f"tensor is stored in two shards: {owner[e.name]!r} and {shard!r}",
                              path=where, tensor=e.name)
        owner[e.name] = shard
        listed = shard_set.weight_map.get(e.name)
        if shard_set.index is not None and listed != shard:
            found = f"lists it in {listed!r}" if listed else "does not list it"
            raise FormatError(f"shard {shard!r} holds this tensor but the index {found}",
                              path=where, tensor=e.name,
                              hint="the index and its shards do not belong together")


def _check_index_complete(shard_set: ShardSet, owner: dict[str, str]) -> None:
    for tensor, shard in shard_set.weight_map.items():
        if tensor not in owner:
            raise FormatError(f"the index places this tensor in {shard!r}, which does not hold "
                              f"it", path=shard_set.index, tensor=tensor,
                              hint="the shard is truncated or from another checkpoint")
