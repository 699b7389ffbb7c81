from weightmap.match.prepare import Signatures, prepare
from weightmap.match.rules import Rules


def test_names_are_renamed_cleaned_and_unwrapped(mk):
    g = mk.torch_graph([("module.enc.0.weight", (4, 4)), ("module.enc.1.weight", (4, 4))])
    rules = Rules.from_dict({"rename": [{"pattern": r"^module\.enc\.", "replace": "module.x."}]})
    src = prepare(g, "source", rules, Signatures())
    assert src.names == ["x.0", "x.1"] and src.prefixes == ("module.",)
    tgt = prepare(g, "target", rules, Signatures())          # rename applies to sources only
    assert tgt.names == ["enc.0", "enc.1"]


def test_keras_separators_and_device_suffixes(mk):
    g = mk.keras_graph([mk.keras_layer("model/block1_conv1", "conv2d", kernel=(3, 3, 3, 8))])
    side = prepare(g, "target", Rules(), Signatures())
    assert side.names == ["block1_conv1"]      # '/' -> '.', then the common 'model.' stripped
    assert side.tokens == [frozenset({"block1", "conv1"})]


def test_meta_prefixes_are_honoured(mk):
    g = mk.torch_graph([("net.a.weight", (4, 4)), ("net.b.weight", (2, 4))],
                       meta={"prefixes": ["net."]})
    assert prepare(g, "source", Rules(), Signatures()).names == ["a", "b"]


def test_ignored_layers_and_parameters(mk):
    g = mk.torch_graph([("aux.fc.weight", (4, 4)), ("bn.weight", (4,)), ("bn.bias", (4,)),
                        ("bn.running_mean", (4,)), ("bn.running_var", (4,)),
                        ("bn.num_batches_tracked", ())])
    rules = Rules.from_dict({"ignore": {"source": ["aux.*", "*.num_batches_tracked"]}})
    side = prepare(g, "source", rules, Signatures())
    assert side.ignored_layers == {0: "ignore.source[0] 'aux.*'"}
    assert side.ignored_params == {"bn.num_batches_tracked":
                                   "ignore.source[1] '*.num_batches_tracked'"}
    assert prepare(g, "target", rules, Signatures()).ignored_layers == {}


def test_a_layer_whose_params_are_all_ignored_is_ignored(mk):
    g = mk.keras_graph([mk.keras_layer("fc", "dense", kernel=(4, 2), bias=(2,))])
    rules = Rules.from_dict({"ignore": ["fc.weight", "fc.bias"]})   # torch words match keras names
    side = prepare(g, "target", rules, Signatures())
    assert side.ignored_layers == {0: "ignore[0] 'fc.weight'"}


def test_signature_ids_are_shared_between_sides(mk):
    sigs = Signatures()
    k = prepare(mk.keras_graph([mk.keras_layer("c", "conv2d", kernel=(3, 3, 3, 8), bias=(8,))]),
                "source", Rules(), sigs)
    t = prepare(mk.torch_graph([("f.0.weight", (8, 3, 3, 3)), ("f.0.bias", (8,))]),
                "target", Rules(), sigs)
    assert k.sig_ids == t.sig_ids == [0]
    assert sigs.compat(0, 0) is sigs.compat(0, 0)           # cached


def test_find_layer_and_param_by_stored_or_normalised_name(mk):
    g = mk.keras_graph([mk.keras_layer("fc", "dense", kernel=(4, 2))])
    side = prepare(g, "source", Rules(), Signatures())
    assert side.find_layer("fc") == 0 and side.find_layer("nope") is None
    assert side.find_param("fc/kernel:0") == (0, "fc/kernel:0")
    assert side.find_param("fc.weight") == (0, "fc/kernel:0")
    assert side.find_param("fc.bias") is None
