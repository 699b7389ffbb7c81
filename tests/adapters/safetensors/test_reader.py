import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from weightmap.errors import FormatError
from weightmap.graph import MappedData
from weightmap_safetensors.header import read_header
from weightmap_safetensors.reader import (LIBRARY_ORDER, library_sorted, read_file,
                                          read_sharded)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "safetensors"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _spec(graph):
    return [(l.name, l.op, [(p.name, p.role, p.shape, p.dtype, p.axes, p.tied_to)
                            for p in l.params]) for l in graph.layers]


def test_tiny_hf_specs_exactly():
    g = read_file(FIXTURES / "tiny_hf.safetensors")
    assert (g.format, g.framework, g.order) == ("safetensors", "torch", "stored")
    c = ("c",)
    assert _spec(g) == [
        ("bn", "batchnorm", [
            ("bn.num_batches_tracked", "num_batches_tracked", (), "int64", (), None),
            ("bn.bias", "beta", (4,), "float32", c, None),
            ("bn.running_mean", "moving_mean", (4,), "float32", c, None),
            ("bn.running_var", "moving_var", (4,), "float32", c, None),
            ("bn.weight", "gamma", (4,), "float32", c, None)]),
        ("conv", "conv2d", [
            ("conv.bias", "bias", (4,), "float32", ("out",), None),
            ("conv.weight", "kernel", (4, 3, 3, 3), "float32", ("out", "in", "kh", "kw"),
             None)]),
        ("model.layers.0.input_layernorm", "layernorm", [
            ("model.layers.0.input_layernorm.weight", "gamma", (8,), "float32", c, None)]),
        ("model.layers.0.mlp.fc1", "dense", [
            ("model.layers.0.mlp.fc1.bias", "bias", (16,), "float32", ("out",), None),
            ("model.layers.0.mlp.fc1.weight", "kernel", (16, 8), "float32", ("out", "in"),
             None)]),
        ("model.layers.0.mlp.fc2", "dense", [
            ("model.layers.0.mlp.fc2.weight", "kernel", (8, 16), "float32", ("out", "in"),
             None)]),
        ("model.norm", "layernorm", [("model.norm.weight", "gamma", (8,), "float32", c, None)]),
        ("lm_head", "dense", [
            ("lm_head.weight", "kernel", (32, 8), "bfloat16", ("out", "in"), None)]),
        ("model.embed_tokens", "embedding", [
            ("model.embed_tokens.weight", "embeddings", (32, 8), "bfloat16", ("vocab", "dim"),
             None)]),
        ("model.layers.0.self_attn.q_proj", "dense", [
            ("model.layers.0.self_attn.q_proj.bias", "bias", (8,), "float16", ("out",), None),
            ("model.layers.0.self_attn.q_proj.weight", "kernel", (8, 8), "float16",
             ("out", "in"), None)]),
    ]
    assert g.meta["metadata"] == {"format": "pt", "producer": "weightmap fixtures"}
    assert g.meta["stored_order"] == LIBRARY_ORDER
    assert "tied" not in g.meta


def test_data_is_mapped_and_equals_the_library(same_tensor):
    path = FIXTURES / "tiny_hf.safetensors"
    g = read_file(path)
    expected = load_file(str(path))
    assert {p.name for p in g.params()} == set(expected)
    for p in g.params():
        assert isinstance(p.data, MappedData)
        same_tensor(p.read(), expected[p.name])


