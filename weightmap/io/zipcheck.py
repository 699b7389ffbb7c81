"""Check a zip archive's directory against its bytes before any member is used.

A zip has two descriptions of each member: the central directory at the end (what ``zipfile``
lists) and a local header before the member's bytes (what is actually there). A forged archive
makes them disagree, names members ``../x`` or twice, lets members overlap (CVE-2024-0450: one
compressed block counted by many entries, a zip bomb) or declares an absurd compression ratio.
weightmap never extracts a zip to disk, but it maps member bytes straight from the file, so it
needs both descriptions to agree. Used by the torch (``.pt`` zip) and Keras (``.keras``) readers.
Standard library only.
"""
from __future__ import annotations

import os
import re
import struct
import zipfile
from typing import Any

from ..errors import FormatError, UnsafeInputError

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
LOCAL_MAGIC = b"PK\x03\x04"
DESCRIPTOR_MAGIC = b"PK\x07\x08"
MAX_RATIO = 100                  # declared size / stored size of a compressed member ...
RATIO_FLOOR = 1 << 20            # ... once it declares more than this many bytes
_ZIP64_MARK = 0xFFFFFFFF
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(name: str, path: object) -> None:
    """A member name is a relative path with no ``..`` part, no drive and no NUL."""
    parts = re.split(r"[\\/]", name)
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeInputError(f"the zip holds a member with an absolute name {name!r}",
                               path=path, hint="the archive is forged; weightmap refuses it")
    if ".." in parts or "\x00" in name:
        raise UnsafeInputError(f"the zip holds a member named {name!r}, which climbs out of "
                               "the archive ('..')", path=path,
                               hint="the archive is forged; weightmap refuses it")


def check_ratio(info: zipfile.ZipInfo, path: object, *, max_ratio: int = MAX_RATIO,
                floor: int = RATIO_FLOOR) -> None:
    """A compressed member may not declare more than ``max_ratio`` times its stored size
    (once above ``floor`` bytes): refused before a byte is inflated."""
    if info.compress_type == zipfile.ZIP_STORED:
        return
    if info.file_size > max(floor, max_ratio * max(info.compress_size, 1)):
        raise UnsafeInputError(
            f"zip member {info.filename!r} declares {info.file_size} bytes from "
            f"{info.compress_size} compressed (ratio above {max_ratio}): a zip bomb",
            path=path, hint="weightmap never inflates such a member")


def data_span(fh: Any, info: zipfile.ZipInfo, path: object) -> tuple[int, int]:
    """(start, end) of the member's stored bytes, after checking its local header against the
    central directory (name, and sizes unless a data descriptor follows the data)."""
    fh.seek(info.header_offset)
    raw = fh.read(LOCAL_HEADER.size)
    if len(raw) != LOCAL_HEADER.size or raw[:4] != LOCAL_MAGIC:
        raise FormatError(f"zip member {info.filename!r} has no local header at offset "
                          f"{info.header_offset}", path=path, hint="the archive is corrupt")
    (_, _, flags, method, _, _, crc, csize, usize, name_len, extra_len) = LOCAL_HEADER.unpack(raw)
    if method != info.compress_type:
        raise FormatError(f"zip member {info.filename!r}: local header and directory disagree "
                          "on the compression method", path=path, hint="the archive is forged")
    name = fh.read(name_len)
    if name != info.orig_filename.encode("utf-8") and \
            name != info.orig_filename.encode("cp437", "replace"):
        raise FormatError(f"zip member {info.filename!r}: the local header names it "
                          f"{name[:80]!r}", path=path, hint="the archive is forged")
    start = info.header_offset + LOCAL_HEADER.size + name_len + extra_len
    end = start + info.compress_size
    if not flags & 0x8 and _ZIP64_MARK not in (csize, usize) \
            and (csize, usize, crc) != (info.compress_size, info.file_size, info.CRC):
        raise FormatError(f"zip member {info.filename!r}: the local header says {usize} bytes "
                          f"({csize} stored), the directory {info.file_size} "
                          f"({info.compress_size} stored)", path=path,
                          hint="the archive is forged; which size is true cannot be told")
    if flags & 0x8:
        end += _descriptor_length(fh, end, info, path)
    return start, end


def _descriptor_length(fh: Any, at: int, info: zipfile.ZipInfo, path: object) -> int:
    """Length of the data descriptor after a member's data; its sizes must match the directory."""
    fh.seek(at)
    raw = fh.read(24)
    want = (info.CRC, info.compress_size, info.file_size)
    for signed in (True, False):
        body = raw[4:] if signed else raw
        if signed and raw[:4] != DESCRIPTOR_MAGIC:
            continue
        for fmt in ("<III", "<IQQ"):
            size = struct.calcsize(fmt)
            if len(body) >= size and struct.unpack(fmt, body[:size]) == want:
                return size + (4 if signed else 0)
    raise FormatError(f"zip member {info.filename!r}: its data descriptor does not match the "
                      "directory's sizes", path=path, hint="the archive is forged or truncated")


def check_archive(zf: zipfile.ZipFile, fh: Any, path: object, *,
                  max_ratio: int = MAX_RATIO) -> dict[str, tuple[int, int]]:
    """Every member's name, sizes and span checked; returns name -> (data start, data end).

    Refuses: unsafe or duplicate names, encrypted members, a local header that disagrees with
    the directory, members overlapping each other or the directory, data past the end of the
    file, and a compressed member whose declared size is out of proportion (see
    ``check_ratio``)."""
    size = os.fstat(fh.fileno()).st_size
    directory = getattr(zf, "start_dir", size)
    seen: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    out: dict[str, tuple[int, int]] = {}
    for info in zf.infolist():
        check_member_name(info.filename, path)
        if info.filename in seen:
            raise UnsafeInputError(f"the zip names member {info.filename!r} twice", path=path,
                                   hint="which copy is meant cannot be told; the archive is "
                                        "forged or corrupt")
        seen.add(info.filename)
        if info.flag_bits & 0x1:       # zipfile would ask for a password (RuntimeError)
            raise FormatError(f"zip member {info.filename!r} is encrypted", path=path,
                              hint="checkpoints are never encrypted; decrypt the archive "
                                   "with the tool that made it")
        check_ratio(info, path, max_ratio=max_ratio)
        start, end = data_span(fh, info, path)
        if end > min(directory, size):
            raise FormatError(f"zip member {info.filename!r} reaches byte {end}, past the "
                              f"end of the member area ({min(directory, size)})", path=path,
                              hint="the file is truncated or its sizes are forged")
        spans.append((info.header_offset, end, info.filename))
        out[info.filename] = (start, start + info.compress_size)
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise UnsafeInputError(f"zip members {first!r} and {second!r} overlap",
                                   path=path, hint="overlapping members are a zip-bomb "
                                                   "technique (CVE-2024-0450)")
    return out
