"""Read a torch checkpoint file (zip or legacy) into a ParamGraph, without torch.

Stages: the container format gives the pickle and the storage records; the restricted
unpickler turns the pickle into plain containers holding ``TensorRef`` records; ``containers``
picks the state dict; each tensor gets a lazy data handle; ``weightmap.reading.statedict.group`` makes
layers from the dotted names. Two names for one view of one storage are a tie.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from weightmap.errors import UsageError, WeightmapError
from weightmap.graph import ParamGraph
from weightmap.reading.statedict import Entry, group

from . import legacy_format, zip_format
from .convention import CONVENTION
from .containers import MAX_ENTRIES, Found, find_weights
from .pickle_reader import Limits, TensorRef
from .storage import Record, tensor_data

FORMATS = (zip_format.FORMAT, legacy_format.FORMAT)
_DEFAULT = Limits()
# read option -> (default, what it caps); each is a field of ``Limits``
LIMITS = {"max_pickle_bytes": (_DEFAULT.max_bytes, "bytes of one pickle stream"),
          "max_pickle_opcodes": (_DEFAULT.max_opcodes, "opcodes of one pickle stream"),
          "max_pickle_memo": (_DEFAULT.max_memo, "memo entries of one pickle stream"),
          "max_pickle_depth": (_DEFAULT.max_depth, "nesting depth of a pickle's objects")}


def read(path: Path, fmt: str, *, container: str | None = None, opaque_globals: bool = False,
         max_pickle_bytes: int | None = None, max_pickle_opcodes: int | None = None,
         max_pickle_memo: int | None = None, max_pickle_depth: int | None = None,
         **_options: Any) -> ParamGraph:
    """Specs of the checkpoint's weights; tensor bytes stay on disk until read."""
    path = Path(path)
    limits = Limits(max_bytes=max_pickle_bytes or _DEFAULT.max_bytes,
                    max_opcodes=max_pickle_opcodes or _DEFAULT.max_opcodes,
                    max_memo=max_pickle_memo or _DEFAULT.max_memo,
                    max_depth=max_pickle_depth or _DEFAULT.max_depth)
    try:
        return _read(path, fmt, container, opaque_globals, limits)
    except WeightmapError as exc:
        raise exc.located(path)


def _read(path: Path, fmt: str, container: str | None, opaque_globals: bool,
          limits: Limits) -> ParamGraph:
    meta: dict[str, Any] = {}
    if fmt == zip_format.FORMAT:
        archive = zip_format.open_archive(path)
        root = zip_format.read_pickle(archive, limits, opaque_globals)
        records, byteorder = archive.records, archive.byteorder
        meta["archive_folder"] = archive.top
    elif fmt == legacy_format.FORMAT:
        root, records, byteorder = legacy_format.read_legacy(path, limits, opaque_globals)
    elif fmt == legacy_format.TAR_FORMAT:
        legacy_format.refuse_tar(path)
    else:
        raise UsageError(f"the torch adapter reads {', '.join(FORMATS)}, not {fmt!r}", path=path)
    # a walk of shared containers may visit at most twice what the pickle could build
    found = find_weights(root, container, max_entries=max(MAX_ENTRIES, 2 * limits.max_opcodes))
    entries = entries_of(found.tensors, records, byteorder)
    meta.update(container_meta(found), byteorder=byteorder)
    if opaque_globals:
        meta["opaque_globals"] = True
    return ParamGraph(format=fmt, framework="torch", source=str(path),
                      layers=tuple(group(entries, CONVENTION)), order="stored", meta=meta)


def entries_of(tensors: tuple[tuple[str, TensorRef], ...], records: dict[str, Record],
               byteorder: str) -> list[Entry]:
    """One lazy entry per name; a name viewing exactly what an earlier one views is tied."""
    first: dict[tuple, str] = {}
    entries = []
    for name, ref in tensors:
        view = (ref.storage.key, ref.byte_offset, ref.shape, ref.stride, ref.dtype,
                ref.negative, ref.conjugate)
        tied = first.setdefault(view, name)
        data = tensor_data(ref, records[ref.storage.key], byteorder, name)
        entries.append(Entry(name=name, shape=ref.shape, dtype=ref.dtype, data=data,
                             tied_to=None if tied == name else tied))
    return entries


def container_meta(found: Found) -> dict[str, Any]:
    meta: dict[str, Any] = {"container": found.container, "prefixes": list(found.prefixes)}
    if found.candidates:
        meta["other_containers"] = list(found.candidates)
    if found.other_keys:
        meta["other_keys"] = list(found.other_keys)
    if found.skipped:
        meta["skipped_non_tensors"] = list(found.skipped)
    return meta
