"""Class tables: snake-case names, roles of named and numbered variables, attributes."""
from __future__ import annotations

import pytest

from weightmap_keras.classes import (attrs_from_config, class_from_name, direction_of, freeze,
                                     k3_roles, op_of, owner_sort_key, role_from_weight_name,
                                     source_type, to_snake_case)

CLASSES = ["Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv1D", "PReLU",
           "SimpleRNN", "LSTM", "GRU", "MultiHeadAttention", "BatchNormalization",
           "LayerNormalization", "GroupNormalization", "InputLayer", "TimeDistributed",
           "Bidirectional", "MaxPooling2D", "EinsumDense", "ReLU", "Functional"]


def test_snake_case_is_keras_own(keras3):
    from keras.src.utils.naming import to_snake_case as keras_snake
    for name in CLASSES + ["HTTPServer2D", "already_snake", "X"]:
        assert to_snake_case(name) == keras_snake(name), name


@pytest.mark.parametrize("name, cls", [
    ("conv2d", "Conv2D"), ("conv2d_10", "Conv2D"), ("conv2d_transpose_3", "Conv2DTranspose"),
    ("p_re_lu", "PReLU"), ("forward_lstm_1", "LSTM"), ("backward_gru", "GRU"),
    ("batch_normalization_12", "BatchNormalization"), ("block1_conv1", None),
    ("lstm_cell", None), ("", None), ("sequential_2", "Sequential")])
def test_class_from_name(name, cls):
    assert class_from_name(name) == cls


@pytest.mark.parametrize("name, op, role", [
    ("block1_conv1/kernel:0", "conv2d", "kernel"), ("bn/moving_variance:0", "batchnorm",
                                                    "moving_var"),
    ("dw/depthwise_kernel:0", "depthwise_conv2d", "kernel"),
    ("sep/depthwise_kernel:0", "separable_conv2d", "depthwise_kernel"),
    ("mha/attention_output/bias:0", "attention", "output_bias"),
    ("mha/query/kernel:0", "attention", "query_kernel"),
    ("sequential/dense/kernel", "dense", "kernel"),          # keras 3 legacy names (paths)
    ("custom/scale:0", "opaque", "other"), ("lstm/lstm_cell/recurrent_kernel:0", "lstm",
                                            "recurrent_kernel")])
def test_role_from_weight_name(name, op, role):
    assert role_from_weight_name(name, op) == role


def test_direction_of():
    assert direction_of("bidirectional/forward_lstm/lstm_cell/kernel:0") == "forward"
    assert direction_of("layers/bidirectional/backward_layer/cell/vars/0") == "backward"
    assert direction_of("lstm/lstm_cell/kernel:0") is None


def _own_roles(layer):
    """Roles of a built keras 3 layer's own variables, in save order, from their names."""
    store = {}
    layer.save_own_variables(store)
    names = {"moving_variance": "moving_var"}
    return [names.get(v.name, v.name) for v in store.values()]


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize("make, shape", [
    (lambda L: L.Dense(3, use_bias=False), (2, 4)),
    (lambda L: L.Conv2D(2, 3, use_bias=False), (1, 5, 5, 3)),
    (lambda L: L.SeparableConv2D(2, 3, use_bias=True), (1, 5, 5, 3)),
    (lambda L: L.DepthwiseConv2D(3, use_bias=False), (1, 5, 5, 3)),
    (lambda L: L.Conv1DTranspose(2, 3), (1, 5, 3)),
    (lambda L: L.BatchNormalization(center=False), (2, 3)),
    (lambda L: L.BatchNormalization(scale=False), (2, 3)),
    (lambda L: L.BatchNormalization(scale=False, center=False), (2, 3)),
    (lambda L: L.LayerNormalization(rms_scaling=True), (2, 3)),
    (lambda L: L.LayerNormalization(center=False), (2, 3)),
    (lambda L: L.GroupNormalization(groups=1, scale=False), (2, 3)),
    (lambda L: L.Embedding(5, 2), (2, 3)),
    (lambda L: L.RMSNormalization(), (2, 3)),
    (lambda L: L.PReLU(), (2, 3)),
])
def test_k3_roles_match_the_variables_keras_creates(keras3, make, shape):
    layer = make(keras3.layers)
    layer.build(shape)
    renamed = {"DepthwiseConv2D": {"depthwise_kernel": "kernel"},
               "RMSNormalization": {"scale": "gamma"}}.get(type(layer).__name__, {})
    expected = [renamed.get(r, r) for r in _own_roles(layer)]
    cfg = layer.get_config()
    assert k3_roles(type(layer).__name__, cfg, "", len(expected)) == expected


