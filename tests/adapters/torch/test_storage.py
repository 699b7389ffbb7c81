"""Lazy handles on strided views: contiguity, bounds, byte order, compressed members."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap.graph import MappedData
from weightmap_torch.pickle_reader import StorageRef, TensorRef
from weightmap_torch.storage import (Record, StridedData, extent_bytes, is_c_contiguous,
                                     tensor_data)


@pytest.mark.parametrize("shape,stride,expected", [
    ((2, 3), (3, 1), True), ((3, 2), (1, 3), False), ((1, 4), (99, 1), True),
    ((4, 1), (1, 7), True), ((), (), True), ((0, 3), (3, 1), True), ((2, 2), (4, 1), False),
])
def test_is_c_contiguous(shape, stride, expected):
    assert is_c_contiguous(shape, stride) is expected


def _storage_file(tmp_path, values, dtype="<f4"):
    path = tmp_path / "s.bin"
    path.write_bytes(b"HEAD" + np.asarray(values, dtype=dtype).tobytes())
    return path


def _ref(shape, stride, offset=0, nbytes=48, dtype="float32"):
    return TensorRef(StorageRef("0", dtype, nbytes, "cpu"), offset, shape, stride, dtype)


def test_contiguous_view_is_memory_mapped(tmp_path):
    path = _storage_file(tmp_path, np.arange(12))
    rec = Record(str(path), offset=4, nbytes=48)
    data = tensor_data(_ref((2, 4), (4, 1), offset=4), rec, "little", "row")
    assert isinstance(data, MappedData) and data.offset == 4 + 16
    np.testing.assert_array_equal(data.read(), np.arange(4, 12).reshape(2, 4))


def test_strided_view_is_materialised(tmp_path):
    path = _storage_file(tmp_path, np.arange(12))
    rec = Record(str(path), offset=4, nbytes=48)
    data = tensor_data(_ref((4, 3), (1, 4)), rec, "little", "t")
    assert isinstance(data, StridedData)
    out = data.read()
    np.testing.assert_array_equal(out, np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert out.flags.writeable and out.flags.c_contiguous


def test_views_outside_the_storage_are_refused(tmp_path):
    path = _storage_file(tmp_path, np.arange(12))
    rec = Record(str(path), offset=4, nbytes=48)
    assert extent_bytes(_ref((3, 4), (4, 1), offset=1)) == 48
    with pytest.raises(FormatError, match="reaches byte 52") as err:
        tensor_data(_ref((3, 4), (4, 1), offset=1), rec, "little", "w")
    assert err.value.tensor == "w"
    with pytest.raises(FormatError):
        tensor_data(_ref((2,), (100,)), rec, "little", "w")
    with pytest.raises(FormatError):                       # storage larger than its record
        tensor_data(_ref((2,), (1,), nbytes=64), rec, "little", "w")


def test_big_endian_and_flags(tmp_path):
    path = _storage_file(tmp_path, np.arange(6), dtype=">f4")
    rec = Record(str(path), offset=4, nbytes=24)
    ref = _ref((3, 2), (1, 3), nbytes=24)
    np.testing.assert_array_equal(tensor_data(ref, rec, "big", "x").read(),
                                  np.arange(6, dtype=np.float32).reshape(2, 3).T)
    neg = TensorRef(ref.storage, 0, (6,), (1,), "float32", negative=True)
    np.testing.assert_array_equal(tensor_data(neg, rec, "big", "x").read(), -np.arange(6.0))


def test_compressed_member(tmp_path):
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data/0", np.arange(8, dtype="<i8").tobytes())
    rec = Record(str(path), offset=None, nbytes=64, member="a/data/0")
    ref = TensorRef(StorageRef("0", "int64", 64, "cpu"), 2, (3,), (2,), "int64")
    np.testing.assert_array_equal(tensor_data(ref, rec, "little", "x").read(), [2, 4, 6])


def test_empty_and_scalar(tmp_path):
    path = _storage_file(tmp_path, [5.0])
    rec = Record(str(path), offset=4, nbytes=4)
    empty = tensor_data(_ref((0, 3), (3, 1), nbytes=4), rec, "little", "e").read()
    assert empty.shape == (0, 3)
    assert StridedData(rec, 0, (0,), (1,), "float32").read().shape == (0,)
    assert tensor_data(_ref((), (), nbytes=4), rec, "little", "s").read() == 5.0


def test_truncated_file_detected_on_read(tmp_path):
    path = _storage_file(tmp_path, np.arange(4))
    rec = Record(str(path), offset=4, nbytes=64)               # the header lies
    data = StridedData(rec, 0, (8,), (2,), "float32")
    with pytest.raises(FormatError, match="truncated|record holds"):
        data.read()


def _flipped_pt(tmp_path, torch):
    """A torch.save file with one bit flipped inside the storage of "w" (its CRC-32 unchanged)."""
    w, b = torch.arange(64, dtype=torch.float32).reshape(8, 8), torch.ones(3)
    path = tmp_path / "flipped.pt"
    torch.save({"w": w, "b": b, "wt": w.t()}, path)
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    from weightmap.io.zipcheck import data_span
    with open(path, "r+b") as fh:
        at = data_span(fh, info, path)[0] + 17
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x10]))
    return path


def test_a_flipped_bit_in_a_stored_record_fails_its_crc_on_read(tmp_path):
    torch = pytest.importorskip("torch")
    from weightmap.reading.read import read
    path = _flipped_pt(tmp_path, torch)
    graph = read(str(path))                              # reading the specs reads no data
    np.testing.assert_array_equal(graph.param("b").read(), np.ones(3, np.float32))
    for name in ("w", "wt"):                             # a plain view and a strided one
        with pytest.raises(FormatError, match="fails its CRC-32 check.*corrupt"):
            graph.param(name).read()


def test_a_port_never_copies_a_record_that_fails_its_crc(tmp_path):
    torch = pytest.importorskip("torch")
    import os

    import weightmap
    path = _flipped_pt(tmp_path, torch)
    out = tmp_path / "out.safetensors"
    with pytest.raises(FormatError, match="CRC-32"):
        weightmap.port(path, path, out)                  # "w" would be copied file to file
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["flipped.pt"]


def test_the_crc_of_a_record_is_computed_once(tmp_path, monkeypatch):
    import zlib as zlib_module

    from weightmap_torch import storage
    path = tmp_path / "r.bin"
    payload = np.arange(10, dtype="<f4").tobytes()
    path.write_bytes(b"HEAD" + payload)
    check = storage.CrcCheck(str(path), 4, len(payload), zlib_module.crc32(payload), "data/0")
    calls = []
    real = storage.zlib.crc32
    monkeypatch.setattr(storage.zlib, "crc32", lambda *a: calls.append(1) or real(*a))
    check()
    check()
    assert len(calls) == 1
