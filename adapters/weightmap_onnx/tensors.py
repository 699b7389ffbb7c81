"""ONNX initializers as specs with lazy data.

Inline tensors (``raw_data`` or the typed ``*_data`` fields) are already in the parsed proto and
are decoded by ``onnx.numpy_helper`` only when read. External tensors (``data_location ==
EXTERNAL``) are memory-mapped from the file named by ``location``: that name comes from the model
file, so it must be a plain relative path resolving to a regular file inside the model's folder
(no absolute path, no ``..``, no symlink out of the folder), and ``offset``/``length`` must fit the
file and the declared shape.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightmap.errors import FormatError, UsageError
from weightmap.graph import CallableData, MappedData, TensorData, checked_nbytes
from weightmap.io.paths import resolve_inside

# TensorProto.DataType codes -> canonical dtype names (weightmap.dtypes). Sub-byte and string
# types have no raw one-element-per-item layout and are refused.
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
    15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz",
    19: "float8_e5m2", 20: "float8_e5m2fnuz",
}
EXTERNAL = 1   # TensorProto.DataLocation.EXTERNAL


@dataclass(frozen=True)
class Initializer:
    name: str
    dtype: str
    shape: tuple[int, ...]
    data: TensorData
    external: str | None = None        # the external file's name as the model gives it


def dtype_name(code: int, *, name: str, path: Path) -> str:
    try:
        return ONNX_DTYPES[code]
    except KeyError:
        raise FormatError(f"initializer has ONNX data type {code}, which weightmap does not "
                          f"handle", path=path, tensor=name,
                          hint=f"handled: {', '.join(sorted(set(ONNX_DTYPES.values())))}") from None


# Which typed field holds an inline tensor without raw_data, and how many values per element.
_TYPED_FIELD = {
    "float32": ("float_data", 1), "complex64": ("float_data", 2),
    "float64": ("double_data", 1), "complex128": ("double_data", 2),
    "int64": ("int64_data", 1), "uint32": ("uint64_data", 1), "uint64": ("uint64_data", 1),
}


def _check_typed_count(tensor: Any, dtype: str, shape: tuple[int, ...], *, path: Path) -> None:
    """An inline tensor in a typed field holds exactly one value per element (two for complex);
    every other dtype lives in int32_data."""
    field, per = _TYPED_FIELD.get(dtype, ("int32_data", 1))
    have, want = len(getattr(tensor, field)), math.prod(shape) * per
    if have != want:
        raise FormatError(f"{field} holds {have} values, {dtype}{list(shape)} needs {want}",
                          path=path, tensor=tensor.name,
                          hint="the file is corrupt or forged")


def _inline_reader(tensor: Any, *, path: Path) -> CallableData:
    def read() -> Any:
        from onnx import numpy_helper
        try:
            return numpy_helper.to_array(tensor)
        except (ValueError, TypeError) as exc:
            raise FormatError(f"initializer data cannot be decoded: {exc}", path=path,
                              tensor=tensor.name) from exc
    return CallableData(read)


def read_initializer(tensor: Any, *, model_path: Path, folder: Path | None) -> Initializer:
    """One initializer; external data checked (location, bounds) but not read."""
    name = tensor.name
    if any(d < 0 for d in tensor.dims):
        raise FormatError(f"negative dimension in {list(tensor.dims)}", path=model_path,
                          tensor=name)
    shape = tuple(int(d) for d in tensor.dims)
    dtype = dtype_name(tensor.data_type, name=name, path=model_path)
    need = checked_nbytes(shape, dtype, path=model_path, tensor=name)
    if tensor.data_location != EXTERNAL:
        if tensor.HasField("raw_data"):
            if len(tensor.raw_data) != need:
                raise FormatError(f"raw_data holds {len(tensor.raw_data)} bytes, {dtype}"
                                  f"{list(shape)} needs {need}", path=model_path, tensor=name)
        else:
            _check_typed_count(tensor, dtype, shape, path=model_path)
        return Initializer(name, dtype, shape, _inline_reader(tensor, path=model_path))
    return _external(tensor, name, dtype, shape, model_path=model_path, folder=folder)


def _external(tensor: Any, name: str, dtype: str, shape: tuple[int, ...], *,
              model_path: Path, folder: Path | None) -> Initializer:
    info = {entry.key: entry.value for entry in tensor.external_data}
    if folder is None:
        raise UsageError("initializer keeps its data in an external file but no folder to find "
                         "it in was given", path=model_path, tensor=name,
                         hint="pass base_dir= (the folder the model was saved in)")
    location = info.get("location")
    if not location:
        raise FormatError("external initializer has no 'location'", path=model_path, tensor=name)
    try:
        file = resolve_inside(folder, location, what="external data file", referrer=model_path)
    except FormatError as exc:
        raise type(exc)(exc.message, path=exc.path, tensor=name, hint=exc.hint) from None
    offset = _int_field(info, "offset", 0, name=name, path=model_path)
    need = checked_nbytes(shape, dtype, path=model_path, tensor=name)
    length = _int_field(info, "length", need, name=name, path=model_path)
    if length != need:
        raise FormatError(f"external data length {length} does not match {need} bytes needed "
                          f"for {dtype}{list(shape)}", path=model_path, tensor=name)
    size = os.path.getsize(file)
    if offset + length > size:
        raise FormatError(f"external bytes {offset}..{offset + length} reach beyond the end of "
                          f"{location!r} ({size} bytes)", path=model_path, tensor=name,
                          hint="the external data file is truncated or belongs to another model")
    data = MappedData(path=str(file), offset=offset, shape=shape, dtype=dtype, span=length)
    return Initializer(name, dtype, shape, data, external=location)


def _int_field(info: dict[str, str], key: str, default: int, *, name: str, path: Path) -> int:
    raw = info.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FormatError(f"external data {key} {raw!r} is not an integer", path=path,
                          tensor=name) from None
    if value < 0:
        raise FormatError(f"external data {key} {value} is negative", path=path, tensor=name)
    return value
