"""The torch zip checkpoint (``torch.save`` since 1.6): ``<top>/data.pkl`` + ``<top>/data/<key>``.

The top folder's name varies (torch uses the file's stem, ``archive`` in some tools). Storages
are stored uncompressed and 64-byte aligned, so each one is memory-mapped straight from the
outer file at the offset its local file header gives. A member that some other tool compressed
is read through ``zipfile`` instead. TorchScript archives (``torch.jit.save``) share the layout
but hold a program (``code/``, ``constants.pkl``) and are refused.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightmap import dtypes
from weightmap.errors import FormatError
from weightmap.zipcheck import check_archive

from .pickle_reader import Limits, StorageRef, StorageType, load, raise_hint, short
from .storage import ZIP_ERRORS, CrcCheck, Record

FORMAT = "torch-zip"


@dataclass(frozen=True)
class TorchZip:
    """What a torch zip holds, before its pickle is read."""

    path: Path
    top: str                          # the top folder, e.g. "archive"
    byteorder: str                    # "little" or "big"
    records: dict[str, Record]        # storage key -> where its bytes are
    pickle_size: int


def data_pickle_top(names: list[str]) -> str | None:
    """The top folder holding ``data.pkl`` (one level deep), or None."""
    tops = [n[: -len("/data.pkl")] for n in names
            if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(tops) > 1:
        raise FormatError(f"the zip holds several checkpoints ({', '.join(sorted(tops))})")
    return tops[0] if tops else None


def is_torch_zip(path: Path) -> bool:
    """A zip with a ``<top>/data.pkl`` member (reads the central directory only). A zip with
    several is claimed too, so that reading it can say what is wrong."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except ZIP_ERRORS:
        return False
    return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names)


def is_readable_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except ZIP_ERRORS:
        return False


def open_archive(path: Path) -> TorchZip:
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            return _describe(path, zf, raw)
    except ZIP_ERRORS as exc:
        why = "a member name is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) \
            else f"{type(exc).__name__}: {exc}"
        raise FormatError(f"not a readable zip archive: {why}", path=path,
                          hint="the file is truncated or corrupt") from exc


def _describe(path: Path, zf: zipfile.ZipFile, raw: Any) -> TorchZip:
    names = zf.namelist()
    top = data_pickle_top(names)
    if top is None:
        raise FormatError("the zip has no <folder>/data.pkl, so it is not a torch checkpoint",
                          path=path)
    # names, sizes and spans checked against the local headers before any member is read;
    # storages are mapped from the spans found here
    spans = check_archive(zf, raw, path)
    if f"{top}/constants.pkl" in names or any(n.startswith(f"{top}/code/") for n in names):
        raise FormatError("this is a TorchScript archive (torch.jit.save), a program rather "
                          "than a state dict", path=path,
                          hint="load it with torch.jit.load and save model.state_dict() with "
                               "torch.save, or pass the live module")
    byteorder = "little"
    if f"{top}/byteorder" in names:
        if zf.getinfo(f"{top}/byteorder").file_size > 16:
            raise FormatError("the byteorder record is implausibly large", path=path)
        byteorder = zf.read(f"{top}/byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise FormatError(f"byteorder record says {byteorder!r}", path=path)
    prefix = f"{top}/data/"
    records = {info.filename[len(prefix):]: _record(path, info, spans[info.filename])
               for info in zf.infolist() if info.filename.startswith(prefix)}
    pickle_size = zf.getinfo(f"{top}/data.pkl").file_size
    return TorchZip(path, top, byteorder, records, pickle_size)


def _record(path: Path, info: zipfile.ZipInfo, span: tuple[int, int]) -> Record:
    if info.compress_type != zipfile.ZIP_STORED:
        return Record(path=str(path), offset=None, nbytes=info.file_size, member=info.filename)
    return Record(path=str(path), offset=span[0], nbytes=info.file_size, member=info.filename,
                  check=CrcCheck(str(path), span[0], info.file_size, info.CRC, info.filename))


def read_pickle(archive: TorchZip, limits: Limits, opaque_globals: bool) -> Any:
    """Unpickle ``data.pkl`` with storages resolved to ``StorageRef`` records."""
    if archive.pickle_size > limits.max_bytes:
        raise FormatError(f"data.pkl is {archive.pickle_size} bytes, above the "
                          f"{limits.max_bytes}-byte cap", path=archive.path,
                          hint=raise_hint("max_pickle_bytes"))

    def persistent(pid: Any) -> StorageRef:
        return storage_ref(pid, archive.records, archive.path)

    try:
        with zipfile.ZipFile(archive.path) as zf, zf.open(f"{archive.top}/data.pkl") as member:
            data = member.read()
    except ZIP_ERRORS as exc:
        raise FormatError(f"data.pkl cannot be extracted: {exc}", path=archive.path) from exc
    return load(io.BytesIO(data), persistent=persistent, limits=limits,
                opaque_globals=opaque_globals)


def storage_ref(pid: Any, records: dict[str, Record], path: Path) -> StorageRef:
    """``("storage", StorageType, key, location, numel)`` → a checked StorageRef."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
        raise FormatError(f"unexpected persistent id {short(pid)}", path=path)
    _, kind, key, location, numel = pid
    if not isinstance(kind, StorageType) or not isinstance(key, str) or type(numel) is not int:
        raise FormatError(f"malformed storage reference {short(pid)}", path=path)
    if key not in records:
        raise FormatError(f"the pickle refers to storage {key!r} but the zip has no "
                          f"data/{key} record", path=path)
    dtype = kind.dtype or "uint8"
    nbytes = numel * dtypes.itemsize(dtype)
    if numel < 0 or nbytes > records[key].nbytes:
        raise FormatError(f"storage {key!r} claims {nbytes} bytes but its record holds "
                          f"{records[key].nbytes}", path=path)
    return StorageRef(key=key, dtype=dtype, nbytes=nbytes, location=str(location))


