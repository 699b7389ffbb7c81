import os
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from weightmap.errors import FormatError, UnsafeInputError, UsageError
from weightmap.graph import CallableData, MappedData
from weightmap_onnx.tensors import ONNX_DTYPES, read_initializer


@pytest.mark.parametrize("array, dtype", [
    (np.arange(6, dtype=np.float32).reshape(2, 3), "float32"),
    (np.arange(4, dtype=np.float16), "float16"),
    (np.arange(4, dtype=np.float32).astype(ml_dtypes.bfloat16), "bfloat16"),
    (np.arange(4, dtype=np.float32).astype(ml_dtypes.float8_e4m3fn), "float8_e4m3fn"),
    (np.array([-3, 4], dtype=np.int8), "int8"),
    (np.array([1, 2], dtype=np.int64), "int64"),
    (np.array([True, False]), "bool"),
    (np.array(2.5, dtype=np.float64), "float64"),
])
def test_inline_initializers_decode_lazily(tmp_path, array, dtype, same_tensor):
    t = numpy_helper.from_array(array, "w")
    init = read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert (init.name, init.dtype, init.shape) == ("w", dtype, array.shape)
    assert isinstance(init.data, CallableData) and init.external is None
    same_tensor(init.data.read(), numpy_helper.to_array(t))


def test_typed_fields_are_decoded_too(tmp_path):
    t = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0], raw=False)
    assert not t.HasField("raw_data")
    init = read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    np.testing.assert_array_equal(init.data.read(), [[1, 2], [3, 4]])


def test_raw_data_of_the_wrong_size_is_refused(tmp_path):
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.dims[0] = 5
    with pytest.raises(FormatError, match="raw_data holds 16 bytes") as err:
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert err.value.tensor == "w" and "m.onnx" in str(err.value)


def test_typed_fields_shorter_than_dims_are_refused(tmp_path):
    # refused when the graph is built (security catalogue), no longer only when read
    t = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0], raw=False)
    t.dims[0] = 4
    with pytest.raises(FormatError, match="float_data holds 3 values") as err:
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert err.value.tensor == "w"


@pytest.mark.parametrize("code", [TensorProto.STRING, TensorProto.INT4, TensorProto.UNDEFINED])
def test_unhandled_dtypes_are_refused(tmp_path, code):
    t = TensorProto(name="s", data_type=code, dims=[1])
    with pytest.raises(FormatError, match=f"ONNX data type {code}") as err:
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert err.value.tensor == "s"
    assert code not in ONNX_DTYPES


def _external(folder: Path, location: str, array: np.ndarray, *, offset: int = 0,
              length: int | None = None, write: bool = True) -> TensorProto:
    if write:
        (folder / "w.bin").write_bytes(b"\0" * offset + array.tobytes())
    t = numpy_helper.from_array(array, "w")
    set_external_data(t, location, offset=offset,
                      length=array.nbytes if length is None else length)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    return t


def test_external_data_is_memory_mapped(tmp_path, same_tensor):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = _external(tmp_path, "w.bin", array, offset=16)
    init = read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert isinstance(init.data, MappedData) and init.external == "w.bin"
    assert (init.data.offset, init.data.span) == (16, 48)
    same_tensor(init.data.read(), array)


def test_external_without_length_uses_the_shape(tmp_path):
    array = np.arange(3, dtype=np.int64)
    t = _external(tmp_path, "w.bin", array)
    del t.external_data[2]                      # drop "length"
    assert [e.key for e in t.external_data] == ["location", "offset"]
    init = read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    np.testing.assert_array_equal(init.data.read(), array)


@pytest.mark.parametrize("location", ["../w.bin", "/etc/passwd", "sub/../../w.bin",
                                      "..\\w.bin"])
def test_locations_leaving_the_folder_are_unsafe(tmp_path, location):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    t = _external(tmp_path, location, np.zeros(2, np.float32))
    with pytest.raises(UnsafeInputError) as err:
        read_initializer(t, model_path=model_dir / "m.onnx", folder=model_dir)
    assert err.value.tensor == "w" and "m.onnx" in str(err.value)


def test_symlink_leaving_the_folder_is_unsafe(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    t = _external(tmp_path, "w.bin", np.zeros(2, np.float32))
    os.symlink(tmp_path / "w.bin", model_dir / "w.bin")
    with pytest.raises(UnsafeInputError, match="outside the folder"):
        read_initializer(t, model_path=model_dir / "m.onnx", folder=model_dir)


def test_non_regular_location_is_unsafe(tmp_path):
    (tmp_path / "d").mkdir()
    t = _external(tmp_path, "d", np.zeros(2, np.float32))
    with pytest.raises(UnsafeInputError, match="not a regular file"):
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)


def test_missing_external_file_is_named(tmp_path):
    t = _external(tmp_path, "gone.bin", np.zeros(2, np.float32))
    with pytest.raises(FormatError, match="'gone.bin' is missing") as err:
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert err.value.tensor == "w"


@pytest.mark.parametrize("offset, length, message", [
    (0, 12, "length 12 does not match 8 bytes"),
    (8, None, "reach beyond the end of 'w.bin'"),
])
def test_bad_offsets_and_lengths(tmp_path, offset, length, message):
    array = np.zeros(2, np.float32)
    t = _external(tmp_path, "w.bin", array, length=length, write=False)
    (tmp_path / "w.bin").write_bytes(array.tobytes())
    for entry in t.external_data:
        if entry.key == "offset":
            entry.value = str(offset)
    with pytest.raises(FormatError, match=message):
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("offset", "ten", "offset 'ten' is not an integer"),
    ("offset", "-4", "offset -4 is negative"),
    ("location", "", "has no 'location'"),
])
def test_malformed_external_fields(tmp_path, key, value, message):
    t = _external(tmp_path, "w.bin", np.zeros(2, np.float32))
    for entry in t.external_data:
        if entry.key == key:
            entry.value = value
    with pytest.raises(FormatError, match=message):
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=tmp_path)


def test_external_data_needs_a_folder(tmp_path):
    t = _external(tmp_path, "w.bin", np.zeros(2, np.float32))
    with pytest.raises(UsageError, match="base_dir"):
        read_initializer(t, model_path=tmp_path / "m.onnx", folder=None)
