from weightmap.match.normalise import (clean, common_prefixes, dotted_suffixes,
                                       normalize_param_name, similarity, strip_prefixes,
                                       suffix_candidates, tokens)


def test_clean_turns_keras_paths_into_dotted_names():
    assert clean("model/block1_conv1/kernel:0") == "model.block1_conv1.kernel"
    assert clean("features.0") == "features.0"
    assert clean("/a//b/") == "a.b"


def test_param_leaf_names_map_to_torch_words():
    assert normalize_param_name("fc1/kernel:0") == "fc1.weight"
    assert normalize_param_name("bn/gamma:0") == "bn.weight"
    assert normalize_param_name("bn/beta:0") == "bn.bias"
    assert normalize_param_name("bn/moving_mean:0") == "bn.running_mean"
    assert normalize_param_name("bn/moving_variance:0") == "bn.running_var"
    assert normalize_param_name("emb/embeddings:0") == "emb.weight"
    assert normalize_param_name("lstm.weight_ih_l0") == "lstm.weight_ih_l0"


def test_wrapper_prefixes_stripped_only_when_every_name_has_them():
    assert common_prefixes(["module.a", "module.b.c"]) == ("module.",)
    assert common_prefixes(["module._orig_mod.a", "module._orig_mod.b"]) == \
        ("module.", "_orig_mod.")
    assert common_prefixes(["model.model.a", "model.model.b"]) == ("model.", "model.")
    assert common_prefixes(["model.a", "b"]) == ()
    assert common_prefixes(["module.a", "module"]) == ()        # would empty a name
    assert common_prefixes(["net.a", "net.b"]) == ()            # not a known wrapper


def test_declared_prefixes_from_graph_meta():
    assert common_prefixes(["net.a", "net.b"], declared=["net"]) == ("net.",)
    assert common_prefixes(["net.a", "x.b"], declared=["net."]) == ()


def test_strip_prefixes_in_order():
    assert strip_prefixes("module._orig_mod.fc", ("module.", "_orig_mod.")) == "fc"


def test_dotted_suffixes_never_a_bare_index():
    assert dotted_suffixes("backbone.res5.0.conv") == ["res5.0.conv", "0.conv", "conv"]
    assert dotted_suffixes("features.0") == []
    assert dotted_suffixes("fc") == []


def test_suffix_candidates_both_directions_without_equality():
    targets = {0: "res5.conv", 1: "fc", 2: "a.b"}
    sources = {10: "backbone.res5.conv", 11: "head.res5.conv", 12: "head.fc", 13: "b", 14: "a.b"}
    assert suffix_candidates(targets, sources) == {0: [10, 11], 1: [12], 2: [13]}


def test_tokens_qualify_numbers_by_the_word_before():
    assert tokens("features.12") == {"features", "features#12"}
    assert tokens("conv2d_3") == {"conv2d", "conv2d#3"}
    assert tokens("layer1.0.conv1") == {"layer1", "layer1#0", "conv1"}
    assert tokens("0.weight") == {"#0", "weight"}


def test_similarity_is_token_jaccard():
    assert similarity(tokens("left_conv"), tokens("left.conv")) == 1.0
    assert similarity(tokens("left_conv"), tokens("right.conv")) == 1 / 3
    assert similarity(frozenset(), tokens("a")) == 0.0
