"""HDF5 access for the Keras readers: opening (plain files and members of a ``.keras`` zip),
Keras' attribute conventions, and lazy handles on datasets.

h5py is the only library used; nothing is extracted to disk. A dataset that is stored raw
(contiguous, unfiltered, little-endian) is memory-mapped at its file offset — inside a ``.keras``
zip too, whose members Keras stores uncompressed; any other dataset is read through h5py when
its data is asked for, reopening the file then.

HDF5 can make a file read other files: external links, soft links (which may lead through
one), datasets with external storage (``external=``) and virtual datasets mapping other files
(CVE-2026-1669, GHSA-3m4q-jmj6-r34q). Keras never writes any of them, so ``open_h5`` walks every
link of a file before handing it out and refuses each of them without following it. Declared
sizes are checked against the storage the file really holds before anything is allocated
(CVE-2026-0897: a tiny file declaring a huge dataset).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import mmap
import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from weightmap import dtypes
from weightmap.errors import FormatError, UnsafeInputError
from weightmap.graph import CallableData, MappedData, TensorData, checked_nbytes
from weightmap.io.zipcheck import check_archive

from . import h5heaps

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


# Filtered (compressed) datasets may declare at most this many times their stored bytes:
# deflate cannot do better than about 1032:1.
MAX_FILTER_RATIO = 1100
MAX_OBJECTS = 1_000_000
# Groups inside groups: Keras nests a few levels per nested model (layers/<model>/layers/...);
# walking a path by its full name costs libhdf5 time in its depth (3000 levels took 25 s)
MAX_DEPTH = 100


@contextlib.contextmanager
def open_h5(loc: Location, *, check: bool = True, heaps: bool = True) -> Iterator[Any]:
    """An open ``h5py.File`` for a location (read-only), checked before it is handed out: its
    links and datasets (``check_tree``) and, unless ``heaps`` is False (for callers that read
    no attribute value), its variable-length strings' global heaps (``h5heaps``)."""
    import h5py

    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(loc.path, "rb"))
        if loc.member is None:
            image_at, image_size, src = 0, os.fstat(fh.fileno()).st_size, loc.path
            image = _image(fh, 0, image_size) if check and heaps else None
        else:
            zf = stack.enter_context(zipfile.ZipFile(fh))
            check_archive(zf, fh, loc.path)        # names, sizes, overlaps, ratios
            info = zf.getinfo(loc.member)
            if info.compress_type == zipfile.ZIP_STORED:
                start = member_data_offset(fh, info)
                image = _image(fh, start, info.file_size) if check and heaps else None
                src = stack.enter_context(_Window(fh, start, info.file_size))
            else:
                image = inflated(fh, zf, info)
                src = io.BytesIO(image)
                image = image if check and heaps else None
        lay = h5heaps.layout(image) if image is not None else None
        f = stack.enter_context(h5py.File(src, "r"))
        if check:
            headers = check_tree(f, loc.describe())        # reads no attribute value
            if lay is not None:
                h5heaps.check_references(image, lay, headers, loc.describe())
        yield f


_INFLATED: dict[tuple, bytes] = {}


def inflated(fh: Any, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A compressed member's bytes, inflated once (its size bounded by ``check_archive``'s
    ratio cap) and kept for the next reads of the same unchanged file (a port reads its tensors
    one by one). HDF5 is read with seeks back and forth: through zipfile's stream every
    backward seek inflates the member again from its start (minutes for a 1 MB member)."""
    st = os.fstat(fh.fileno())
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, info.filename)
    if key not in _INFLATED:
        data = zf.read(info)
        _INFLATED.clear()                  # one member at a time
        _INFLATED[key] = data
    return _INFLATED[key]


def _image(fh: Any, start: int, size: int) -> Any:
    """The HDF5 image's bytes, memory-mapped (a window of the file, not a copy)."""
    if size <= 0:
        return b""
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return _Slice(mm, start, min(size, len(mm) - start))


