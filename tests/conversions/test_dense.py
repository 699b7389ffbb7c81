import numpy as np
import pytest

from weightmap.conversions import convert
from weightmap.transforms import apply_steps

H, W, C, O = 4, 4, 3, 5


def _graphs(pair_factory, layer_factory, src_attrs=None, tgt_attrs=None, in_features=H * W * C):
    conv_s = layer_factory("keras", "conv", "conv2d", [("kernel:0", "kernel", (3, 3, 2, C))])
    fc_s = layer_factory("keras", "fc", "dense", [("kernel:0", "kernel", (in_features, O)),
                                                  ("bias:0", "bias", (O,))], attrs=src_attrs)
    conv_t = layer_factory("torch", "conv", "conv2d", [("weight", "kernel", (C, 2, 3, 3))])
    fc_t = layer_factory("torch", "fc", "dense", [("weight", "kernel", (O, in_features)),
                                                  ("bias", "bias", (O,))], attrs=tgt_attrs)
    return pair_factory([conv_s, fc_s], [conv_t, fc_t], "keras", "torch", "fc", "fc",
                        [("fc.weight", ("fc/kernel:0",), ""), ("fc.bias", ("fc/bias:0",), "")])


def _check_computes_the_same(pair, plan):
    k = pair.source_graph.param("fc/kernel:0").read().astype(np.float64)
    w = apply_steps(plan.steps, [k])
    x = np.random.default_rng(1).standard_normal((H, W, C))
    np.testing.assert_allclose(w @ x.transpose(2, 0, 1).reshape(-1), x.reshape(-1) @ k, rtol=1e-10)


def test_flatten_shape_from_the_source_graph(pair_factory, layer_factory):
    pair = _graphs(pair_factory, layer_factory,
                   src_attrs={"flatten_input_shape": (H, W, C), "data_format": "channels_last"})
    w, b = convert(pair)
    assert [s.op for s in w.steps] == ["flatten_permute", "transpose"]
    assert not any(n.startswith("decision") for n in w.notes)
    _check_computes_the_same(pair, w)


def test_flatten_shape_from_the_target_graph(pair_factory, layer_factory):
    pair = _graphs(pair_factory, layer_factory,
                   tgt_attrs={"flatten_input_shape": (C, H, W), "data_format": "channels_first"})
    w, _ = convert(pair)
    _check_computes_the_same(pair, w)


def test_flatten_shape_inferred_is_reported(pair_factory, layer_factory):
    pair = _graphs(pair_factory, layer_factory)
    w, _ = convert(pair)
    _check_computes_the_same(pair, w)
    assert any(n.startswith("decision:") and "inferred" in n for n in w.notes)


def test_non_square_unknown_map_is_refused(pair_factory, layer_factory):
    from weightmap.errors import ConversionError
    pair = _graphs(pair_factory, layer_factory, in_features=2 * 3 * C)
    with pytest.raises(ConversionError, match="square grid"):
        convert(pair)


def test_one_by_one_map_needs_no_permutation(pair_factory, layer_factory):
    pair = _graphs(pair_factory, layer_factory, in_features=C,
                   src_attrs={"flatten_input_shape": (1, 1, C)})
    w, _ = convert(pair)
    assert [s.op for s in w.steps] == ["transpose"]