@pytest.mark.parametrize("make", [lambda L: L.LSTM(2, use_bias=False), lambda L: L.GRU(2),
                                  lambda L: L.SimpleRNN(2)])
def test_k3_roles_of_recurrent_cells(keras3, make):
    layer = make(keras3.layers)
    layer.build((1, 3, 4))
    expected = _own_roles(layer.cell)
    assert k3_roles(type(layer).__name__, layer.get_config(), "cell", len(expected)) == expected
    assert k3_roles(type(layer).__name__, None, "cell", len(expected)) == expected


def test_k3_roles_without_config_say_other_when_the_file_cannot_tell():
    assert k3_roles("BatchNormalization", None, "", 3) == ["other", "moving_mean", "moving_var"]
    assert k3_roles("BatchNormalization", None, "", 4) == ["gamma", "beta", "moving_mean",
                                                           "moving_var"]
    assert k3_roles("LayerNormalization", None, "", 1) == ["other"]
    assert k3_roles("Dense", None, "", 1) == ["kernel"]
    assert k3_roles("MyLayer", None, "", 2) == ["other", "other"]
    assert k3_roles("Dense", {"use_bias": True}, "", 3) == ["kernel", "bias", "other"]
    wrapper = {"layer": {"class_name": "GRU", "config": None}}
    assert k3_roles("Bidirectional", wrapper, "backward_layer/cell", 3) == \
        ["kernel", "recurrent_kernel", "bias"]
    assert k3_roles("MultiHeadAttention", {"use_bias": False}, "key_dense", 1) == ["key_kernel"]


def test_op_kinds_and_source_types():
    bi = {"layer": {"class_name": "GRU", "config": {"units": 2, "reset_after": True}},
          "merge_mode": "sum"}
    assert (op_of("Bidirectional", bi), source_type("Bidirectional", bi)) == \
        ("gru", "Bidirectional(GRU)")
    assert op_of("LayerNormalization", {"rms_scaling": True}) == "rmsnorm"
    assert op_of("Lambda", {}) == op_of("EinsumDense", {}) == op_of(None, None) == "opaque"
    assert source_type("Lambda", {"function": "x"}) == "Lambda"


def test_attrs_from_config_keeps_data_only():
    bn = attrs_from_config("BatchNormalization", {"epsilon": 1.001e-5, "momentum": 0.9,
                                                  "axis": [3], "center": True, "scale": False,
                                                  "beta_initializer": {"class_name": "Zeros"}},
                           "batchnorm")
    assert bn == {"epsilon": 1.001e-5, "momentum": 0.9, "axis": (3,), "center": True,
                  "scale": False}
    bi = attrs_from_config("Bidirectional", {
        "layer": {"class_name": "GRU", "config": {"units": 2, "reset_after": False}},
        "merge_mode": "sum"}, "gru")
    assert bi == {"units": 2, "reset_after": False, "bidirectional": True, "merge_mode": "sum",
                  "gate_order": "zrh"}
    assert attrs_from_config("Lambda", {"function": {"code": "..."}}, "opaque") == {}
    assert attrs_from_config("Dense", None, "dense") == {"inferred": True}
    assert freeze({"a": [1, [2, 3]]}) == {"a": (1, (2, 3))}


def test_owner_sort_key_puts_forward_and_query_first():
    owners = ["backward_layer/cell", "forward_layer/cell", "", "output_dense", "key_dense",
              "query_dense", "value_dense", "_softmax"]
    assert sorted(owners, key=owner_sort_key) == [
        "", "forward_layer/cell", "query_dense", "backward_layer/cell", "key_dense",
        "value_dense", "output_dense", "_softmax"]
