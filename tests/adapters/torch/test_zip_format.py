"""The torch zip container: top folder, storage records at their local-header offsets,
byteorder, TorchScript refusal, malformed archives."""
from __future__ import annotations

import zipfile

import pytest

from weightmap.errors import FormatError
from weightmap_torch import zip_format
from weightmap_torch.pickle_reader import Limits, StorageRef, StorageType
from weightmap_torch.storage import Record


def test_records_point_at_the_member_bytes(fixture_path):
    path = fixture_path("cnn.pt")
    archive = zip_format.open_archive(path)
    assert (archive.top, archive.byteorder) == ("cnn", "little")
    assert sorted(archive.records, key=int) == [str(i) for i in range(9)]
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for key, rec in archive.records.items():
            assert rec.offset % 64 == 0          # torch aligns storages for memory mapping
            member = zf.read(f"cnn/data/{key}")
            assert rec.nbytes == len(member)
            assert raw[rec.offset: rec.offset + rec.nbytes] == member


def test_top_folder_name_varies(fixture_path):
    assert zip_format.open_archive(fixture_path("malicious_exec.pt")).top == "archive"
    assert zip_format.data_pickle_top(["x/data.pkl", "x/data/0"]) == "x"
    assert zip_format.data_pickle_top(["data.pkl", "a/b/data.pkl"]) is None
    with pytest.raises(FormatError, match="several checkpoints"):
        zip_format.data_pickle_top(["a/data.pkl", "b/data.pkl"])


def test_is_torch_zip(fixture_path, tmp_path):
    assert zip_format.is_torch_zip(fixture_path("cnn.pt"))
    other = tmp_path / "model.keras"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"")
    assert not zip_format.is_torch_zip(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04not really a zip")
    assert not zip_format.is_torch_zip(junk)


def test_torchscript_is_refused(fixture_path):
    with pytest.raises(FormatError, match="TorchScript"):
        zip_format.open_archive(fixture_path("scripted.pt"))


def test_no_data_pickle(tmp_path):
    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x/other.txt", "hi")
    with pytest.raises(FormatError, match="no <folder>/data.pkl"):
        zip_format.open_archive(path)


def test_bad_byteorder_record(tmp_path):
    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x/data.pkl", b"\x80\x02}.")
        zf.writestr("x/byteorder", "middle")
    with pytest.raises(FormatError, match="byteorder record says 'middle'"):
        zip_format.open_archive(path)


def test_read_pickle_resolves_storages(fixture_path):
    archive = zip_format.open_archive(fixture_path("half.pt"))
    root = zip_format.read_pickle(archive, Limits(), opaque_globals=False)
    ref = root["bf.weight"]
    assert ref.storage == StorageRef(key="0", dtype="bfloat16", nbytes=24, location="cpu")
    assert (ref.shape, ref.stride, ref.dtype) == ((3, 4), (4, 1), "bfloat16")
    with pytest.raises(FormatError, match="above the 10-byte cap"):
        zip_format.read_pickle(archive, Limits(max_bytes=10), opaque_globals=False)


def test_storage_ref_checks(tmp_path):
    records = {"0": Record(path="f", offset=0, nbytes=16)}
    float32 = StorageType("FloatStorage", "float32")
    ok = zip_format.storage_ref(("storage", float32, "0", "cpu", 4), records, tmp_path)
    assert ok.nbytes == 16
    with pytest.raises(FormatError, match="no data/1 record"):
        zip_format.storage_ref(("storage", float32, "1", "cpu", 4), records, tmp_path)
    with pytest.raises(FormatError, match="claims 20 bytes"):
        zip_format.storage_ref(("storage", float32, "0", "cpu", 5), records, tmp_path)
    with pytest.raises(FormatError, match="malformed"):
        zip_format.storage_ref(("storage", "FloatStorage", "0", "cpu", 4), records, tmp_path)
    with pytest.raises(FormatError, match="unexpected persistent id"):
        zip_format.storage_ref(("module", float32), records, tmp_path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(FormatError, match="not a readable zip"):
        zip_format.open_archive(path)


def test_two_checkpoints_in_one_zip_are_claimed_then_refused(tmp_path):
    path = tmp_path / "two.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/data.pkl", b"\x80\x02}.")
        zf.writestr("b/data.pkl", b"\x80\x02}.")
    assert zip_format.is_torch_zip(path)
    with pytest.raises(FormatError, match=r"several checkpoints \(a, b\)"):
        zip_format.open_archive(path)


def test_a_member_name_that_is_not_utf8_is_named_as_such(tmp_path):
    import zipfile

    from weightmap.errors import FormatError
    from weightmap_torch.zip_format import open_archive
    path = tmp_path / "names.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/\u00e9.bin", b"x")          # non-ASCII: flagged UTF-8
    path.write_bytes(path.read_bytes().replace("\u00e9".encode(), b"\xc3\x28"))
    with pytest.raises(FormatError, match="a member name is not valid UTF-8"):
        open_archive(path)
