"""weightmap's own .pt writer (adapters/weightmap_torch/zip_writer.py): what torch.load and
weightmap's reader make of it, member layout, alignment, the pickle's integers, misuse."""
from __future__ import annotations

import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from weightmap import dtypes
from weightmap.errors import UsageError
from weightmap.reading.read import read
from weightmap_torch import zip_writer

torch = pytest.importorskip("torch")


def every_dtype() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, 96, dtype=np.uint8).tobytes()
    out = {}
    for name in sorted(dtypes.DTYPES):
        npdt = dtypes.to_numpy(name)
        arr = np.frombuffer(raw[: 6 * npdt.itemsize], dtype=npdt).reshape(2, 3)
        if name == "bool":
            arr = np.array([[True, False, True], [False, False, True]])
        out[f"t.{name}"] = arr
    out["scalar"] = np.array(2.5, np.float64)
    out["empty"] = np.zeros((0, 3), np.float32)
    out["strided"] = rng.standard_normal((40, 30)).astype(np.float32).T     # a transposed view
    out["big_endian"] = np.arange(6, dtype=">i4").reshape(3, 2)
    return out


def specs(arrays):
    return [(k, a.shape, dtypes.from_numpy(a.dtype)) for k, a in arrays.items()]


def torch_bytes(t) -> bytes:
    if t.dtype.itemsize == 1 and t.dtype not in (torch.uint8, torch.int8, torch.bool):
        t = t.view(torch.uint8)                     # float8: numpy has no twin
    elif t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()


@pytest.fixture
def written(tmp_path):
    arrays = every_dtype()
    path = tmp_path / "model.pt"
    zip_writer.write(path, specs(arrays), iter(arrays.items()), top="model")
    return path, arrays


@pytest.mark.parametrize("mmap", [False, True])
def test_torch_loads_every_tensor_bit_exactly_with_weights_only(written, mmap):
    path, arrays = written
    state = torch.load(path, weights_only=True, mmap=mmap)
    assert list(state) == list(arrays)
    for name, arr in arrays.items():
        want = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        assert tuple(state[name].shape) == arr.shape and torch_bytes(state[name]) == want, name


def test_weightmaps_reader_reads_it_back_bit_exactly(written):
    path, arrays = written
    graph = read(str(path))
    for name, arr in arrays.items():
        p = graph.param(name)
        assert (p.shape, p.dtype) == (arr.shape, dtypes.from_numpy(arr.dtype))
        assert np.ascontiguousarray(p.read()).tobytes() == \
            np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("=")).tobytes(), name


def test_members_follow_torch_and_storages_are_64_byte_aligned(written):
    path, arrays = written
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[:4] == ["model/data.pkl", "model/.format_version",
                             "model/.storage_alignment", "model/byteorder"]
        assert names[-1] == "model/version" and zf.read("model/version") == b"3\n"
        assert names[4:-1] == [f"model/data/{i}" for i in range(len(arrays))]
        assert zf.testzip() is None                                  # CRCs hold
        raw = path.read_bytes()
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = np.frombuffer(raw[info.header_offset + 26:
                                                    info.header_offset + 30], "<u2")
            start = info.header_offset + 30 + int(name_len) + int(extra_len)
            assert start % zip_writer.ALIGN == 0, info.filename


def test_the_same_tensors_give_the_same_bytes(tmp_path, written):
    path, arrays = written
    again = tmp_path / "again" / "model.pt"
    again.parent.mkdir()
    zip_writer.write(again, specs(arrays), iter(arrays.items()), top="model")
    assert again.read_bytes() == path.read_bytes()


def test_large_members_stay_aligned_with_zip64_headers(tmp_path, monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)      # every storage takes the ZIP64 path
    arrays = {"w": np.arange(300, dtype=np.float32), "b": np.ones(7, np.float32)}
    path = tmp_path / "m.pt"
    zip_writer.write(path, specs(arrays), iter(arrays.items()))
    monkeypatch.undo()
    state = torch.load(path, weights_only=True, mmap=True)
    np.testing.assert_array_equal(state["w"].numpy(), arrays["w"])
    np.testing.assert_array_equal(read(str(path)).param("b").read(), arrays["b"])


@pytest.mark.parametrize("n", [0, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**40, -1, -2**31,
                               -2**31 - 1, 2**63])
def test_pickle_integers_round_trip(n):
    assert pickle.loads(b"\x80\x02" + zip_writer._int(n) + b".") == n


def test_tensors_out_of_order_or_missing_or_misshapen_are_refused(tmp_path):
    arrays = {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(UsageError, match="out of the plan's order"):
        zip_writer.write(tmp_path / "x.pt", specs(arrays), iter(reversed(arrays.items())))
    with pytest.raises(UsageError, match="never arrived"):
        zip_writer.write(tmp_path / "x.pt", specs(arrays), iter([("a", arrays["a"])]))
    with pytest.raises(UsageError, match="plan says"):
        zip_writer.write(tmp_path / "x.pt", specs(arrays),
                         iter([("a", arrays["a"]), ("b", np.zeros(4, np.float32))]))


def test_an_unusable_top_folder_name_becomes_archive(tmp_path):
    arrays = {"a": np.zeros(2, ml_dtypes.bfloat16)}
    zip_writer.write(tmp_path / "x.pt", specs(arrays), iter(arrays.items()), top="../evil")
    with zipfile.ZipFile(tmp_path / "x.pt") as zf:
        assert zf.namelist()[0] == "archive/data.pkl"


def test_writing_over_a_longer_file_leaves_no_stale_bytes(tmp_path, written):
    """The writer opens without O_TRUNC (ext4 flushes a truncated-and-rewritten file on close):
    whatever lay beyond the archive is cut."""
    path, arrays = written
    reused = tmp_path / "reused" / "model.pt"
    reused.parent.mkdir()
    reused.write_bytes(b"\xff" * (path.stat().st_size * 3))
    zip_writer.write(reused, specs(arrays), iter(arrays.items()), top="model")
    assert reused.read_bytes() == path.read_bytes()


def test_shared_storages_are_written_once_and_wrong_shares_refused(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    specs_ = [("a", (2, 3), "float32"), ("b", (3,), "float32"), ("c", (2, 3), "float32")]
    path = tmp_path / "s.pt"
    zip_writer.write(path, specs_, iter([("a", w), ("b", np.ones(3, np.float32))]),
                     shared={2: 0})
    state = torch.load(path, weights_only=True)
    assert state["c"].untyped_storage().data_ptr() == state["a"].untyped_storage().data_ptr()
    np.testing.assert_array_equal(state["c"].numpy(), w)
    graph = read(str(path))
    assert graph.param("c").tied_to == "a"
    for bad in ({0: 2}, {2: 1}, {2: 0, 0: 0}):             # later, other shape, a chain
        with pytest.raises(UsageError, match="cannot share"):
            zip_writer.write(tmp_path / "x.pt", specs_, iter([]), shared=bad)
