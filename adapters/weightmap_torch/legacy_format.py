"""The legacy torch checkpoint (``torch.save(..., _use_new_zipfile_serialization=False)``).

One file holding, back to back: a pickled magic number, a pickled protocol version (1001), a
pickled ``sys_info`` dict (byte order, type sizes), the main pickle (storages as persistent ids
``("storage", StorageClass, root_key, location, numel, view_metadata)``), a pickled list of
storage keys, then for each key in that list an int64 element count and the raw storage bytes.
Only the small pickles are read; storage records are located by seeking past their bytes.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from weightmap import dtypes
from weightmap.errors import FormatError, UnsafeInputError

from .pickle_reader import Limits, StorageRef, StorageType, load, short
from .storage import Record

FORMAT = "torch-legacy"
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# How protocol-2 pickle writes the magic number: LONG1, 10 bytes, little-endian.
MAGIC_PICKLED = b"\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little")


TAR_FORMAT = "torch-legacy-tar"
# The pre-0.4 format: a tar of "sys_info", "pickle", "storages", "tensors" (maybe after a PAX
# header). Recognised only to be refused by name: torch >= 2.6 refuses weights_only loads of it
# too, after CVE-2025-32434.
_TAR_MEMBERS = (b"sys_info", b"pickle", b"storages", b"tensors", b"././@PaxHeader", b"PaxHeader")


def looks_legacy(head: bytes) -> bool:
    return MAGIC_PICKLED in head[:32]


def looks_tar(path: Path) -> bool:
    """A POSIX tar whose first member is one of the legacy torch members (reads 512 bytes)."""
    with open(path, "rb") as fh:
        block = fh.read(512)
    if len(block) < 512 or block[257:262] != b"ustar":
        return False
    name = block[:100].split(b"\0", 1)[0]
    return any(name == m or name.endswith(b"/" + m) or m in name for m in _TAR_MEMBERS)


def refuse_tar(path: Path) -> None:
    raise FormatError("this is a tar-format torch checkpoint (PyTorch < 0.4), which weightmap "
                      "does not read", path=path,
                      hint="load it with a trusted old torch and save model.state_dict() again "
                           "with torch.save")


class _Storages:
    """Storage references met in the main pickle, keyed by their root storage."""

    def __init__(self, path: Path):
        self.path = path
        self.roots: dict[str, str] = {}          # root key -> dtype

    def persistent(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise FormatError(f"unexpected persistent id {short(pid)}", path=self.path)
        if pid[0] == "module":
            # ("module", class, source file, source): a whole pickled module. The class was
            # already refused by find_class unless placeholders were asked for.
            if len(pid) > 1 and isinstance(pid[1], type):
                return pid[1]
            raise UnsafeInputError("the file pickles a whole module", path=self.path)
        if pid[0] != "storage" or len(pid) != 6:
            raise FormatError(f"unexpected persistent id {short(pid)}", path=self.path)
        _, kind, key, location, numel, view = pid
        if not isinstance(kind, StorageType) or not isinstance(key, str) \
                or type(numel) is not int or numel < 0:
            raise FormatError(f"malformed storage reference {short(pid)}", path=self.path)
        dtype = kind.dtype or "uint8"
        if self.roots.setdefault(key, dtype) != dtype:
            raise FormatError(f"storage {key!r} is used with two dtypes", path=self.path)
        size = dtypes.itemsize(dtype)
        if view is None:
            return StorageRef(key=key, dtype=dtype, nbytes=numel * size, location=str(location))
        if not (isinstance(view, tuple) and len(view) == 3
                and all(type(v) is int and v >= 0 for v in view[1:])):
            raise FormatError(f"malformed storage view {short(view)}", path=self.path)
        _, offset, view_numel = view
        return StorageRef(key=key, dtype=dtype, nbytes=view_numel * size,
                          location=str(location), base_bytes=offset * size)


def read_legacy(path: Path, limits: Limits, opaque_globals: bool
                ) -> tuple[Any, dict[str, Record], str]:
    """The unpickled root object, the storage records by key, and the byte order."""
    storages = _Storages(path)
    with open(path, "rb") as fh:
        if load(fh, limits=limits) != MAGIC_NUMBER:
            raise FormatError("the legacy torch magic number is wrong", path=path)
        protocol = load(fh, limits=limits)
        if protocol != PROTOCOL_VERSION:
            raise FormatError(f"legacy torch protocol {short(protocol)}, expected "
                              f"{PROTOCOL_VERSION}", path=path)
        sys_info = load(fh, limits=limits)
        little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        root = load(fh, persistent=storages.persistent, limits=limits,
                    opaque_globals=opaque_globals)
        keys = load(fh, limits=limits)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise FormatError("the legacy storage key list is malformed", path=path)
        records = _records(fh, path, keys, storages.roots, "<" if little else ">")
    missing = sorted(set(storages.roots) - set(records))
    if missing:
        raise FormatError(f"storages {', '.join(missing[:5])} have no data in the file",
                          path=path)
    return root, records, "little" if little else "big"


def _records(fh: Any, path: Path, keys: list[str], roots: dict[str, str],
             order: str) -> dict[str, Record]:
    """Seek through the storage section: int64 element count, then the bytes, per key."""
    size = os.fstat(fh.fileno()).st_size
    records: dict[str, Record] = {}
    for key in keys:
        if key not in roots:
            raise FormatError(f"storage {key!r} has data but nothing refers to it", path=path)
        head = fh.read(8)
        if len(head) != 8:
            raise FormatError(f"the file ends before storage {key!r}", path=path)
        (numel,) = struct.unpack(order + "q", head)
        nbytes = numel * dtypes.itemsize(roots[key])
        start = fh.tell()
        if numel < 0 or start + nbytes > size:
            raise FormatError(f"storage {key!r} claims {nbytes} bytes past the end of the file",
                              path=path, hint="the file is truncated")
        records[key] = Record(path=str(path), offset=start, nbytes=nbytes)
        fh.seek(start + nbytes)
    return records
