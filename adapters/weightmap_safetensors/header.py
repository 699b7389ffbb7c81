"""Parse and validate a safetensors header without reading any tensor bytes.

Layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON, then the data area. The JSON
object maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative
to the data area) and may hold ``"__metadata__"``: a string-to-string map. Everything a later read
relies on is checked here, so a graph built from a header never points outside its file.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from weightmap import dtypes
from weightmap.errors import FormatError
from weightmap.graph import checked_nbytes
from weightmap.spelling import limit

# The reference implementation allows 100 MB, where an 80 MB header of a million entries costs
# seconds and gigabytes to parse. 16 MiB holds about 130 000 entries (real files: a few hundred
# to a few thousand per file); raise ``max_header_bytes`` for a genuine bigger one.
MAX_HEADER_BYTES = 16 * 1024 * 1024
METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class Record:
    """One tensor as the header declares it; offsets are absolute positions in the file."""

    name: str
    dtype: str                 # canonical dtype name
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    path: Path
    records: tuple[Record, ...]        # ordered by data offset: the writer's order
    metadata: Mapping[str, str]
    data_start: int


_DUPLICATE_HINT = "a duplicate key is ambiguous; the file is corrupt or forged"


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def parse_json_object(raw: bytes, *, path: Path, what: str) -> dict[str, Any]:
    """Strict JSON: UTF-8, an object at the top, no duplicate keys at any depth, no NaN."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not valid UTF-8 (byte {exc.start})", path=path) from exc
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except _DuplicateKey as exc:
        key = exc.args[0]
        raise FormatError(f"{what} names {key!r} twice", path=path, tensor=key,
                          hint=_DUPLICATE_HINT) from exc
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what} is not valid JSON: {exc}", path=path) from exc
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must be a JSON object, found {type(obj).__name__}", path=path)
    return obj


def read_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> Header:
    """The validated header of one safetensors file."""
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise FormatError(f"file has {size} bytes, fewer than the 8-byte header length",
                              path=path, hint="the file is truncated")
        (length,) = struct.unpack("<Q", prefix)
        if length > max_header_bytes:
            raise FormatError(f"header length {length} exceeds the cap of {max_header_bytes} bytes",
                              path=path, hint="if the file is genuine, raise the cap: "
                                              + limit("max_header_bytes"))
        if length > size - 8:
            raise FormatError(f"header length {length} reaches beyond the end of the file "
                              f"({size} bytes)", path=path, hint="the file is truncated or corrupt")
        raw = fh.read(length)
    obj = parse_json_object(raw, path=path, what="safetensors header")
    data_start = 8 + length
    metadata = _metadata(obj.pop(METADATA_KEY, None), path)
    records = [_record(name, info, path, data_start) for name, info in obj.items()]
    records.sort(key=lambda r: (r.begin, r.end))
    _check_spans(records, path, file_size=size)
    _check_coverage(records, path, data_start=data_start, file_size=size)
    return Header(path=path, records=tuple(records), metadata=metadata, data_start=data_start)


def _metadata(value: Any, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise FormatError(f"{METADATA_KEY} must map strings to strings, found {value!r:.80}",
                          path=path)
    return dict(value)


def _record(name: str, info: Any, path: Path, data_start: int) -> Record:
    if not isinstance(info, dict):
        raise FormatError(f"entry must be an object, found {info!r:.80}", path=path, tensor=name)
    code = info.get("dtype")
    if not isinstance(code, str) or code not in dtypes.SAFETENSORS:
        raise FormatError(f"unknown dtype {code!r}", path=path, tensor=name,
                          hint=f"known: {', '.join(sorted(dtypes.SAFETENSORS))}")
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FormatError(f"shape must be a list of non-negative integers, found {shape!r:.80}",
                          path=path, tensor=name)
    offsets = info.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
            or offsets[0] > offsets[1]):
        raise FormatError(f"data_offsets must be [begin, end] with 0 <= begin <= end, found "
                          f"{offsets!r:.80}", path=path, tensor=name)
    dtype = dtypes.SAFETENSORS[code]
    need = checked_nbytes(shape, dtype, path=path, tensor=name)
    if offsets[1] - offsets[0] != need:
        raise FormatError(f"data_offsets {offsets} span {offsets[1] - offsets[0]} bytes but "
                          f"{code}{shape} needs {need}", path=path, tensor=name)
    return Record(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_spans(records: list[Record], path: Path, *, file_size: int) -> None:
    """Every span inside the data area, none overlapping another (empty tensors excepted).

    ``records`` must be sorted by (begin, end)."""
    prev: Record | None = None
    for rec in records:
        if rec.end > file_size:
            raise FormatError(f"tensor bytes {rec.begin}..{rec.end} reach beyond the end of the "
                              f"file ({file_size} bytes)", path=path, tensor=rec.name,
                              hint="the file is truncated")
        if rec.end == rec.begin:
            continue
        if prev is not None and rec.begin < prev.end:
            raise FormatError(f"tensor bytes {rec.begin}..{rec.end} overlap those of "
                              f"{prev.name!r} ({prev.begin}..{prev.end})", path=path,
                              tensor=rec.name, hint="the header is corrupt or forged")
        prev = rec


def _check_coverage(records: list[Record], path: Path, *, data_start: int,
                    file_size: int) -> None:
    """The data area is exactly the tensors, back to back: no gap before, between or after
    them (as the reference implementation requires; hidden bytes make polyglot files).

    ``records`` must be sorted by (begin, end) and free of overlaps."""
    at = data_start
    for rec in records:
        if rec.end == rec.begin:
            continue
        if rec.begin != at:
            raise FormatError(f"{rec.begin - at} bytes at {at}..{rec.begin} belong to no tensor",
                              path=path, tensor=rec.name,
                              hint="the header is corrupt or forged; tensors must be stored "
                                   "back to back")
        at = rec.end
    if at != file_size:
        raise FormatError(f"{file_size - at} bytes after the last tensor (at {at}..{file_size}) "
                          "belong to no tensor", path=path,
                          hint="the file has trailing data or its header is forged")
