"""Lazy data handles for tensors that are strided views into torch storage records.

A C-contiguous, little-endian tensor in an uncompressed record is a plain ``MappedData``. Every
other case (a transposed view, a big-endian file, a compressed zip member, torch's lazy neg /
conj bits) is a ``StridedData`` that maps or reads the storage on ``read()`` and materialises
the view with ``numpy.lib.stride_tricks.as_strided`` after checking it stays inside the record.
"""
from __future__ import annotations

import math
import mmap
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightmap import dtypes
from weightmap.errors import FormatError
from weightmap.graph import MappedData, TensorData
from weightmap.io.spans import span_chunks

from .pickle_reader import TensorRef


# What zipfile raises on a corrupt archive (names, headers, compression, CRCs).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, UnicodeDecodeError, ValueError, EOFError,
              struct.error, NotImplementedError, KeyError, OSError)


class CrcCheck:
    """The zip member's CRC-32 checked against its stored bytes, once (the first read of any
    tensor viewing it), from any thread. A flipped bit in a checkpoint otherwise reads silently
    through a memory map (as ``torch.load(mmap=True)`` does)."""

    CHUNK = 16 << 20

    def __init__(self, path: str, offset: int, nbytes: int, crc: int, member: str):
        self.path, self.offset, self.nbytes, self.crc, self.member = \
            path, offset, nbytes, crc, member
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            crc = 0
            buffer = memoryview(bytearray(min(self.CHUNK, max(self.nbytes, 1))))
            for part in span_chunks(self.path, self.offset, self.nbytes, buffer,
                                    what=f"storage record {self.member!r}"):
                crc = zlib.crc32(part, crc)
            if crc != self.crc:
                raise FormatError(f"storage record {self.member!r} fails its CRC-32 check "
                                  f"(stored {self.crc:08x}, computed {crc:08x})",
                                  path=self.path, hint="the file is corrupt; download or copy "
                                                       "it again")
            self._done = True


@dataclass(frozen=True)
class Record:
    """Where one storage's bytes are: at ``offset`` in ``path``, or inside zip ``member``."""

    path: str
    offset: int | None               # None: the member is compressed, read it through zipfile
    nbytes: int
    member: str | None = None
    check: CrcCheck | None = field(default=None, compare=False, repr=False)


def is_c_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


def extent_bytes(ref: TensorRef) -> int:
    """Bytes from the tensor's first element to the end of its furthest one (0 if empty)."""
    if math.prod(ref.shape) == 0:
        return 0
    last = sum((size - 1) * step for size, step in zip(ref.shape, ref.stride))
    return (last + 1) * dtypes.itemsize(ref.dtype)


# A view whose strides repeat bytes (stride 0: a broadcast) is materialised as a copy larger
# than what the file stores; beyond this size that copy is refused (a 4-byte storage declared as
# a 2**40-element view would allocate terabytes).
MAX_EXPANDED_BYTES = 64 << 20


def tensor_data(ref: TensorRef, record: Record, byteorder: str, name: str) -> TensorData:
    """The lazy handle for ``ref``, after checking that the view lies inside its storage and
    does not expand a few stored bytes into a huge copy."""
    extent = extent_bytes(ref)
    end = ref.byte_offset + extent
    limit = ref.storage.base_bytes + ref.storage.nbytes
    if end > limit or limit > record.nbytes:
        raise FormatError(f"the tensor reaches byte {end} of storage {ref.storage.key!r}, "
                          f"which holds {min(limit, record.nbytes)}", path=record.path,
                          tensor=name)
    nbytes = math.prod(ref.shape) * dtypes.itemsize(ref.dtype)
    if nbytes > extent and nbytes > MAX_EXPANDED_BYTES:
        raise FormatError(f"the tensor's strides {ref.stride} expand {extent} stored bytes into "
                          f"{nbytes}, more than the {MAX_EXPANDED_BYTES}-byte limit for a "
                          "repeating view", path=record.path, tensor=name,
                          hint="save the tensor with .contiguous() if it is genuine")
    plain = (byteorder == "little" and not ref.negative and not ref.conjugate
             and record.offset is not None and is_c_contiguous(ref.shape, ref.stride))
    if plain:
        return MappedData(path=record.path, offset=record.offset + ref.byte_offset,
                          shape=ref.shape, dtype=ref.dtype, span=limit - ref.byte_offset,
                          check=record.check)
    return StridedData(record=record, byte_offset=ref.byte_offset, shape=ref.shape,
                       stride=ref.stride, dtype=ref.dtype, byteorder=byteorder,
                       negative=ref.negative, conjugate=ref.conjugate)


@dataclass(frozen=True)
class StridedData:
    """A strided view into a storage record, materialised (copied) on ``read()``."""

    record: Record
    byte_offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]           # in elements, as torch counts them
    dtype: str
    byteorder: str = "little"
    negative: bool = False
    conjugate: bool = False

    def read(self) -> np.ndarray:
        npdt = dtypes.to_numpy(self.dtype)
        if math.prod(self.shape) == 0:
            return np.zeros(self.shape, dtype=npdt)
        span = self._extent(npdt.itemsize)
        buffer = self._bytes(span)
        flat = np.frombuffer(buffer, dtype=npdt, count=span // npdt.itemsize)
        view = np.lib.stride_tricks.as_strided(
            flat, shape=self.shape, strides=[s * npdt.itemsize for s in self.stride],
            writeable=False)
        out = np.array(view, order="C")            # a C-ordered copy the caller owns
        if self.byteorder == "big":
            out = out.byteswap()
        if self.negative:
            out = np.negative(out)
        if self.conjugate:
            out = np.conj(out)
        return out

    def _extent(self, itemsize: int) -> int:
        last = sum((size - 1) * step for size, step in zip(self.shape, self.stride))
        return (last + 1) * itemsize

    def _bytes(self, span: int) -> Any:
        """The ``span`` bytes of the record starting at ``byte_offset``."""
        rec = self.record
        if self.byte_offset + span > rec.nbytes:
            raise FormatError(f"view needs bytes up to {self.byte_offset + span}, the record "
                              f"holds {rec.nbytes}", path=rec.path)
        if rec.check is not None:
            rec.check()
        if rec.offset is None:
            try:
                with zipfile.ZipFile(rec.path) as zf:
                    data = zf.read(rec.member)
            except ZIP_ERRORS as exc:
                raise FormatError(f"a compressed storage record cannot be extracted: {exc}",
                                  path=rec.path, tensor=rec.member) from exc
            if len(data) < self.byte_offset + span:
                raise FormatError("a compressed storage record is shorter than its header "
                                  "says", path=rec.path, tensor=rec.member)
            return memoryview(data)[self.byte_offset: self.byte_offset + span]
        with open(rec.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        start = rec.offset + self.byte_offset
        if start + span > len(mm):
            raise FormatError("the file is truncated inside a storage record", path=rec.path)
        return memoryview(mm)[start: start + span]
