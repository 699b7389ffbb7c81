"""Tensor bytes on their way into the output: into an initializer proto (inline), into the
output's external data file, or parked in a spool file until tied tensors can be compared.

ONNX stores tensor bytes little-endian, C order, one element per item (``raw_data``); external
tensors point at ``location``/``offset``/``length`` in a file beside the model.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

EXTERNAL = 1           # TensorProto.DataLocation.EXTERNAL
DEFAULT = 0
# Typed value fields a tensor may hold its data in instead of raw_data.
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data",
                 "uint64_data")
SMALL_ALIGN = 64               # every external tensor starts on a 64-byte boundary ...
LARGE_ALIGN = 4096             # ... and a large one on a page, so readers can map it
LARGE = 1 << 20


def le_bytes(arr: np.ndarray) -> np.ndarray:
    """The array's bytes as ONNX wants them: a flat uint8 view, little-endian, C order."""
    a = np.asarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


def clear_data(tensor: Any) -> None:
    for name in _TYPED_FIELDS:
        tensor.ClearField(name)
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    tensor.data_location = DEFAULT


def set_inline(tensor: Any, data: Any) -> None:
    clear_data(tensor)
    tensor.raw_data = bytes(data)


def set_external(tensor: Any, location: str, offset: int, length: int) -> None:
    clear_data(tensor)
    tensor.data_location = EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


class DataFile:
    """Appends tensors, aligned, to an open (temporary) external data file."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.end = 0

    def append(self, data: Any) -> tuple[int, int]:
        length = memoryview(data).nbytes
        align = LARGE_ALIGN if length >= LARGE else SMALL_ALIGN
        offset = -(-self.end // align) * align
        if offset > self.end:
            self.fh.write(b"\0" * (offset - self.end))
        self.fh.write(data)
        self.end = offset + length
        return offset, length


class Spool:
    """An anonymous temporary file (gone when closed, even after a crash) holding tensors whose
    fate is decided only when every tensor tied to them has been seen."""

    def __init__(self, folder: Path) -> None:
        self.fh = tempfile.TemporaryFile(dir=folder, prefix=".weightmap-spool.")
        self.end = 0

    def put(self, data: Any) -> tuple[int, int]:
        offset, length = self.end, memoryview(data).nbytes
        self.fh.seek(offset)
        self.fh.write(data)
        self.end += length
        return offset, length

    def get(self, where: tuple[int, int]) -> bytes:
        offset, length = where
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise OSError(f"spool file returned {len(data)} of {length} bytes")
        return data

    def close(self) -> None:
        self.fh.close()


def fsync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
