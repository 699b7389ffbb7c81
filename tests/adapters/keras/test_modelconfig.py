"""Model configs as layer specs: order, nesting, Keras 3 weight paths, flatten shapes."""
from __future__ import annotations

import copy
import json
import zipfile

import h5py
import pytest

from weightmap_keras.modelconfig import inbound_names, is_model, walk


def _zip_config(kx, name):
    return json.loads(zipfile.ZipFile(kx.fixture(name)).read("config.json"))


def _h5_config(kx, name):
    with h5py.File(kx.fixture(name)) as f:
        return json.loads(f.attrs["model_config"])


def _owner_groups(path):
    """Every group holding ``vars`` below ``layers/`` of a weights file."""
    found = []
    with h5py.File(path) as f:
        f.visit(lambda n: found.append(n[:-5]) if n.endswith("/vars") else None)
    return set(found)


@pytest.mark.parametrize("name", ["k3_convs", "k3_mixed"])
def test_k3_paths_of_the_config_are_the_groups_of_the_file(kx, name):
    info = walk(_zip_config(kx, f"{name}.keras"))
    paths = [s.k3_path for s in info.specs]
    assert len(set(paths)) == len(paths)
    assert set(paths) <= _owner_groups(kx.fixture(f"{name}.weights.h5"))


def test_specs_of_a_functional_model_with_a_nested_sequential(kx):
    info = walk(_zip_config(kx, "k3_mixed.keras"))
    by_name = {s.name: s for s in info.specs}
    head = by_name["head/batch_normalization"]
    assert (head.class_name, head.outer, head.k3_path) == \
        ("BatchNormalization", "head", "layers/sequential/layers/batch_normalization")
    assert by_name["dense_2"].k3_path == "layers/dense"            # Dense inside TimeDistributed
    assert by_name["time_distributed"].k3_path == "layers/time_distributed"  # is not numbered
    assert "tokens" not in by_name and "image" not in by_name       # inputs hold no weights


def test_legacy_config_outer_groups(kx):
    info = walk(_h5_config(kx, "tfk_seq.h5"))
    assert [(s.name, s.outer) for s in info.specs if s.outer == "head"] == [
        ("head/dense", "head"), ("head/batch_normalization", "head")]
    assert [s.class_name for s in info.specs][:3] == ["Embedding", "Bidirectional",
                                                      "MultiHeadAttention"]


def _strip_build_configs(value):
    if isinstance(value, dict):
        return {k: _strip_build_configs(v) for k, v in value.items() if k != "build_config"}
    if isinstance(value, list):
        return [_strip_build_configs(v) for v in value]
    return value


@pytest.mark.parametrize("name, dense, expected", [
    ("k3_convs.keras", "dense", ((2, 2, 2), "channels_last")),
    ("k3_channels_first.keras", "dense_cl", ((2, 6, 6), "channels_first")),
    ("k3_channels_first.keras", "dense_cf", ((6, 6, 2), "channels_last")),
])
def test_flatten_shape_inferred_without_built_shapes(kx, name, dense, expected):
    """Shape inference over the config alone (strides, valid/same padding, zero padding,
    pooling) agrees with the shapes Keras recorded when it built the model."""
    config = _zip_config(kx, name)
    assert walk(config).flatten[dense] == expected
    assert walk(_strip_build_configs(config)).flatten[dense] == expected


def test_flatten_of_the_legacy_vgg(kx):
    assert walk(_h5_config(kx, "tfk_vgg.h5")).flatten == {"fc1": ((4, 4, 8), "channels_last")}


def test_mixed_flatten_data_formats_record_nothing(kx):
    config = _strip_build_configs(_zip_config(kx, "k3_channels_first.keras"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Conv2D":
            layer["config"]["data_format"] = "channels_last"     # now (C=3 as H) ... mixed
            layer["config"]["filters"] = 2
    info = walk(config)
    assert "dense_cf" not in info.flatten and info.notes


def test_known_input_shapes_override_inference(kx):
    config = _strip_build_configs(_zip_config(kx, "k3_convs.keras"))
    info = walk(config, known_inputs={"flatten": (4, 1, 2)})
    assert info.flatten["dense"] == ((4, 1, 2), "channels_last")


def test_inbound_names_in_both_dialects():
    k3 = {"inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__",
                                         "config": {"keras_history": ["a", 0, 0]}},
                                        {"class_name": "__keras_tensor__",
                                         "config": {"keras_history": ["b", 0, 0]}}]],
                             "kwargs": {}}]}
    k2 = {"inbound_nodes": [[["a", 0, 0, {}], ["b", 0, 0, {"value": ["c", 0, 0]}]]]}
    assert inbound_names(k3) == inbound_names(k2) == ["a", "b"]
    assert inbound_names({}) == []


def test_configs_without_layers_are_not_models():
    assert walk({"class_name": "MyModel", "config": {"units": 3}}) is None
    assert walk(None) is None
    assert not is_model({"class_name": "Dense", "config": {"units": 2}})
    assert is_model({"class_name": "Custom", "config": {"layers": [], "input_layers": []}})


def test_walk_does_not_modify_the_config(kx):
    config = _zip_config(kx, "k3_mixed.keras")
    before = copy.deepcopy(config)
    walk(config)
    assert config == before


def _functional(*layers):
    """A tf_keras-dialect functional config: (name, class, [producers], config)."""
    return {"class_name": "Functional", "config": {
        "input_layers": [["in", 0, 0]], "output_layers": [[layers[-1][0], 0, 0]],
        "layers": [{"class_name": "InputLayer", "name": "in",
                    "config": {"name": "in", "batch_input_shape": [None, 8, 8, 3]},
                    "inbound_nodes": []}] + [
            {"class_name": cls, "name": name, "config": {"name": name, **cfg},
             "inbound_nodes": [[[p, 0, 0, {}] for p in producers]]}
            for name, cls, producers, cfg in layers]}}


def test_inputs_of_every_layer_and_what_each_dense_reads():
    conv = {"filters": 4, "kernel_size": [3, 3], "padding": "same"}
    info = walk(_functional(
        ("c1", "Conv2D", ["in"], conv), ("c2", "Conv2D", ["c1"], conv),
        ("cat", "Concatenate", ["c1", "c2"], {"axis": -1}),
        ("gap", "GlobalAveragePooling2D", ["cat"], {}), ("drop", "Dropout", ["gap"], {}),
        ("pooled", "Dense", ["drop"], {"units": 5}),
        ("flat", "Flatten", ["c2"], {}), ("flattened", "Dense", ["flat"], {"units": 5}),
        ("after", "Dense", ["pooled"], {"units": 2}),
        ("lam", "Lambda", ["c2"], {}), ("unknown", "Dense", ["lam"], {"units": 2})))
    assert info.inputs["cat"] == ["c1", "c2"] and info.inputs["c1"] == []
    assert info.dense_input == {"pooled": "pooled", "flattened": "flatten",
                                "after": "features"}          # after a Lambda: unknown
    assert info.flatten["flattened"] == ((8, 8, 4), "channels_last")
