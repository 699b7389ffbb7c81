import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightmap
from weightmap.errors import FormatError, UnsafeInputError, UsageError
from weightmap_safetensors.shards import find_index, resolve, shard_files

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "safetensors"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "sharded", tmp_path / "sharded"))


def _rewrite_index(folder: Path, edit) -> Path:
    index = folder / "model.safetensors.index.json"
    obj = json.loads(index.read_text())
    edit(obj)
    index.write_text(json.dumps(obj))
    return index


def test_index_file_and_folder_give_the_same_shards():
    by_index = resolve(FIXTURES / "sharded" / "model.safetensors.index.json")
    by_folder = resolve(FIXTURES / "sharded")
    assert [n for n, _ in by_index.shards] == SHARDS
    assert by_index.shards == by_folder.shards
    assert by_index.index == FIXTURES / "sharded" / "model.safetensors.index.json"
    assert by_index.weight_map["lm_head.weight"] == SHARDS[1]
    assert by_index.weight_map["model.embed_tokens.weight"] == SHARDS[0]
    assert len(by_index.weight_map) == 12
    assert by_index.index_metadata == {"total_size": 608}


def test_natural_order_without_index(tmp_path):
    for i in (10, 2, 1):
        save_file({f"t{i}": np.zeros(1, np.float32)}, str(tmp_path / f"part-{i}.safetensors"))
    (tmp_path / "notes.txt").write_text("x")
    got = resolve(tmp_path)
    assert got.index is None
    assert [n for n, _ in got.shards] == ["part-1.safetensors", "part-2.safetensors",
                                          "part-10.safetensors"]
    assert [p.name for p in shard_files(tmp_path)] == [n for n, _ in got.shards]


def test_shard_names_with_digits_int_cannot_read_are_sorted(tmp_path):
    """``²`` is a digit to ``str.isdigit`` and not to ``int``: format detection crashed."""
    for name in ("model-1²1.safetensors", "model-2.safetensors", "model-10.safetensors"):
        save_file({name.split(".")[0]: np.ones(1, np.float32)}, str(tmp_path / name))
    assert [p.name for p in shard_files(tmp_path)] == [
        "model-1²1.safetensors", "model-2.safetensors", "model-10.safetensors"]
    graph = weightmap.read(str(tmp_path))
    assert len(list(graph.params())) == 3


def test_several_indices_prefer_the_standard_name(tmp_path):
    folder = _copy(tmp_path)
    other = folder / "other.safetensors.index.json"
    shutil.copy(folder / "model.safetensors.index.json", other)
    assert find_index(folder).name == "model.safetensors.index.json"
    os.remove(folder / "model.safetensors.index.json")
    shutil.copy(other, folder / "third.safetensors.index.json")
    with pytest.raises(UsageError, match="2 safetensors indices"):
        find_index(folder)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(FormatError, match="neither"):
        resolve(tmp_path)


def test_missing_shard_is_named(tmp_path):
    folder = _copy(tmp_path)
    os.remove(folder / SHARDS[1])
    with pytest.raises(FormatError, match=f"shard '{SHARDS[1]}' is missing") as err:
        resolve(folder)
    assert "model.safetensors.index.json" in str(err.value)


@pytest.mark.parametrize("bad, error", [
    ("../model-00002-of-00002.safetensors", UnsafeInputError),
    ("/tmp/model.safetensors", UnsafeInputError),
    (7, FormatError),
])
def test_bad_shard_names_are_refused(tmp_path, bad, error):
    folder = _copy(tmp_path)
    index = _rewrite_index(folder, lambda o: o["weight_map"].update({"lm_head.weight": bad}))
    with pytest.raises(error) as err:
        resolve(index)
    assert str(index) in str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.pop("weight_map"), "no 'weight_map'"),
    (lambda o: o.update(weight_map=[]), "no 'weight_map'"),
    (lambda o: o.update(metadata=[1]), "'metadata' must be an object"),
])
def test_malformed_index_is_refused(tmp_path, edit, message):
    index = _rewrite_index(_copy(tmp_path), edit)
    with pytest.raises(FormatError, match=message):
        resolve(index)


def test_duplicate_keys_in_the_index_are_refused(tmp_path):
    folder = _copy(tmp_path)
    index = folder / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"a": "%s", "a": "%s"}}' % (SHARDS[0], SHARDS[1]))
    with pytest.raises(FormatError, match="names 'a' twice"):
        resolve(index)


def test_hf_cache_snapshot_with_blob_symlinks(tmp_path):
    repo = tmp_path / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / "rev"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, name in enumerate([*SHARDS, "model.safetensors.index.json"]):
        shutil.copy(FIXTURES / "sharded" / name, blobs / f"sha{i}")
        os.symlink(f"../../blobs/sha{i}", snap / name)
    got = resolve(snap)
    assert [p for _, p in got.shards] == [blobs / "sha0", blobs / "sha1"]
