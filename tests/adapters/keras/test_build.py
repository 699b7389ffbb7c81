"""Layer construction and op inference for files without a model config."""
from __future__ import annotations

import pytest

from weightmap_keras.build import Weight, infer_class, make_layer, rnn_class


def _w(name, role, shape, direction=None):
    return Weight(name, role, shape, "float32", None, direction)


@pytest.mark.parametrize("layer, names, shapes, expected", [
    ("block1_conv1", ["block1_conv1/kernel:0", "block1_conv1/bias:0"], [(3, 3, 3, 4), (4,)],
     "Conv2D"),
    ("conv2d_transpose_1", ["conv2d_transpose_1/kernel:0"], [(3, 3, 2, 4)], "Conv2DTranspose"),
    ("up", ["up/kernel:0"], [(3, 3, 2, 4)], "Conv2D"),         # nothing says transpose
    ("c1", ["c1/kernel:0"], [(5, 2, 3)], "Conv1D"),
    ("fc", ["fc/kernel:0", "fc/bias:0"], [(8, 3), (3,)], "Dense"),
    ("dw", ["dw/depthwise_kernel:0", "dw/bias:0"], [(3, 3, 4, 1), (4,)], "DepthwiseConv2D"),
    ("sep", ["sep/depthwise_kernel:0", "sep/pointwise_kernel:0"], [(3, 4, 1), (1, 4, 8)],
     "SeparableConv1D"),
    ("bn", ["bn/gamma:0", "bn/moving_mean:0", "bn/moving_variance:0"], [(3,)] * 3,
     "BatchNormalization"),
    ("ln", ["ln/gamma:0", "ln/beta:0"], [(3,), (3,)], "LayerNormalization"),
    ("group_normalization_2", ["g/gamma:0", "g/beta:0"], [(3,), (3,)], "GroupNormalization"),
    ("emb", ["emb/embeddings:0"], [(10, 4)], "Embedding"),
    ("act", ["act/alpha:0"], [(4,)], "PReLU"),
    ("rnn", ["rnn/cell/kernel:0", "rnn/cell/recurrent_kernel:0", "rnn/cell/bias:0"],
     [(3, 20), (5, 20), (20,)], "LSTM"),
    ("rnn", ["rnn/cell/kernel:0", "rnn/cell/recurrent_kernel:0", "rnn/cell/bias:0"],
     [(3, 15), (5, 15), (2, 15)], "GRU"),
    ("rnn", ["rnn/cell/kernel:0", "rnn/cell/recurrent_kernel:0"], [(3, 5), (5, 5)],
     "SimpleRNN"),
    ("att", ["att/query/kernel:0", "att/key/kernel:0"], [(4, 2, 2), (4, 2, 2)],
     "MultiHeadAttention"),
    ("mystery", ["mystery/w:0"], [(3,)], None),
])
def test_infer_class(layer, names, shapes, expected):
    assert infer_class(layer, names, shapes) == (expected, None)


def test_infer_class_of_a_bidirectional_wrapper():
    names = [f"bi/{d}_gru/gru_cell/{r}:0" for d in ("forward", "backward")
             for r in ("kernel", "recurrent_kernel", "bias")]
    shapes = [(4, 9), (3, 9), (2, 9)] * 2
    assert infer_class("bi", names, shapes) == \
        ("Bidirectional", {"layer": {"class_name": "GRU", "config": None}})


def test_rnn_class():
    assert rnn_class([(3, 8), (2, 8)]) == "LSTM"
    assert rnn_class([(3, 7), (2, 7)]) is None
    assert rnn_class([(3, 8)]) is None


def test_make_layer_attributes_and_axes():
    cfg = {"layer": {"class_name": "LSTM", "config": {"units": 2}}, "merge_mode": "ave"}
    weights = [_w(f"{d}/{r}", r, s, d) for d in ("forward", "backward")
               for r, s in (("kernel", (3, 8)), ("recurrent_kernel", (2, 8)), ("bias", (8,)))]
    layer = make_layer("bi", "Bidirectional", cfg, weights)
    assert (layer.op, layer.source_type) == ("lstm", "Bidirectional(LSTM)")
    assert dict(layer.attrs) == {
        "units": 2, "bidirectional": True, "merge_mode": "ave", "gate_order": "ifco",
        "directions": {"forward": ("forward/kernel", "forward/recurrent_kernel",
                                   "forward/bias"),
                       "backward": ("backward/kernel", "backward/recurrent_kernel",
                                    "backward/bias")}}
    assert [p.axes for p in layer.params[:3]] == [("in", "out"), ("in", "out"), ("out",)]


def test_make_layer_flatten_and_inferred_attributes():
    dense = make_layer("fc", "Dense", {"units": 3}, [_w("fc/k", "kernel", (12, 3))],
                       flatten=((2, 2, 3), "channels_last"))
    assert dict(dense.attrs) == {"units": 3, "flatten_input_shape": (2, 2, 3),
                                 "data_format": "channels_last"}
    gru = make_layer("g", "GRU", None, [_w("g/k", "kernel", (4, 9)),
                                        _w("g/r", "recurrent_kernel", (3, 9)),
                                        _w("g/b", "bias", (9,))])
    assert dict(gru.attrs) == {"inferred": True, "gate_order": "zrh", "units": 3,
                               "reset_after": False}
    custom = make_layer("c", "MyLayer", {"units": 3}, [_w("c/v", "other", (3,))])
    assert (custom.op, custom.source_type, dict(custom.attrs)) == ("opaque", "MyLayer", {})
