"""Putting two activations side by side by their axis labels, the figures, fused activations."""
import math

import numpy as np
import pytest

from weightmap import registry
from weightmap.equivalence.compare import (Incomparable, activation_of, figures, reconcile,
                                           side_by_side)

RNG = np.random.default_rng(0)


def test_channels_last_against_channels_first():
    nhwc = RNG.standard_normal((2, 5, 7, 3))
    nchw = nhwc.transpose(0, 3, 1, 2).copy()
    keras, torch = registry.convention("keras"), registry.convention("torch")
    a, b = side_by_side(nhwc, keras.activation_axes("conv2d", {}, 4),
                        nchw, torch.activation_axes("conv2d", {}, 4))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 5, 7, 3)                       # in the source's order


def test_onnx_lstm_output_against_a_batch_first_torch_lstm():
    """ONNX Y is (T, directions, N, H); torch's bidirectional output (N, T, 2H) holds the
    forward hidden state, then the backward one: one axis of two labels, merged."""
    t, n, h = 4, 3, 5
    y = RNG.standard_normal((t, 2, n, h))
    torch_out = y.transpose(2, 0, 1, 3).reshape(n, t, 2 * h)
    onnx, torch = registry.convention("onnx"), registry.convention("torch")
    a, b = side_by_side(y, onnx.activation_axes("lstm", {}, 4),
                        torch_out, torch.activation_axes("lstm", {"batch_first": True}, 3))
    np.testing.assert_array_equal(a, b)
    time_major = torch_out.transpose(1, 0, 2)
    a, b = side_by_side(torch_out, torch.activation_axes("lstm", {"batch_first": True}, 3),
                        time_major, torch.activation_axes("lstm", {}, 3))
    np.testing.assert_array_equal(a, b)


def test_keras_rnn_with_summed_directions_has_no_labels():
    assert registry.convention("keras").activation_axes(
        "lstm", {"bidirectional": True, "merge_mode": "sum"}, 3) is None


@pytest.mark.parametrize("a_shape,b_shape,units", [
    ((2, 3, 4, 4), (2, 3, 4, 5), (("n", "c", "h", "w"), ("n", "c", "h", "w"))),
    ((2, 3), (2, 3, 1), (("n", "c"), ("n", "c", "w"))),
])
def test_what_cannot_be_put_side_by_side(a_shape, b_shape, units):
    with pytest.raises(Incomparable):
        side_by_side(np.zeros(a_shape), units[0], np.zeros(b_shape), units[1])


def test_unknown_layout_compares_equal_shapes_only():
    x = RNG.standard_normal((2, 3))
    a, b = side_by_side(x, None, x, ("n", "c"))
    assert a is x and b is x
    with pytest.raises(Incomparable, match="layout of the source is unknown"):
        side_by_side(x, None, x.T, ("n", "c"))


def test_figures():
    ref = np.array([1.0, -4.0, 2.0])
    f = figures(ref, ref + [0.0, 0.0, 0.004])
    assert f.max_abs == pytest.approx(0.004) and f.rel == pytest.approx(0.001)
    assert f.within(2e-3) and not f.within(1e-4)
    assert figures(np.zeros(3), np.zeros(3)).rel == 0.0
    assert math.isinf(figures(np.zeros(3), np.ones(3)).rel)
    bad = figures(ref, np.array([1.0, np.nan, 2.0]))
    assert math.isinf(bad.rel) and not bad.within(1.0)
    same_nan = figures(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert same_nan.rel == 0.0


def test_the_fused_activation_goes_to_the_side_without_it():
    pre = RNG.standard_normal((2, 4))
    post = np.maximum(pre, 0)
    s, t, note = reconcile("relu", None, post, pre)
    np.testing.assert_array_equal(s, t)
    assert "relu (fused in the source layer) applied to the target's output" == note
    s, t, note = reconcile(None, "softmax", pre, np.exp(pre) / np.exp(pre).sum(-1, keepdims=True))
    np.testing.assert_allclose(s, t, rtol=1e-12)
    with pytest.raises(Incomparable, match="does not know"):
        reconcile("mystery", None, pre, pre)
    with pytest.raises(Incomparable):
        reconcile("relu", "tanh", pre, pre)


def test_activation_of_reads_dense_and_conv_layers_only():
    keras = registry.convention("keras")
    assert activation_of("conv2d", {"activation": "relu"}, keras) == "relu"
    assert activation_of("dense", {"activation": "linear"}, keras) is None
    assert activation_of("lstm", {"activation": "tanh"}, keras) is None    # the cell's own
    assert activation_of("dense", {"activation": {"module": "keras.activations",
                                                  "class_name": "function",
                                                  "config": {"name": "gelu"}}}, keras) == "gelu"
