import os
from pathlib import Path

import pytest

from weightmap.errors import FormatError, UnsafeInputError
from weightmap.io.paths import check_plain_name, hf_cache_root, natural_key, resolve_inside


def _setup(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    (tmp_path / "outside.bin").write_bytes(b"o")
    return folder


def test_plain_names_resolve_inside(tmp_path):
    folder = _setup(tmp_path)
    ref = folder / "index.json"
    assert resolve_inside(folder, "a.bin", what="shard", referrer=ref) == \
        Path(os.path.realpath(folder / "a.bin"))
    assert resolve_inside(folder, "sub/b.bin", what="shard", referrer=ref).read_bytes() == b"b"


@pytest.mark.parametrize("name", ["/etc/passwd", "\\\\server\\share", "C:weights.bin",
                                  "../outside.bin", "sub/../../outside.bin",
                                  "..\\outside.bin", "a.bin\x00"])
def test_escaping_names_are_unsafe(tmp_path, name):
    folder = _setup(tmp_path)
    with pytest.raises(UnsafeInputError) as err:
        resolve_inside(folder, name, what="shard", referrer=folder / "index.json")
    assert str(folder / "index.json") in str(err.value)


@pytest.mark.parametrize("name", ["", "  ", None, 3])
def test_non_names_are_format_errors(tmp_path, name):
    with pytest.raises(FormatError, match="non-empty string"):
        check_plain_name(name, what="shard", referrer=tmp_path)


def test_missing_file_is_named(tmp_path):
    folder = _setup(tmp_path)
    with pytest.raises(FormatError, match="shard 'gone.bin' is missing") as err:
        resolve_inside(folder, "gone.bin", what="shard", referrer=folder / "i.json")
    assert not isinstance(err.value, UnsafeInputError)


def test_symlink_out_of_the_folder_is_unsafe(tmp_path):
    folder = _setup(tmp_path)
    os.symlink(tmp_path / "outside.bin", folder / "link.bin")
    with pytest.raises(UnsafeInputError, match="outside the folder"):
        resolve_inside(folder, "link.bin", what="shard", referrer=folder)


def test_symlink_inside_the_folder_is_fine(tmp_path):
    folder = _setup(tmp_path)
    os.symlink("sub/b.bin", folder / "link.bin")
    assert resolve_inside(folder, "link.bin", what="shard", referrer=folder).read_bytes() == b"b"


def test_dangling_symlink_is_a_format_error(tmp_path):
    folder = _setup(tmp_path)
    os.symlink("nowhere.bin", folder / "link.bin")
    with pytest.raises(FormatError, match="cannot be opened"):
        resolve_inside(folder, "link.bin", what="shard", referrer=folder)


def test_folders_and_fifos_are_not_regular_files(tmp_path):
    folder = _setup(tmp_path)
    with pytest.raises(UnsafeInputError, match="not a regular file"):
        resolve_inside(folder, "sub", what="shard", referrer=folder)
    os.mkfifo(folder / "pipe")
    with pytest.raises(UnsafeInputError, match="not a regular file"):
        resolve_inside(folder, "pipe", what="shard", referrer=folder)


def _hf_cache(tmp_path: Path) -> Path:
    """models--org--name/{blobs/<sha>, snapshots/<rev>/model.safetensors -> ../../blobs/<sha>}"""
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_bytes(b"blob")
    snap = repo / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    os.symlink("../../blobs/abc123", snap / "model.safetensors")
    (tmp_path / "hub" / "secret").write_bytes(b"s")
    os.symlink("../../../secret", snap / "escape.safetensors")
    return snap


def test_hf_cache_symlinks_into_blobs_are_allowed_when_asked(tmp_path):
    snap = _hf_cache(tmp_path)
    assert hf_cache_root(snap) == tmp_path / "hub" / "models--org--tiny"
    got = resolve_inside(snap, "model.safetensors", what="shard", referrer=snap,
                         allow_hf_cache=True)
    assert got.read_bytes() == b"blob"
    with pytest.raises(UnsafeInputError):
        resolve_inside(snap, "model.safetensors", what="shard", referrer=snap)


def test_hf_cache_relaxation_stops_at_the_repo_folder(tmp_path):
    snap = _hf_cache(tmp_path)
    with pytest.raises(UnsafeInputError, match="outside the folder"):
        resolve_inside(snap, "escape.safetensors", what="shard", referrer=snap,
                       allow_hf_cache=True)
    assert hf_cache_root(tmp_path) is None


def test_natural_key_orders_numbers_and_takes_any_digit():
    from weightmap.io.paths import natural_key
    assert sorted(["a10", "a9", "b1", "a09x"], key=natural_key) == ["a9", "a09x", "a10", "b1"]
    assert sorted(["m-1²1", "m-٣", "m-2"], key=natural_key) == ["m-1²1", "m-2", "m-٣"]
    assert sorted(["run-10/last.ckpt", "run-2/last.ckpt", "run-1/last.ckpt"], key=natural_key) \
        == ["run-1/last.ckpt", "run-2/last.ckpt", "run-10/last.ckpt"]