def test_bytes_are_read_only_when_asked(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": np.zeros(4, np.float32)}, str(path))
    g = read_file(path)
    raw = bytearray(path.read_bytes())
    raw[-16:] = np.arange(4, dtype=np.float32).tobytes()
    path.write_bytes(bytes(raw))   # changed after the graph was built
    np.testing.assert_array_equal(g.param("w").read(), [0, 1, 2, 3])


def test_tied_names_from_save_model_metadata(same_tensor):
    path = FIXTURES / "tied.safetensors"
    g = read_file(path)
    assert g.meta["tied"] == {"lm_head.weight": "embed.weight"}
    head = g.layer("lm_head")
    assert head.op == "dense"
    (w,) = head.params
    assert (w.name, w.role, w.shape, w.tied_to) == ("lm_head.weight", "kernel", (12, 4),
                                                    "embed.weight")
    same_tensor(w.read(), load_file(str(path))["embed.weight"])
    assert g.totals()["tensors"] == 3 and g.totals()["params"] == 4


def test_plain_metadata_is_not_a_tie(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": np.zeros((2, 2), np.float32)}, str(path),
              metadata={"format": "pt", "b.weight": "missing.weight", "a.weight": "x"})
    g = read_file(path)
    assert "tied" not in g.meta and [p.name for p in g.params()] == ["a.weight"]


def test_model_order_offsets_are_kept_and_not_flagged(tmp_path, write_raw):
    header = {"z.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
              "a.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    path = write_raw(tmp_path / "o.safetensors", header, b"\0" * 8)
    g = read_file(path)
    assert [l.name for l in g.layers] == ["z", "a"]
    assert "stored_order" not in g.meta
    assert not library_sorted(read_header(path))


def test_sharded_specs_order_and_data(same_tensor):
    folder = FIXTURES / "sharded"
    g = read_sharded(folder / "model.safetensors.index.json")
    assert (g.format, g.framework) == ("safetensors-sharded", "torch")
    # shard 1, then shard 2; inside each, data-offset order (float32 before float16, by name)
    assert [p.name for p in g.params()] == [
        "model.layers.0.post_attention_layernorm.weight", "model.embed_tokens.weight",
        "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.layers.2.post_attention_layernorm.weight", "model.norm.weight",
        "lm_head.weight", "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.self_attn.q_proj.weight", "model.layers.2.mlp.up_proj.weight",
        "model.layers.2.self_attn.q_proj.weight",
    ]
    assert g.meta["shards"] == SHARDS
    assert g.meta["index"] == "model.safetensors.index.json"
    assert g.meta["index_metadata"] == {"total_size": 608}
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    expected = {}
    for shard in SHARDS:
        expected.update(load_file(str(folder / shard)))
    for p in g.params():
        assert p.data.path == os.path.realpath(folder / weight_map[p.name])
        same_tensor(p.read(), expected[p.name])
    embed = g.layer("model.embed_tokens")
    assert embed.op == "embedding" and embed.params[0].axes == ("vocab", "dim")
    assert _spec(g) == _spec(read_sharded(folder))


def test_folder_without_index(tmp_path):
    for shard in SHARDS:
        shutil.copy(FIXTURES / "sharded" / shard, tmp_path / shard)
    g = read_sharded(tmp_path)
    assert g.meta["shards"] == SHARDS and "index" not in g.meta
    assert len(list(g.params())) == 12


def _copy(tmp_path):
    return Path(shutil.copytree(FIXTURES / "sharded", tmp_path / "sharded"))


def test_tensor_in_two_shards_is_refused(tmp_path):
    save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({"x": np.ones(1, np.float32)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(FormatError, match="stored in two shards") as err:
        read_sharded(tmp_path)
    assert err.value.tensor == "x"


def test_tensor_missing_from_its_shard_is_refused(tmp_path):
    folder = _copy(tmp_path)
    save_file({"model.norm.weight": np.zeros(4, np.float32)}, str(folder / SHARDS[1]))
    with pytest.raises(FormatError, match="places this tensor in") as err:
        read_sharded(folder)
    assert err.value.tensor == "lm_head.weight"


def test_tensor_the_index_does_not_list_is_refused(tmp_path):
    folder = _copy(tmp_path)
    tensors = load_file(str(folder / SHARDS[0]))
    tensors["stray.weight"] = np.zeros(2, np.float32)
    save_file(tensors, str(folder / SHARDS[0]))
    with pytest.raises(FormatError, match="index does not list it") as err:
        read_sharded(folder)
    assert err.value.tensor == "stray.weight"


def test_missing_shard_is_named(tmp_path):
    folder = _copy(tmp_path)
    os.remove(folder / SHARDS[0])
    with pytest.raises(FormatError, match=SHARDS[0]):
        read_sharded(folder)


def test_corrupt_shard_names_the_shard(tmp_path):
    folder = _copy(tmp_path)
    (folder / SHARDS[1]).write_bytes((folder / SHARDS[1]).read_bytes()[:100])
    with pytest.raises(FormatError) as err:
        read_sharded(folder)
    assert SHARDS[1] in str(err.value)
