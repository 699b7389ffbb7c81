from weightmap.match.params import BOOKKEEPING, pair_params


def pairs_of(result):
    pairs, _ = result
    return [(p.target, p.sources, p.note) for p in pairs]


def left_of(result):
    _, left = result
    return [(u.side, u.layer, u.params, u.kind, u.reason) for u in left]


def layer(graph, name):
    return graph.layer(name)


def test_conv_pairs_by_role_in_target_order(mk):
    k = mk.keras_layer("block1_conv1", "conv2d", bias=(64,), kernel=(3, 3, 3, 64))
    t = mk.torch_graph([("features.0.weight", (64, 3, 3, 3)), ("features.0.bias", (64,))])
    r = pair_params(k, t.layer("features.0"))
    assert pairs_of(r) == [("features.0.weight", ("block1_conv1/kernel:0",), ""),
                           ("features.0.bias", ("block1_conv1/bias:0",), "")]
    assert left_of(r) == []


def test_batchnorm_roles_and_the_bookkeeping_buffer(mk):
    k = mk.keras_layer("bn", "batchnorm", gamma=(8,), beta=(8,), moving_mean=(8,),
                       moving_var=(8,))
    t = mk.torch_graph(mk.bn_spec("bn1", 8)).layer("bn1")
    r = pair_params(k, t)
    assert pairs_of(r) == [("bn1.weight", ("bn/gamma:0",), ""), ("bn1.bias", ("bn/beta:0",), ""),
                           ("bn1.running_mean", ("bn/moving_mean:0",), ""),
                           ("bn1.running_var", ("bn/moving_variance:0",), "")]
    assert left_of(r) == [("target", "bn1", ("bn1.num_batches_tracked",), "missing",
                           BOOKKEEPING)]
    back = pair_params(t, k)
    assert left_of(back) == [("source", "bn1", ("bn1.num_batches_tracked",), "missing",
                              "no counterpart (bookkeeping buffer)")]


def test_keras_batchnorm_with_scale_false_has_no_gamma(mk):
    k = mk.keras_layer("bn", "batchnorm", beta=(8,), moving_mean=(8,), moving_var=(8,))
    t = mk.torch_graph(mk.bn_spec("bn1", 8)).layer("bn1")
    r = pair_params(k, t)
    assert [p[0] for p in pairs_of(r)] == ["bn1.bias", "bn1.running_mean", "bn1.running_var"]
    assert left_of(r)[0] == ("target", "bn1", ("bn1.weight",), "missing",
                             "no counterpart (source layer 'bn' has no gamma parameter)")


def test_lstm_keras_to_torch_bias_goes_to_bias_ih_and_bias_hh_is_zero(mk):
    k = mk.keras_layer("lstm", "lstm", kernel=(8, 64), recurrent_kernel=(16, 64), bias=(64,))
    t = mk.torch_graph([("rnn.weight_ih_l0", (64, 8)), ("rnn.weight_hh_l0", (64, 16)),
                        ("rnn.bias_ih_l0", (64,)), ("rnn.bias_hh_l0", (64,))]).layer("rnn")
    assert t.op == "lstm"
    r = pair_params(k, t)
    assert pairs_of(r) == [("rnn.weight_ih_l0", ("lstm/kernel:0",), ""),
                           ("rnn.weight_hh_l0", ("lstm/recurrent_kernel:0",), ""),
                           ("rnn.bias_ih_l0", ("lstm/bias:0",), ""),
                           ("rnn.bias_hh_l0", (), "zeros")]
    assert left_of(r) == []


def test_lstm_torch_to_keras_sums_the_two_biases(mk):
    k = mk.keras_layer("lstm", "lstm", kernel=(8, 64), recurrent_kernel=(16, 64), bias=(64,))
    t = mk.torch_graph([("rnn.weight_ih_l0", (64, 8)), ("rnn.weight_hh_l0", (64, 16)),
                        ("rnn.bias_ih_l0", (64,)), ("rnn.bias_hh_l0", (64,))]).layer("rnn")
    r = pair_params(t, k)
    assert pairs_of(r)[2] == ("lstm/bias:0", ("rnn.bias_ih_l0", "rnn.bias_hh_l0"), "sum")
    assert left_of(r) == []


