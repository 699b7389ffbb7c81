"""Both graphs in comparable orders before matching (weightmap/conversions/order.py)."""
from weightmap.conversions.order import comparable_order, in_registration_order
from weightmap.graph import Layer, ParamGraph


def graph(names, order, framework="torch", **meta):
    return ParamGraph("test", framework, f"{order}-graph", tuple(Layer(n, "dense", ())
                                                                 for n in names),
                      order=order, meta=meta)


TRACED = graph(["conv", "down", "head"], "execution",
               registration_order=["conv", "head", "down"])


def names(g):
    return [l.name for l in g.layers]


def test_a_traced_module_against_a_state_dict_goes_back_to_registration_order():
    state_dict = graph(["a", "b", "c"], "stored")
    src, tgt = comparable_order(state_dict, TRACED, {})
    assert src is state_dict and names(tgt) == ["conv", "head", "down"]
    assert tgt.order == "registration"
    (note,) = tgt.meta["decisions"]
    assert note == ("execution-graph: compared in registration order (the order its modules "
                    "are created), as stored-graph is a state dict in that order; its execution "
                    "order differs (e.g. down runs before head)")
    src, tgt = comparable_order(TRACED, state_dict, {})          # either side
    assert names(src) == ["conv", "head", "down"] and tgt is state_dict


def test_traced_order_stays_against_onnx_keras_and_name_sorted_files():
    for other in (graph(["x"], "execution", "onnx"), graph(["x"], "registration", "keras"),
                  graph(["x"], "stored", stored_order="by dtype, then name")):
        assert not in_registration_order(other)
        assert comparable_order(other, TRACED, {})[1] is TRACED
