"""weightmap/io/zipcheck.py on genuine archives (torch's data descriptors, Keras, zip64, deflate):
nothing genuine is refused, and the spans it returns are where the member bytes are."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from weightmap.errors import FormatError, UnsafeInputError
from weightmap.io.zipcheck import check_archive, check_member_name, check_ratio

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def spans_match(path: Path) -> None:
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        spans = check_archive(zf, fh, path)
        assert set(spans) == set(zf.namelist())
        for info in zf.infolist():
            if info.compress_type == zipfile.ZIP_STORED:
                start, end = spans[info.filename]
                fh.seek(start)
                assert fh.read(end - start) == zf.read(info.filename), info.filename


@pytest.mark.parametrize("name", ["torch/cnn.pt", "torch/lightning.ckpt", "torch/scripted.pt",
                                  "keras/k3_convs.keras", "keras/k3_mixed.keras"])
def test_genuine_archives_pass(name):
    spans_match(FIXTURES / name)       # torch writes data descriptors; Keras does not


@pytest.mark.parametrize("zip64", [False, True])
def test_streamed_deflated_and_zip64_members_pass(tmp_path, zip64):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("streamed.bin", "w", force_zip64=zip64) as fh:   # data descriptor
            fh.write(b"x" * 1000)
        zf.writestr("deflated.txt", "hello " * 100, zipfile.ZIP_DEFLATED)
        zf.writestr("stored.bin", b"\1\2\3")
    spans_match(path)


def test_ratio_is_checked_above_the_floor_only():
    small = zipfile.ZipInfo("a")
    small.compress_type, small.file_size, small.compress_size = zipfile.ZIP_DEFLATED, 10**6, 10
    check_ratio(small, "x")                          # 1 MB from 10 bytes: under the floor
    big = zipfile.ZipInfo("b")
    big.compress_type, big.file_size, big.compress_size = zipfile.ZIP_DEFLATED, 2**30, 2**20
    with pytest.raises(UnsafeInputError, match="ratio above 100"):
        check_ratio(big, "x")
    big.compress_type = zipfile.ZIP_STORED           # stored: sizes are checked elsewhere
    check_ratio(big, "x")


@pytest.mark.parametrize("name,problem", [
    ("../x", "climbs out"), ("a/../../x", "climbs out"), ("a\\..\\x", "climbs out"),
    ("/etc/x", "absolute"), ("C:x", "absolute"), ("\\x", "absolute"), ("a\x00b", "climbs out"),
    ("", "absolute"),
])
def test_unsafe_member_names(name, problem):
    with pytest.raises(UnsafeInputError, match=problem):
        check_member_name(name, "z.zip")


@pytest.mark.parametrize("name", ["archive/data/0", "a..b/c", "model.weights.h5", "x/.hidden"])
def test_ordinary_member_names(name):
    check_member_name(name, "z.zip")


def test_a_descriptor_that_disagrees_is_refused(tmp_path):
    source = FIXTURES / "torch" / "cnn.pt"
    with open(source, "rb") as fh, zipfile.ZipFile(fh) as zf:
        first = zf.namelist()[0]
        _, data_end = check_archive(zf, fh, source)[first]
    broken = bytearray(source.read_bytes())
    broken[data_end: data_end + 8] = b"\xff" * 8        # the descriptor's signature and CRC
    path = tmp_path / "b.pt"
    path.write_bytes(bytes(broken))
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        with pytest.raises(FormatError, match="data descriptor"):
            check_archive(zf, fh, path)


def test_an_encrypted_member_is_refused_before_zipfile_asks_for_a_password():
    path = FIXTURES / "hostile" / "zip" / "encrypted_pickle.pt"
    with zipfile.ZipFile(path) as zf:                   # the control: a RuntimeError
        with pytest.raises(RuntimeError, match="password required"):
            zf.read("archive/data.pkl")
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        with pytest.raises(FormatError, match="'archive/data.pkl' is encrypted"):
            check_archive(zf, fh, path)
