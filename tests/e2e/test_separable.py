"""A Keras SeparableConv2D (depth multiplier 2) into torch depthwise + pointwise convs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import weightmap  # noqa: E402


def test_separable_conv_splits_into_depthwise_and_pointwise():
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((8, 8, 3)),
                           keras.layers.SeparableConv2D(6, 3, depth_multiplier=2,
                                                        padding="same"),
                           keras.layers.Conv2D(4, 1)])
    rng = np.random.default_rng(0)
    km.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()])
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False),
                             torch.nn.Conv2d(6, 6, 1), torch.nn.Conv2d(6, 4, 1)).eval()
    report = weightmap.load_partial(tm, km)
    assert not report.new and not report.unused
    assert any("split into 0 (depthwise) + 1 (pointwise)" in d for d in report.decisions)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    expected = np.asarray(km(x))
    with torch.no_grad():
        got = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-5


def test_torch_depthwise_and_pointwise_merge_into_a_keras_separable_conv():
    keras.utils.set_random_seed(1)
    km = keras.Sequential([keras.Input((8, 8, 3)),
                           keras.layers.SeparableConv2D(6, 3, depth_multiplier=2,
                                                        padding="same")])
    torch.manual_seed(1)
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False),
                             torch.nn.Conv2d(6, 6, 1)).eval()
    report = weightmap.load_partial(km, tm)
    assert not report.new and not report.unused
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.asarray(km(x)).transpose(0, 3, 1, 2)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-5
