"""Sharded safetensors output (adapters/weightmap_safetensors/emit.py and the core hooks in
weightmap/emit/dispatch.py): split rule, hub names, index file, atomicity, options."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.errors import UsageError
from weightmap.reading.read import read
from weightmap_safetensors.emit import parse_size, shard_names, split


def checkpoint(tmp_path, sizes=(300, 100, 500, 50, 200)):
    """Tensors of ``sizes`` float32 elements (x4 bytes), names in model order."""
    rng = np.random.default_rng(0)
    values = {f"l{i}.weight": rng.standard_normal(n).astype(np.float32)
              for i, n in enumerate(sizes)}
    path = tmp_path / "src.safetensors"
    save_file(values, path)
    return path, values


def test_parse_size():
    assert parse_size("2GB") == 2 * 10 ** 9 and parse_size("4GiB") == 4 * 2 ** 30
    assert parse_size("1.5mb") == 1_500_000 and parse_size(1234) == 1234
    assert parse_size("500 KB") == 500_000 and parse_size("77") == 77
    for bad in ("0", "-1GB", "two GB", "5XB", True):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_split_keeps_order_and_gives_big_tensors_their_own_shard():
    specs = [(f"t{i}", (n,), "float32") for i, n in enumerate((300, 100, 500, 50, 200))]
    assert split(specs, 1600) == [[0, 1], [2], [3, 4]]      # 1200+400 | 2000 alone | 200+800
    assert split(specs, 10 ** 9) == [[0, 1, 2, 3, 4]]
    assert split([], 10) == [[]]


def test_shard_names_follow_the_hubs():
    from pathlib import Path
    assert shard_names(Path("out/model.safetensors"), 3) == [
        "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors"]
    assert shard_names(Path("m.safetensors.index.json"), 1) == ["m-00001-of-00001.safetensors"]


def test_port_writes_shards_and_an_index_the_readers_understand(tmp_path):
    src, values = checkpoint(tmp_path)
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    report = weightmap.port(src, src, out, shard_size=1600)
    index_path = tmp_path / "out" / "model.safetensors.index.json"
    assert report.output == str(index_path) and not out.exists()
    index = json.loads(index_path.read_text())
    assert index["metadata"] == {"total_size": 4 * sum(v.size for v in values.values())}
    assert index["weight_map"] == {
        "l0.weight": "model-00001-of-00003.safetensors",
        "l1.weight": "model-00001-of-00003.safetensors",
        "l2.weight": "model-00002-of-00003.safetensors",
        "l3.weight": "model-00003-of-00003.safetensors",
        "l4.weight": "model-00003-of-00003.safetensors"}
    merged = {}
    for shard in sorted(set(index["weight_map"].values())):
        merged.update(load_file(tmp_path / "out" / shard))
    assert sorted(merged) == sorted(values)
    for k, v in values.items():
        assert merged[k].tobytes() == v.tobytes()
    graph = read(index_path)                                  # weightmap's own sharded reader
    assert graph.format == "safetensors-sharded"
    np.testing.assert_array_equal(graph.param("l2.weight").read(), values["l2.weight"])
    assert (tmp_path / "out" / "model.manifest.json").exists()
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_an_output_that_fits_one_shard_is_one_plain_file(tmp_path):
    src, values = checkpoint(tmp_path)
    out = tmp_path / "model.safetensors"
    report = weightmap.port(src, src, out, shard_size="1GB")
    assert report.output == str(out)
    assert sorted(load_file(out)) == sorted(values)
    assert not (tmp_path / "model.safetensors.index.json").exists()


def test_naming_the_index_always_shards(tmp_path):
    src, values = checkpoint(tmp_path)
    index = tmp_path / "m.safetensors.index.json"
    weightmap.port(src, src, index, shard_size="1GB")
    data = json.loads(index.read_text())
    assert set(data["weight_map"].values()) == {"m-00001-of-00001.safetensors"}


def test_existing_shards_are_kept_without_force(tmp_path):
    src, _ = checkpoint(tmp_path)
    shard = tmp_path / "model-00002-of-00003.safetensors"
    shard.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="exists"):
        weightmap.port(src, src, tmp_path / "model.safetensors", shard_size=1600)
    assert shard.read_bytes() == b"keep me"
    assert not (tmp_path / "model.safetensors.index.json").exists()
    weightmap.port(src, src, tmp_path / "model.safetensors", shard_size=1600, force=True)
    assert shard.read_bytes() != b"keep me"


def test_a_failure_leaves_no_shard_behind(tmp_path, monkeypatch):
    src, _ = checkpoint(tmp_path)
    import weightmap_safetensors.emit as st_emit
    real = st_emit.write_jobs
    calls = []

    def fail_on_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(st_emit, "write_jobs", fail_on_second)
    with pytest.raises(weightmap.WeightmapError, match="writing the output failed: disk full"):
        weightmap.port(src, src, tmp_path / "model.safetensors", shard_size=1600)
    assert sorted(os.listdir(tmp_path)) == ["src.safetensors"]


def test_sharding_is_refused_for_other_formats(tmp_path):
    src, _ = checkpoint(tmp_path)
    # the Python API names its keyword (the command line, --shard-size)
    with pytest.raises(UsageError, match=r"takes no option shard_size \(shard_size is for"):
        weightmap.port(src, src, tmp_path / "out.pt", shard_size="1GB")
    with pytest.raises(UsageError, match="takes no option direct_io"):
        weightmap.port(src, src, tmp_path / "out.pt", direct_io=False)


def test_shards_are_written_past_the_page_cache_too(tmp_path, monkeypatch):
    from weightmap.io import direct
    monkeypatch.setattr(direct, "WINDOW", 2 * direct.BLOCK)
    src, values = checkpoint(tmp_path)
    cached, past = tmp_path / "cached", tmp_path / "past"
    cached.mkdir(), past.mkdir()
    weightmap.port(src, src, cached / "model.safetensors", shard_size=1600, direct_io=False)
    weightmap.port(src, src, past / "model.safetensors", shard_size=1600, direct_io=True)
    assert sorted(os.listdir(cached)) == sorted(os.listdir(past))
    for name in os.listdir(cached):
        if name.endswith(".safetensors"):
            assert (cached / name).read_bytes() == (past / name).read_bytes(), name
    manifests = [json.loads((d / "model.manifest.json").read_text()) for d in (cached, past)]
    assert manifests[0]["params"] == manifests[1]["params"]


def test_a_sharded_output_is_read_back_through_its_index(tmp_path):
    import hashlib
    src, values = checkpoint(tmp_path)
    report = weightmap.port(src, src, tmp_path / "model.safetensors", shard_size=1600)
    params = report.manifest["params"]
    assert report.manifest["summary"]["verified"] is True
    for name, value in values.items():
        assert params[name]["sha256"] == hashlib.sha256(value.tobytes()).hexdigest()


def test_a_shard_that_loses_a_tensor_fails_the_port_and_leaves_nothing(tmp_path, monkeypatch):
    src, _ = checkpoint(tmp_path)
    import weightmap_safetensors.emit as st_emit
    real = st_emit.write_jobs

    def drop_last(path, specs, jobs, *args, **kwargs):   # a writer that forgets a tensor
        return real(path, specs[:-1], jobs[:-1], *args, **kwargs)

    monkeypatch.setattr(st_emit, "write_jobs", drop_last)
    index = tmp_path / "model.safetensors.index.json"
    with pytest.raises(weightmap.WeightmapError, match="does not read back.*does not hold it") \
            as caught:
        weightmap.port(src, src, tmp_path / "model.safetensors", shard_size=1600)
    assert caught.value.path == str(index)
    assert sorted(os.listdir(tmp_path)) == ["src.safetensors"]


@pytest.mark.parametrize("direct_io", [False, True])
def test_shards_are_digested_as_they_are_written_not_read_again(tmp_path, monkeypatch,
                                                                direct_io, request):
    """Like a one-file output, each shard's tensors are digested as they land; the final check
    only re-parses the index and shards (it digested every tensor again before)."""
    import hashlib

    from weightmap.emit import readback
    if direct_io:
        request.getfixturevalue("direct_io_or_skip")
    again = []
    real = readback._digest_param
    monkeypatch.setattr(readback, "_digest_param", lambda p, b: (again.append(p.name),
                                                                 real(p, b))[1])
    src, values = checkpoint(tmp_path)
    out = tmp_path / "model.safetensors"
    report = weightmap.port(src, src, out, shard_size=1600, direct_io=direct_io)
    assert again == []
    for k, v in values.items():
        assert report.manifest["params"][k]["sha256"] == hashlib.sha256(v.tobytes()).hexdigest()
