"""Scores, evidence, reasons and ordering of the assembled Matching (through ``match``)."""
import pytest

from weightmap.errors import MatchError
from weightmap.match import Rules, match
from weightmap.match.assemble import BASE_SCORE, CROSS_PENALTY, WEAK_FACTOR, check_expect
from weightmap.match.result import Matching, Unmatched


def test_scores_by_strategy(mk):
    src = mk.torch_graph([("a.weight", (4, 4)), ("enc.b.weight", (3, 4)), ("c.weight", (2, 3)),
                          ("d.weight", (5, 2))])
    tgt = mk.torch_graph([("a.weight", (4, 4)), ("b.weight", (3, 4)), ("x.weight", (2, 3)),
                          ("y.weight", (5, 2))])
    rules = Rules.from_dict({"pair": [{"target": "y", "source": "d"}]})
    m = match(src, tgt, rules)
    assert [(lm.target, lm.strategy, lm.score) for lm in m.layers] == [
        ("a", "name", BASE_SCORE["exact"]), ("b", "name", BASE_SCORE["suffix"]),
        ("x", "structure", BASE_SCORE["structure"]), ("y", "rule", BASE_SCORE["rule"])]


def test_weak_and_cross_family_pairs_score_lower(mk):
    from weightmap.graph import Layer, Param, ParamGraph

    def opaque(name, shape):
        return Layer(name, "opaque", (Param(f"{name}.t", "other", shape, "float32", None),))
    src = ParamGraph("t", "torch", "s", (opaque("p", (3, 5)),))
    tgt = ParamGraph("t", "onnx", "t", (opaque("q", (5, 3)),))
    lm = match(src, tgt).layers[0]
    assert lm.score == round(BASE_SCORE["structure"] * WEAK_FACTOR, 3)
    assert "shapes equal as sorted dims only (axes unknown)" in lm.evidence
    emb = mk.keras_graph([mk.keras_layer("embedding", "embedding", embeddings=(50, 8))])
    dense = mk.torch_graph([("table.weight", (50, 8))])               # inferred as dense
    lm = match(emb, dense).layers[0]
    assert lm.score == round(BASE_SCORE["structure"] - CROSS_PENALTY, 3)
    assert lm.evidence[0] == "op embedding~dense"


def test_forced_pair_with_other_shapes_says_so(mk):
    src = mk.torch_graph([("head.weight", (1000, 8))])
    tgt = mk.torch_graph([("fc.weight", (10, 8))])
    m = match(src, tgt, Rules.from_dict({"pair": [{"target": "fc", "source": "head"}]}))
    assert m.layers[0].evidence == ("pair rule pair[0]", "op dense==dense",
                                    "forced although shape (10, 8) vs (1000, 8)")
    assert m.unmatched == ()


def test_name_conflict_left_unpaired_is_a_shape_mismatch_with_its_candidate(mk):
    # the same name, other shapes, and no structural partner either: reported as shape
    src = mk.torch_graph([("fc.weight", (1000, 8)), ("extra.weight", (3, 3, 3, 3))])
    tgt = mk.torch_graph([("pre.weight", (8, 8, 1, 1)), ("fc.weight", (10, 8))])
    m = match(src, tgt)
    got = [(u.side, u.layer, u.kind, u.reason, u.candidates) for u in m.unmatched]
    assert ("target", "fc", "shape", "shape (10, 8) vs (1000, 8)", ("fc",)) in got
    assert ("source", "fc", "shape", "shape (1000, 8) vs (10, 8)", ("fc",)) in got


def test_unmatched_lists_target_side_in_target_order_then_source_side(mk):
    src = mk.torch_graph([("s1.weight", (7, 7)), ("a.weight", (4, 4)), ("s2.weight", (9, 9, 1, 1))])
    tgt = mk.torch_graph([("t1.weight", (5, 5, 1, 1)), ("a.weight", (4, 4)), ("t2.weight", (6,)),
                          ("t2.bias", (6,))])
    m = match(src, tgt)
    assert [(u.side, u.layer) for u in m.unmatched] == [
        ("target", "t1"), ("target", "t2"), ("source", "s1"), ("source", "s2")]


def test_ignored_parameters_inside_matched_layers(mk):
    spec = mk.bn_spec("bn", 4)
    rules = Rules.from_dict({"ignore": {"target": ["*.num_batches_tracked"]}})
    m = match(mk.torch_graph(spec), mk.torch_graph(spec), rules)
    assert [p.target for p in m.layers[0].params] == ["bn.weight", "bn.bias", "bn.running_mean",
                                                      "bn.running_var"]
    assert [(u.side, u.params, u.kind) for u in m.unmatched] == [
        ("target", ("bn.num_batches_tracked",), "ignored"),
        ("source", ("bn.num_batches_tracked",), "missing")]


def test_parameter_rules_add_to_the_usual_layer_match(mk):
    src = mk.torch_graph([("a.weight", (4, 4)), ("a.bias", (4,)), ("b.weight", (4,)),
                          ("b.bias", (4,))])
    tgt = mk.torch_graph([("a.weight", (4, 4)), ("a.bias", (4,))])
    rules = Rules.from_dict({"pair": [{"target": "a.bias", "source": "b.bias"}]})
    m = match(src, tgt, rules)
    lm = m.layers[0]
    assert (lm.source, lm.strategy, lm.evidence[:2]) == ("a", "name",
                                                         ("name 'a'", "pair rule pair[0]"))
    assert [(p.target, p.sources) for p in lm.params] == [("a.weight", ("a.weight",)),
                                                          ("a.bias", ("b.bias",))]
    assert [(u.side, u.layer, u.params) for u in m.unmatched] == [
        ("source", "a", ("a.bias",)), ("source", "b", ("b.weight",))]


def test_parameter_rules_alone_pair_the_layer_with_their_source(mk):
    src = mk.torch_graph([("enc.w_packed", (8, 4))])                   # opaque: no role
    tgt = mk.torch_graph([("fc.weight", (4, 8))])
    assert match(src, tgt).layers == ()
    m = match(src, tgt, Rules.from_dict({"pair": [{"target": "fc.weight",
                                                    "source": "enc.w_packed"}]}))
    lm = m.layers[0]
    assert (lm.target, lm.source, lm.strategy) == ("fc", "enc", "rule")
    assert [(p.target, p.sources) for p in lm.params] == [("fc.weight", ("enc.w_packed",))]
    assert m.unmatched == ()


def test_check_expect_counts_layer_matches():
    m = Matching(layers=(), unmatched=(Unmatched("target", "fc", ("fc.w", "fc.b"),
                                                 "no counterpart", "missing"),))
    check_expect(m, Rules.from_dict({"expect": {"matched": 0}}))
    with pytest.raises(MatchError, match="expected at least 1 matched layers .* matched 0"):
        check_expect(m, Rules.from_dict({"expect": {"min_matched": 1}}, origin="r.toml"))
