"""Which layers verification compares, and up to where (the plan's derives-from relation)."""
from weightmap.equivalence.pairs import Entry, pair_layers, sequence
from weightmap.graph import Layer, Param, ParamGraph


def _graph(fw, *layers):
    out = []
    for name, roles in layers:
        params = tuple(Param(f"{name}.{r}", r if r != "tied" else "kernel", (2,), "float32",
                             None, tied_to="emb.kernel" if r == "tied" else None)
                       for r in roles)
        out.append(Layer(name, "conv2d", params))
    return ParamGraph("arrays", fw, fw, tuple(out))


SRC = _graph("keras", ("c1", ["kernel", "bias"]), ("b1", ["gamma", "moving_mean"]),
             ("c2", ["kernel"]), ("head", ["kernel"]))
TGT = _graph("torch", ("conv1", ["kernel"]), ("bn1", ["gamma", "moving_mean",
                                                     "num_batches_tracked"]),
             ("conv2", ["kernel"]), ("fc", ["kernel"]))


def _entries(**changes):
    base = {"conv1.kernel": ("conv1", "transformed", ("c1.kernel",)),
            "bn1.gamma": ("bn1", "transferred", ("b1.gamma",)),
            "bn1.moving_mean": ("bn1", "transformed", ("b1.moving_mean", "c1.bias")),
            "bn1.num_batches_tracked": ("bn1", "new", ()),
            "conv2.kernel": ("conv2", "transformed", ("c2.kernel",)),
            "fc.kernel": ("fc", "transformed", ("head.kernel",))}
    base.update(changes)
    return [Entry(t, layer, status, tuple(src)) for t, (layer, status, src) in base.items()]


def test_a_conv_bias_folded_into_the_batchnorm_joins_both_layers_in_one_pair():
    pairing = pair_layers(_entries(), SRC, TGT)
    assert [(p.source, p.target) for p in pairing.pairs] == [("b1", "bn1"), ("c2", "conv2"),
                                                              ("head", "fc")]
    assert pairing.pairs[0].source_layers == ("c1", "b1")
    assert pairing.pairs[0].target_layers == ("conv1", "bn1")
    assert not pairing.new_targets and not pairing.unused_sources       # bookkeeping aside


def test_a_new_head_stops_the_comparison_before_it():
    entries = _entries(**{"fc.kernel": ("fc", "new", ())})
    pairing = pair_layers(entries, SRC, TGT)
    assert pairing.new_targets == {"fc": "fc.kernel"} and pairing.unused_sources == ["head"]
    seq = sequence(pairing, ["c1", "b1", "c2", "head"], ["conv1", "bn1", "conv2", "fc"])
    assert seq.comparable == 2 and "the target's fc is new" in seq.stop_reason


def test_a_new_layer_in_the_middle_stops_the_comparison_there():
    entries = _entries(**{"conv2.kernel": ("conv2", "new", ())})
    pairing = pair_layers(entries, SRC, TGT)
    seq = sequence(pairing, ["c1", "b1", "c2", "head"], ["conv1", "bn1", "conv2", "fc"])
    assert [(p.target, p.source) for p in seq.pairs] == [("bn1", "b1"), ("fc", "head")]
    assert seq.comparable == 1 and "conv2 is new" in seq.stop_reason


def test_a_dropped_source_layer_stops_the_comparison_after_it():
    entries = _entries(**{"conv2.kernel": ("conv2", "transformed", ("head.kernel",)),
                          "fc.kernel": ("fc", "new", ())})
    pairing = pair_layers(entries, SRC, TGT)
    assert pairing.unused_sources == ["c2"]
    seq = sequence(pairing, ["c1", "b1", "c2", "head"], ["conv1", "bn1", "conv2", "fc"])
    assert seq.comparable == 1 and "the source's c2 has no counterpart" in seq.stop_reason


def test_the_runs_order_decides_and_uncalled_new_layers_do_not_stop_anything():
    entries = _entries(**{"fc.kernel": ("fc", "new", ())})
    pairing = pair_layers(entries, SRC, TGT)
    # neither head ran (auxiliary heads): nothing they hold reaches the outputs
    seq = sequence(pairing, ["c1", "b1", "c2"], ["conv2", "conv1", "bn1"])
    assert [p.target for p in seq.pairs] == ["conv2", "bn1"]
    assert seq.comparable == 2 and seq.stop_reason is None


def test_a_tied_target_tensor_joins_nothing():
    src = _graph("torch", ("emb", ["kernel"]))
    tgt = _graph("torch", ("tok", ["kernel"]), ("head", ["tied"]))
    entries = [Entry("tok.kernel", "tok", "transferred", ("emb.kernel",)),
               Entry("head.tied", "head", "transferred", ("emb.kernel",))]
    pairing = pair_layers(entries, src, tgt)
    assert [(p.source, p.target) for p in pairing.pairs] == [("emb", "tok")]


def test_synthetic_tensors_are_named():
    entries = _entries(**{"bn1.gamma": ("bn1", "synthetic", ())})
    assert pair_layers(entries, SRC, TGT).synthetic == ["bn1.gamma"]


def test_a_fused_layer_against_its_split_parts():
    src = _graph("torch", ("qkv", ["kernel"]))
    tgt = _graph("torch", ("q", ["kernel"]), ("k", ["kernel"]), ("v", ["kernel"]))
    entries = [Entry(f"{n}.kernel", n, "transformed", ("qkv.kernel",)) for n in "qkv"]
    pair, = pair_layers(entries, src, tgt).pairs
    assert (pair.source, pair.target) == ("qkv", "v")
    assert pair.parts("target") == ("q", "k", "v") and pair.parts("source") == ()
