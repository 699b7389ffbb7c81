"""HDF5 access for the Keras readers: opening (plain files and members of a ``.keras`` zip),
Keras' attribute conventions, and lazy handles on datasets.

h5py is the only library used; nothing is extracted to disk. A dataset that is stored raw
(contiguous, unfiltered, little-endian) is memory-mapped at its file offset — inside a ``.keras``
zip too, whose members Keras stores uncompressed; any other dataset is read through h5py when
its data is asked for, reopening the file then.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from weightmap import dtypes
from weightmap.errors import FormatError
from weightmap.graph import CallableData, MappedData, TensorData

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
WEIGHTS_MEMBER = "model.weights.h5"
# Errors h5py, zipfile and json raise on damaged input.
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, EOFError, RuntimeError,
               zipfile.BadZipFile, struct.error, UnicodeDecodeError)


@dataclass(frozen=True)
class Location:
    """Where an HDF5 file lives: a path, or a member of a zip at ``path``."""

    path: str
    member: str | None = None

    def describe(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``start`` of an open file: an
    uncompressed zip member, handed to h5py without copying it out."""

    def __init__(self, fh: Any, start: int, size: int):
        super().__init__()
        self._fh, self._start, self._size, self._pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = max(0, min(len(buf), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)


def member_data_offset(fh: Any, info: zipfile.ZipInfo) -> int:
    """Offset of a member's bytes in the zip file (after its local header)."""
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != ZIP_MAGIC:
        raise FormatError(f"zip member {info.filename!r} has no local header", path=fh.name)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


@contextlib.contextmanager
def open_h5(loc: Location) -> Iterator[Any]:
    """An open ``h5py.File`` for a location (read-only)."""
    import h5py

    if loc.member is None:
        with h5py.File(loc.path, "r") as f:
            yield f
        return
    with open(loc.path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        info = zf.getinfo(loc.member)
        if info.compress_type == zipfile.ZIP_STORED:
            src: Any = _Window(fh, member_data_offset(fh, info), info.file_size)
        else:
            src = zf.open(info)                    # deflated: h5py reads through zipfile
        with src, h5py.File(src, "r") as f:
            yield f


def stored_member_offset(path: str, member: str) -> int | None:
    """Where an uncompressed member's bytes start in the zip, else None."""
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        return member_data_offset(fh, info)


def decode(value: Any) -> Any:
    """HDF5 attribute values as Python data: bytes -> str, arrays -> lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [decode(v) for v in value.tolist()]
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def load_attr(group: Any, name: str) -> Any:
    """An attribute Keras may have split in chunks (``name0``, ``name1`` ...) when it grew past
    the HDF5 attribute size limit; None when absent."""
    if name in group.attrs:
        return decode(group.attrs[name])
    chunks, i = [], 0
    while f"{name}{i}" in group.attrs:
        chunks.extend(decode(group.attrs[f"{name}{i}"]))
        i += 1
    return chunks if i else None


def load_json_attr(group: Any, name: str, where: str) -> Any:
    text = load_attr(group, name)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"attribute {name!r} is not valid JSON ({exc})", path=where) from exc


@dataclass(frozen=True)
class DatasetSpec:
    """What a reader needs of one dataset: shape, canonical dtype, lazy data."""

    shape: tuple[int, ...]
    dtype: str
    data: TensorData


def dataset_spec(ds: Any, loc: Location, base_offset: int | None) -> DatasetSpec:
    """Shape, dtype and a lazy handle; memory-mapped when stored raw.

    ``base_offset`` is where the HDF5 file starts inside ``loc.path`` (0 for a plain file, the
    member's offset for an uncompressed zip member, None when it cannot be mapped).
    """
    import h5py

    shape = tuple(int(d) for d in ds.shape)
    is_bf16 = decode(ds.attrs.get("dtype")) == "bfloat16" and ds.dtype.itemsize == 2
    dtype = "bfloat16" if is_bf16 else dtypes.from_numpy(ds.dtype)
    raw = (base_offset is not None and ds.compression is None and not ds.id.get_create_plist()
           .get_nfilters() and ds.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
           and (is_bf16 or ds.dtype.byteorder in ("<", "=", "|")))
    offset = ds.id.get_offset() if raw else None
    if offset is not None and math.prod(shape) > 0:
        return DatasetSpec(shape, dtype, MappedData(
            path=loc.path, offset=base_offset + offset, shape=shape, dtype=dtype,
            span=ds.id.get_storage_size()))
    return DatasetSpec(shape, dtype, CallableData(_reader(loc, ds.name, shape, dtype)))


def _reader(loc: Location, h5path: str, shape: tuple[int, ...], dtype: str
            ) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        try:
            with open_h5(loc) as f:
                arr = np.asarray(f[h5path][()])
        except READ_ERRORS as exc:
            raise FormatError(f"cannot read dataset {h5path!r}: {type(exc).__name__}: {exc}",
                              path=loc.describe(), hint="the file is truncated or corrupt") \
                from exc
        if dtype == "bfloat16":
            return arr.view(dtypes.to_numpy("bfloat16")).reshape(shape)
        return arr.astype(dtypes.to_numpy(dtype), copy=False).reshape(shape)
    return read