class _Slice:
    """``find``, ``len`` and slicing over a window of a memory map, without copying it."""

    def __init__(self, mm: Any, start: int, size: int):
        self.mm, self.start, self.size = mm, start, max(size, 0)

    def __len__(self) -> int:
        return self.size

    def find(self, sub: bytes, at: int = 0) -> int:
        found = self.mm.find(sub, self.start + at, self.start + self.size)
        return -1 if found == -1 else found - self.start

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            if not 0 <= key < self.size:
                raise IndexError(key)
            return self.mm[self.start + key]
        lo = min(max(key.start or 0, 0), self.size)
        hi = min(max(key.stop if key.stop is not None else self.size, lo), self.size)
        return self.mm[self.start + lo: self.start + hi]


def _link_kind(group: Any, name: str | bytes) -> int:
    # h5py hands out a name that is not UTF-8 as bytes
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    return group.id.links.get_info(raw).type


def _refuse_link(group: Any, name: str | bytes, kind: int, where: str) -> None:
    """Raise for any link that is not a hard link, saying where it leads, never following it."""
    import h5py

    full = f"{group.name.rstrip('/')}/{name if isinstance(name, str) else repr(name)}"
    if kind == h5py.h5l.TYPE_EXTERNAL:
        link = group.get(name, getlink=True)
        raise UnsafeInputError(f"{full!r} is an HDF5 external link to {link.filename!r}:"
                               f"{link.path!r}", path=where,
                               hint="weightmap never opens another file a checkpoint names")
    if kind == h5py.h5l.TYPE_SOFT:
        link = group.get(name, getlink=True)
        raise UnsafeInputError(f"{full!r} is an HDF5 soft link to {link.path!r}", path=where,
                               hint="Keras never writes links; a link may lead out of the file")
    raise UnsafeInputError(f"{full!r} is an HDF5 link of user-defined type {kind}", path=where,
                           hint="Keras never writes links; weightmap does not follow them")


def check_dataset(ds: Any, where: str) -> None:
    """Refuse a dataset whose bytes live in other files (external storage, virtual), or whose
    chunks are larger than the dataset in any dimension (libhdf5 allocates a whole chunk to
    read any part of it: a 48-byte tensor in one 16384 x 16384 chunk costs 1 GB)."""
    import h5py

    chunks = ds.chunks
    if chunks is not None and any(c > max(int(d), 1) for c, d in zip(chunks, ds.shape)):
        raise FormatError(f"dataset {ds.name!r} of shape {tuple(ds.shape)} is stored in chunks "
                          f"of {tuple(chunks)}, larger than the dataset", path=where,
                          hint="Keras never writes such chunks; the file is forged")
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        source = plist.get_virtual_filename(0) if plist.get_virtual_count() else "?"
        raise UnsafeInputError(f"dataset {ds.name!r} is a virtual dataset mapping {source!r}",
                               path=where, hint="weightmap never reads another file")
    if plist.get_external_count():
        name = plist.get_external(0)[0]
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        raise UnsafeInputError(f"dataset {ds.name!r} keeps its bytes in the external file "
                               f"{name!r}", path=where, hint="weightmap never reads another file")


