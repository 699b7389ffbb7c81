import numpy as np
import pytest

from weightmap.planning.conversions import convert
from weightmap.transform import apply_steps

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


@pytest.mark.parametrize("in_features", [H * W * C, 2 * 3 * C, C])
def test_unknown_input_after_a_conv_stops_the_port(pair_factory, layer_factory, in_features):
    """Neither graph says what the dense layer reads: no guess from channel counts (a square
    grid, a 1x1 map), whatever the numbers, and not a layer quietly left new either."""
    from weightmap.errors import UndecidableError
    pair = _graphs(pair_factory, layer_factory, in_features=in_features)
    with pytest.raises(UndecidableError, match="neither graph says") as caught:
        convert(pair)
    assert "example_input" in caught.value.hint


@pytest.mark.parametrize("side", ["src_attrs", "tgt_attrs"])
@pytest.mark.parametrize("kind", ["pooled", "features"])
def test_pooled_features_need_no_reordering(pair_factory, layer_factory, side, kind):
    """The DenseNet case: 32 channels before pooling, 1024 after concatenations: the graph's
    word decides, not the last conv's channel count."""
    pair = _graphs(pair_factory, layer_factory, **{side: {"dense_input": kind}})
    w, _ = convert(pair)
    assert [s.op for s in w.steps] == ["transpose"]
    k = pair.source_graph.param("fc/kernel:0").read()
    np.testing.assert_array_equal(apply_steps(w.steps, [k]), k.T)


def test_a_flatten_of_unknown_shape_stops_the_port(pair_factory, layer_factory):
    from weightmap.errors import UndecidableError
    pair = _graphs(pair_factory, layer_factory, src_attrs={"dense_input": "flatten"})
    with pytest.raises(UndecidableError, match="shape neither graph knows"):
        convert(pair)


def test_the_planner_stops_instead_of_leaving_the_layer_new(pair_factory, layer_factory):
    from weightmap.errors import UndecidableError
    from weightmap.match import match
    from weightmap.planning.build import build_plan
    pair = _graphs(pair_factory, layer_factory)
    with pytest.raises(UndecidableError):
        build_plan(pair.source_graph, pair.target_graph,
                   match(pair.source_graph, pair.target_graph))


def test_one_by_one_map_needs_no_permutation(pair_factory, layer_factory):
    pair = _graphs(pair_factory, layer_factory, in_features=C,
                   src_attrs={"flatten_input_shape": (1, 1, C)})
    w, _ = convert(pair)
    assert [s.op for s in w.steps] == ["transpose"]
