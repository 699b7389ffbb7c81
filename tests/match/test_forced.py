import pytest

from weightmap.errors import UsageError
from weightmap.match import match
from weightmap.match.forced import resolve_pairs, rule_params
from weightmap.match.result import ParamPair
from weightmap.match.prepare import Signatures, prepare
from weightmap.match.rules import Rules


def sides(mk, rules):
    sigs = Signatures()
    src = mk.keras_graph([mk.keras_layer("fc1", "dense", kernel=(8, 4), bias=(4,)),
                          mk.keras_layer("lstm", "lstm", kernel=(4, 16), recurrent_kernel=(4, 16),
                                         bias=(16,))])
    tgt = mk.torch_graph([("classifier.0.weight", (4, 8)), ("classifier.0.bias", (4,)),
                          ("rnn.weight_ih_l0", (16, 4)), ("rnn.weight_hh_l0", (16, 4)),
                          ("rnn.bias_ih_l0", (16,)), ("rnn.bias_hh_l0", (16,))])
    return prepare(src, "source", rules, sigs), prepare(tgt, "target", rules, sigs)


def test_layer_and_parameter_rules(mk):
    rules = Rules.from_dict({"pair": [
        {"target": "rnn.bias_hh_l0", "source": ["lstm/bias:0"]},
        {"target": "classifier.0", "source": "fc1"}]}, origin="r.yaml")
    src, tgt = sides(mk, rules)
    forced = resolve_pairs(rules, src, tgt)
    assert forced[0].source == 0 and forced[0].keys == ["pair[1]"] and forced[0].params == {}
    assert forced[0].layer_level
    assert forced[1].source == 1 and forced[1].keys == ["pair[0]"] and not forced[1].layer_level
    assert forced[1].params == {"rnn.bias_hh_l0": ("lstm/bias:0",)}


def test_parameter_rules_accept_torch_words_for_keras_names(mk):
    rules = Rules.from_dict({"pair": [{"target": "rnn.weight_ih_l0", "source": "lstm.weight"}]})
    src, tgt = sides(mk, rules)
    assert resolve_pairs(rules, src, tgt)[1].params == {"rnn.weight_ih_l0": ("lstm/kernel:0",)}


@pytest.mark.parametrize("rule,text", [
    ({"target": "classifer.0", "source": "fc1"},
     "rules key 'pair[0].target': no target layer or parameter named 'classifer.0'"),
    ({"target": "classifier.0", "source": "fc9"},
     "rules key 'pair[0].source': no source layer named 'fc9'"),
    ({"target": "classifier.0", "source": ["fc1", "lstm.nope"]},
     "rules key 'pair[0].source[1]': no source layer named 'lstm.nope'"),
    ({"target": ["classifier.0", "rnn.bias_ih_l0"], "source": "fc1"},
     "rules key 'pair[0].target[1]': no target layer named 'rnn.bias_ih_l0'"),
    ({"target": "rnn.bias_ih_l0", "source": ["lstm/nope:0"]},
     "rules key 'pair[0].source[0]': no source parameter named 'lstm/nope:0'"),
])
def test_unknown_names_are_usage_errors_with_a_hint(mk, rule, text):
    rules = Rules.from_dict({"pair": [rule]}, origin="r.yaml")
    src, tgt = sides(mk, rules)
    with pytest.raises(UsageError) as info:
        resolve_pairs(rules, src, tgt)
    assert text in str(info.value) and "r.yaml" in str(info.value)


def test_close_names_are_suggested(mk):
    rules = Rules.from_dict({"pair": [{"target": "classifer.0", "source": "fc1"}]})
    src, tgt = sides(mk, rules)
    with pytest.raises(UsageError, match="did you mean classifier.0"):
        resolve_pairs(rules, src, tgt)


def test_pairing_an_ignored_layer_is_refused(mk):
    rules = Rules.from_dict({"pair": [{"target": "classifier.0", "source": "fc1"}],
                             "ignore": {"source": ["fc1"]}}, origin="r.toml")
    src, tgt = sides(mk, rules)
    with pytest.raises(UsageError, match="pairs 'fc1', which ignore.source\\[0\\] 'fc1' ignores"):
        resolve_pairs(rules, src, tgt)


def test_several_source_layers_stack_and_a_list_of_targets_splits(mk):
    sigs = Signatures()
    src = mk.torch_graph([("a.weight", (4, 4)), ("a.bias", (4,)), ("b.weight", (2, 4)),
                          ("b.bias", (2,)), ("ab.weight", (6, 4)), ("ab.bias", (6,))])
    tgt = mk.torch_graph([("fused.weight", (6, 4)), ("fused.bias", (6,)), ("x.weight", (4, 4)),
                          ("x.bias", (4,)), ("y.weight", (2, 4)), ("y.bias", (2,))])
    rules = Rules.from_dict({"pair": [{"target": "fused", "source": ["a", "b"]},
                                      {"target": ["x", "y"], "source": "ab"}]})
    s, t = prepare(src, "source", rules, sigs), prepare(tgt, "target", rules, sigs)
    forced = resolve_pairs(rules, s, t)
    assert (forced[0].source, forced[0].more) == (0, (1,))
    assert forced[2].part == (1, (1, 2)) and forced[1].part == (0, (1, 2))
    assert rule_params(forced[0], s, t, 0) == {
        "fused.weight": ParamPair("fused.weight", ("a.weight", "b.weight"), "concat"),
        "fused.bias": ParamPair("fused.bias", ("a.bias", "b.bias"), "concat")}
    assert rule_params(forced[2], s, t, 2) == {
        "y.weight": ParamPair("y.weight", ("ab.weight",), "slice:4:6"),
        "y.bias": ParamPair("y.bias", ("ab.bias",), "slice:4:6")}
    m = match(src, tgt, rules)
    assert [(x.target, x.source, x.strategy) for x in m.layers] == [
        ("fused", "a", "rule"), ("x", "ab", "rule"), ("y", "ab", "rule")]
    assert not [u for u in m.unmatched if u.side == "source"]      # b feeds fused


def test_a_rule_may_pair_layers_a_graph_pass_held_out(mk):
    import dataclasses
    src = mk.torch_graph([(f"a.{p}.weight", (4, 4)) for p in "qkv"])
    tgt = mk.torch_graph([("b.qkv.weight", (12, 4))])
    held = lambda g: dataclasses.replace(g, layers=tuple(
        dataclasses.replace(l, attrs={**l.attrs, "match_held": "held out (test)"})
        for l in g.layers))
    rules = Rules.from_dict({"pair": [{"target": "b.qkv", "source": ["a.q", "a.k", "a.v"]}]})
    m = match(held(src), held(tgt), rules)
    assert [(x.target, x.strategy) for x in m.layers] == [("b.qkv", "rule")]
    assert m.unmatched == ()
