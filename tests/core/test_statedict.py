from weightmap import registry
from weightmap.reading import statedict
from weightmap.reading.statedict import Entry


def group(entries):
    """A state dict named as torch names it."""
    return statedict.group(entries, registry.convention("torch"))


def _e(name, *shape):
    return Entry(name, tuple(shape), "float32", None)


def _ops(layers):
    return [(l.name, l.op, [p.role for p in l.params]) for l in layers]


def test_cnn_state_dict_groups_by_prefix_and_infers_ops():
    layers = group([
        _e("features.0.weight", 8, 3, 3, 3), _e("features.0.bias", 8),
        _e("features.1.weight", 8), _e("features.1.bias", 8), _e("features.1.running_mean", 8),
        _e("features.1.running_var", 8), _e("features.1.num_batches_tracked"),
        _e("classifier.weight", 10, 128), _e("classifier.bias", 10),
    ])
    assert _ops(layers) == [
        ("features.0", "conv2d", ["kernel", "bias"]),
        ("features.1", "batchnorm", ["gamma", "beta", "moving_mean", "moving_var",
                                     "num_batches_tracked"]),
        ("classifier", "dense", ["kernel", "bias"]),
    ]
    assert layers[0].params[0].axes == ("out", "in", "kh", "kw")
    assert layers[1].params[4].axes == ()
    assert layers[2].params[0].axes == ("out", "in")
    assert all(l.attrs["inferred"] for l in layers)


def test_recurrent_layers_are_told_apart_by_gate_count():
    lstm = group([_e("rnn.weight_ih_l0", 32, 5), _e("rnn.weight_hh_l0", 32, 8),
                  _e("rnn.bias_ih_l0", 32), _e("rnn.bias_hh_l0", 32),
                  _e("rnn.weight_ih_l0_reverse", 32, 5), _e("rnn.weight_hh_l0_reverse", 32, 8)])
    gru = group([_e("g.weight_ih_l0", 24, 5), _e("g.weight_hh_l0", 24, 8),
                 _e("g.weight_ih_l1", 24, 8), _e("g.weight_hh_l1", 24, 8)])
    assert lstm[0].op == "lstm" and lstm[0].attrs["bidirectional"] is True
    assert [p.role for p in lstm[0].params][:4] == ["kernel", "recurrent_kernel", "bias",
                                                    "recurrent_bias"]
    assert gru[0].op == "gru" and gru[0].attrs["num_layers"] == 2
    assert gru[0].attrs["units"] == 8


def test_embedding_norms_and_unknowns():
    layers = group([_e("wte.weight", 100, 16), _e("h.0.ln_1.weight", 16), _e("h.0.ln_1.bias", 16),
                    _e("norm.rms.weight", 16), _e("act.prelu.weight", 1),
                    _e("cls_token", 1, 1, 16), _e("pos_embed", 1, 5, 16)])
    assert _ops(layers) == [
        ("wte", "embedding", ["embeddings"]),
        ("h.0.ln_1", "layernorm", ["gamma", "beta"]),
        ("norm.rms", "rmsnorm", ["gamma"]),
        ("act.prelu", "prelu", ["alpha"]),
        ("<root>", "opaque", ["other", "other"]),
    ]
    assert layers[0].params[0].axes == ("vocab", "dim")
    assert layers[4].params[0].axes is None


def test_tied_entries_keep_their_link():
    layers = group([Entry("wte.weight", (5, 2), "float32", None),
                    Entry("lm_head.weight", (5, 2), "float32", None, tied_to="wte.weight")])
    assert layers[1].params[0].tied_to == "wte.weight"
