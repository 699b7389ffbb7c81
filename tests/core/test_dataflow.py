"""Data flow between layers (``fed_by``) and the branch order two writings of a network share."""
import itertools

from weightmap.reading.dataflow import FED_BY, branch_order, consumers, fed_by
from weightmap.graph import Layer, Param


def _layer(name, feeds=None, op="conv2d"):
    attrs = {} if feeds is None else {FED_BY: tuple(feeds)}
    return Layer(name, op, (Param(f"{name}.weight", "kernel", (1,), "float32", None),), attrs)


def test_fed_by_goes_through_layers_without_weights():
    inputs = {"conv": [], "relu": ["conv"], "pool": ["relu"], "bn": ["pool"],
              "add": ["bn", "short"], "short": ["conv"], "fc": ["add"]}
    got = fed_by(inputs, {"conv", "bn", "short", "fc"})
    assert got == {"conv": (), "bn": ("conv",), "short": ("conv",), "fc": ("bn", "short")}


def test_fed_by_keeps_first_met_order_and_ignores_model_inputs():
    inputs = {"a": ["input"], "cat": ["a", "b", "a"], "b": ["input"], "c": ["cat"]}
    assert fed_by(inputs, {"a", "b", "c"})["c"] == ("a", "b")


def _resnet_block(shortcut_first: bool, interleaved: bool):
    """One bottleneck with a shortcut conv, written three ways (module doc of dataflow)."""
    main = [_layer("c1", ["stem"]), _layer("b1", ["c1"]), _layer("c2", ["b1"]),
            _layer("b2", ["c2"]), _layer("c3", ["b2"]), _layer("b3", ["c3"])]
    short = [_layer("c0", ["stem"]), _layer("b0", ["c0"])]
    tail = [_layer("next", ["b3", "b0"])]
    if interleaved:                          # Keras: c1 b1 c2 b2 c0 c3 b0 b3
        body = main[:4] + [short[0], main[4], short[1], main[5]]
    else:
        body = short + main if shortcut_first else main + short
    return [_layer("stem", [])] + body + tail


def test_three_writings_of_a_residual_block_get_one_order():
    want = ["stem", "c1", "b1", "c2", "b2", "c3", "b3", "c0", "b0", "next"]
    for first, inter in [(False, True), (True, False), (False, False)]:
        assert [l.name for l in branch_order(_resnet_block(first, inter))] == want


def test_order_is_topological_for_any_input_order():
    layers = _resnet_block(False, False)
    for perm in itertools.islice(itertools.permutations(layers), 0, 5000, 97):
        names = [l.name for l in branch_order(list(perm))]
        seen = set()
        for name in names:
            layer = next(l for l in layers if l.name == name)
            assert set(layer.attrs[FED_BY]) <= seen
            seen.add(name)


def test_equal_branches_keep_the_given_order():
    layers = [_layer("x", []), _layer("q", ["x"]), _layer("k", ["x"]), _layer("v", ["x"]),
              _layer("proj", ["q", "k", "v"])]
    assert [l.name for l in branch_order(layers)] == ["x", "q", "k", "v", "proj"]


def test_layers_without_fed_by_keep_their_place_and_none_means_no_change():
    layers = [_layer("first"), _layer("b", ["a"]), _layer("dead"), _layer("a", []),
              _layer("x", ["b"]), _layer("side", ["a"])]
    assert [l.name for l in branch_order(layers)] == ["first", "a", "b", "dead", "x", "side"]
    plain = [_layer("z"), _layer("y")]
    assert branch_order(plain) == plain


def test_a_cycle_keeps_the_given_order():
    layers = [_layer("a", ["b"]), _layer("b", ["a"])]
    assert branch_order(layers) == layers


def test_consumers():
    layers = _resnet_block(False, True)
    feeds = consumers(layers)
    assert feeds["stem"] == ["c1", "c0"] and feeds["b3"] == ["next"] and feeds["next"] == []
