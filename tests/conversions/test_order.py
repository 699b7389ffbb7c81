"""Which order of a traced torch module to match in against a state dict
(weightmap/match/order.py); the choice itself is api._match, tested end to end in
tests/e2e/test_load_partial.py and test_exact_llama.py."""
from weightmap.match.order import in_registration_order, paired, registered, registration_variant
from weightmap.graph import Layer, ParamGraph
from weightmap.match.result import LayerMatch, Matching, ParamPair


def graph(names, order, framework="torch", **meta):
    return ParamGraph("test", framework, f"{order}-graph", tuple(Layer(n, "dense", ())
                                                                 for n in names),
                      order=order, meta=meta)


TRACED = graph(["conv", "down", "head"], "execution",
               registration_order=["conv", "head", "down"])


def names(g):
    return [l.name for l in g.layers]


def test_against_a_state_dict_the_variant_is_the_traced_module_in_registration_order():
    state_dict = graph(["a", "b", "c"], "stored")
    src, tgt = registration_variant(state_dict, TRACED)
    assert src is state_dict and names(tgt) == ["conv", "head", "down"]
    assert tgt.order == "registration"
    (note,) = tgt.meta["decisions"]
    assert note == ("execution-graph: matched in registration order (the order its modules are "
                    "created), which pairs more with stored-graph, a state dict in that order, "
                    "than its execution order (e.g. down runs before head)")
    src, tgt = registration_variant(TRACED, state_dict)                  # either side
    assert names(src) == ["conv", "head", "down"] and tgt is state_dict


def test_no_variant_against_onnx_keras_name_sorted_files_or_when_the_orders_agree():
    for other in (graph(["x"], "execution", "onnx"), graph(["x"], "registration", "keras"),
                  graph(["x"], "stored", stored_order="by dtype, then name"),
                  graph(["x"], "stored", order_from="names (transformer roles)")):
        assert not in_registration_order(other)
        assert registration_variant(other, TRACED) is None
    same = graph(["a", "b"], "execution")                   # no registration_order kept
    assert registered(same, TRACED) is same
    assert registration_variant(graph(["x"], "stored"), same) is None


def test_paired_counts_target_tensors_with_a_source():
    m = Matching(layers=(LayerMatch("t", "s", "structure", 0.8, (), (
        ParamPair("t.w", ("s.w",)), ParamPair("t.b", (), "zeros"))),), unmatched=())
    assert paired(m) == 1