def test_gru_reset_after_bias_rows(mk):
    k = mk.keras_layer("gru", "gru", kernel=(8, 48), recurrent_kernel=(16, 48), bias=(2, 48))
    t = mk.torch_graph([("g.weight_ih_l0", (48, 8)), ("g.weight_hh_l0", (48, 16)),
                        ("g.bias_ih_l0", (48,)), ("g.bias_hh_l0", (48,))]).layer("g")
    assert t.op == "gru"
    assert pairs_of(pair_params(k, t))[2:] == [("g.bias_ih_l0", ("gru/bias:0",), "row:0"),
                                               ("g.bias_hh_l0", ("gru/bias:0",), "row:1")]
    assert pairs_of(pair_params(t, k))[2] == ("gru/bias:0", ("g.bias_ih_l0", "g.bias_hh_l0"),
                                              "stack")


def test_gru_without_reset_after_leaves_the_recurrent_bias_with_a_reason(mk):
    k = mk.keras_layer("gru", "gru", kernel=(8, 48), recurrent_kernel=(16, 48), bias=(48,))
    t = mk.torch_graph([("g.weight_ih_l0", (48, 8)), ("g.weight_hh_l0", (48, 16)),
                        ("g.bias_ih_l0", (48,)), ("g.bias_hh_l0", (48,))]).layer("g")
    r = pair_params(k, t)
    assert ("g.bias_ih_l0", ("gru/bias:0",), "") in pairs_of(r)
    assert left_of(r) == [("target", "g", ("g.bias_hh_l0",), "missing",
                           "no counterpart (the source GRU has one bias; reset_after=False has "
                           "no exact equivalent)")]


def test_stacked_torch_lstm_pairs_by_leaf_name(mk):
    spec = [(f"rnn.{kind}_l{k}", shape) for k in (0, 1) for kind, shape in
            (("weight_ih", (64, 16)), ("weight_hh", (64, 16)), ("bias_ih", (64,)),
             ("bias_hh", (64,)))]
    a = mk.torch_graph(spec).layer("rnn")
    b = mk.torch_graph(list(reversed(spec))).layer("rnn")
    r = pair_params(a, b)
    assert all(p[1] == (p[0],) for p in pairs_of(r))
    assert len(pairs_of(r)) == 8 and left_of(r) == []


def test_forced_and_skipped_parameters(mk):
    src = mk.torch_graph([("a.weight", (4, 4)), ("a.bias", (4,))]).layer("a")
    tgt = mk.torch_graph([("b.weight", (4, 4)), ("b.bias", (4,))]).layer("b")
    r = pair_params(src, tgt, forced={"b.weight": ("a.bias", "a.weight")},
                    skip_target={"b.bias"})
    assert pairs_of(r) == [("b.weight", ("a.bias", "a.weight"), "")]
    assert left_of(r) == []


def test_leftovers_on_both_sides(mk):
    src = mk.torch_graph([("a.weight", (4, 4, 3, 3)), ("a.bias", (4,))]).layer("a")
    tgt = mk.torch_graph([("b.weight", (4, 4, 3, 3))]).layer("b")
    r = pair_params(src, tgt)
    assert left_of(r) == [("source", "a", ("a.bias",), "missing",
                           "no counterpart (target layer 'b' has no bias parameter)")]


def test_tensors_of_unknown_kind_pair_by_name_only_where_the_shapes_agree(mk):
    """A ViT's own tokens: cls_token carries over, pos_embed at another grid is a shape
    mismatch naming its twin."""
    s = mk.torch_graph([("cls_token", (1, 1, 8)), ("pos_embed", (1, 65, 8))]).layer("<root>")
    t = mk.torch_graph([("pos_embed", (1, 257, 8)), ("cls_token", (1, 1, 8))]).layer("<root>")
    r = pair_params(s, t)
    assert pairs_of(r) == [("cls_token", ("cls_token",), "")]
    assert left_of(r) == [("target", "<root>", ("pos_embed",), "shape",
                           "tensor shape (1, 257, 8) vs (1, 65, 8)"),
                          ("source", "<root>", ("pos_embed",), "shape",
                           "tensor shape (1, 65, 8) vs (1, 257, 8)")]


def test_a_rule_between_layers_of_other_kinds_pairs_leftovers_by_shape(mk):
    s = mk.torch_graph([("norm.weight", (6,))]).layer("norm")
    t = mk.keras_layer("gain", "dense", kernel=(6,))
    assert pairs_of(pair_params(s, t)) == []
    assert pairs_of(pair_params(s, t, by_shape=True)) == [("gain/kernel:0", ("norm.weight",), "")]
