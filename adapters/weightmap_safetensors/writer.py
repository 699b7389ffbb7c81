"""Streaming safetensors writer: the header is known from the plan, tensors are written one at a
time, so peak memory is one tensor. No framework needed."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from weightmap.dtypes import TO_SAFETENSORS, from_numpy, itemsize
from weightmap.errors import UsageError


def header_bytes(specs: Iterable[tuple[str, tuple[int, ...], str]],
                 metadata: Mapping[str, str] | None = None) -> bytes:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, shape, dtype in specs:
        if dtype not in TO_SAFETENSORS:
            raise UsageError(f"safetensors cannot store dtype {dtype}", tensor=name)
        size = int(np.prod(shape, dtype=np.int64)) * itemsize(dtype)
        header[name] = {"dtype": TO_SAFETENSORS[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)          # keep tensor data 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write(path: Path, specs: list[tuple[str, tuple[int, ...], str]],
          tensors: Iterable[tuple[str, np.ndarray]],
          metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (in the order of ``specs``) to ``path``."""
    expected = {name: (tuple(shape), dtype) for name, shape, dtype in specs}
    order = [name for name, _, _ in specs]
    with open(path, "wb") as fh:
        fh.write(header_bytes(specs, metadata))
        for i, (name, arr) in enumerate(tensors):
            if i >= len(order) or name != order[i]:
                raise UsageError(f"tensor {name!r} arrives out of the header's order")
            shape, dtype = expected[name]
            if tuple(arr.shape) != shape or from_numpy(arr.dtype) != dtype:
                raise UsageError(f"tensor has {arr.shape} {from_numpy(arr.dtype)}, header says "
                                 f"{shape} {dtype}", tensor=name)
            fh.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"),
                                                      copy=False).tobytes())