def check_tree(f: Any, where: str) -> list[int]:
    """Walk every link of the file from the root without following any but hard links; refuse
    other links and datasets stored outside the file. Each object is visited once; returns the
    addresses of all object headers (for ``h5heaps.check_references``)."""
    import h5py

    seen: set[tuple] = set()
    todo = [(f, 0)]
    headers = [h5py.h5o.get_info(f["/"].id).addr]
    while todo:
        group, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise FormatError(f"the file nests groups more than {MAX_DEPTH} levels deep",
                              path=where, hint="Keras never does; the file is forged")
        for name in group.keys():
            kind = _link_kind(group, name)
            if kind != h5py.h5l.TYPE_HARD:
                _refuse_link(group, name, kind, where)
            obj = group[name]                       # a hard link: inside this file
            info = h5py.h5o.get_info(obj.id)
            key = (info.fileno, info.addr)
            if key in seen:
                continue
            seen.add(key)
            headers.append(info.addr)
            if len(seen) > MAX_OBJECTS:
                raise FormatError(f"the file holds more than {MAX_OBJECTS} objects", path=where)
            if isinstance(obj, h5py.Group):
                todo.append((obj, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                check_dataset(obj, where)
    return headers


def checked_dataset(f: Any, h5path: str, where: str) -> Any:
    """The dataset at ``h5path``, reached through hard links only and stored in the file."""
    import h5py

    group = f
    parts = [p for p in h5path.split("/") if p]
    for i, part in enumerate(parts):
        kind = _link_kind(group, part)
        if kind != h5py.h5l.TYPE_HARD:
            _refuse_link(group, part, kind, where)
        group = group[part]
    if not isinstance(group, h5py.Dataset):
        raise FormatError(f"{h5path!r} is not a dataset", path=where)
    check_dataset(group, where)
    return group


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

    if not isinstance(ds, h5py.Dataset):           # a weight name leading to a group
        raise FormatError(f"weight {ds.name!r} is an HDF5 {type(ds).__name__.lower()}, not a "
                          "dataset", path=loc.describe(),
                          hint="the file's weight_names do not match its datasets; it is "
                               "corrupt or was not written by Keras")
    shape = tuple(int(d) for d in ds.shape)
    is_bf16 = decode(ds.attrs.get("dtype")) == "bfloat16" and ds.dtype.itemsize == 2
    dtype = "bfloat16" if is_bf16 else dtypes.from_numpy(ds.dtype)
    check_dataset(ds, loc.describe())
    stored = _check_storage(ds, shape, dtype, loc)
    plist = ds.id.get_create_plist()
    raw = (base_offset is not None and ds.compression is None and not plist.get_nfilters()
           and plist.get_layout() == h5py.h5d.CONTIGUOUS
           and (is_bf16 or ds.dtype.byteorder in ("<", "=", "|")))
    offset = ds.id.get_offset() if raw else None
    if offset is not None and math.prod(shape) > 0:
        end = base_offset + offset + stored
        if end > os.path.getsize(loc.path):
            raise FormatError(f"dataset {ds.name!r} ends at byte {end}, past the end of the "
                              f"file", path=loc.describe(), hint="the file is truncated")
        return DatasetSpec(shape, dtype, MappedData(
            path=loc.path, offset=base_offset + offset, shape=shape, dtype=dtype,
            span=stored))
    return DatasetSpec(shape, dtype, CallableData(_reader(loc, ds.name, shape, dtype)))


def _check_storage(ds: Any, shape: tuple[int, ...], dtype: str, loc: Location) -> int:
    """The dataset's stored bytes, after checking that they can hold what it declares: all of
    it when unfiltered, at most ``MAX_FILTER_RATIO`` times more when compressed, and never more
    storage than the file has. Refused before anything is allocated."""
    need = checked_nbytes(shape, dtype, path=loc.describe(), tensor=ds.name)
    stored = ds.id.get_storage_size()
    if stored > os.path.getsize(loc.path):
        raise FormatError(f"dataset {ds.name!r} claims {stored} bytes of storage, more than "
                          "the whole file", path=loc.describe(), hint="the file is corrupt")
    filtered = ds.id.get_create_plist().get_nfilters() > 0
    if need and not filtered and stored < need:
        raise FormatError(f"dataset {ds.name!r} declares {need} bytes ({dtype}{list(shape)}) "
                          f"but the file stores {stored} for it", path=loc.describe(),
                          hint="the file is truncated or forged; nothing was allocated")
    if need and filtered and need > MAX_FILTER_RATIO * stored:
        raise FormatError(f"dataset {ds.name!r} declares {need} bytes from {stored} compressed "
                          f"(ratio above {MAX_FILTER_RATIO})", path=loc.describe(),
                          hint="no compression filter does that; the file is forged")
    return stored


def _reader(loc: Location, h5path: str, shape: tuple[int, ...], dtype: str
            ) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        try:
            with open_h5(loc, check=False) as f:   # the tree was checked; recheck the path
                arr = np.asarray(checked_dataset(f, h5path, loc.describe())[()])
        except READ_ERRORS as exc:
            raise FormatError(f"cannot read dataset {h5path!r}: {type(exc).__name__}: {exc}",
                              path=loc.describe(), hint="the file is truncated or corrupt") \
                from exc
        if dtype == "bfloat16":
            return arr.view(dtypes.to_numpy("bfloat16")).reshape(shape)
        return arr.astype(dtypes.to_numpy(dtype), copy=False).reshape(shape)
    return read
