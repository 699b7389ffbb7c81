"""The branch-order graph pass: only graphs that know their data flow move; names and data stay."""
import numpy as np

from weightmap.planning.passes import prepare_graphs
from weightmap.planning.branches import in_branch_order
from weightmap.graph import ArrayData, Layer, Param, ParamGraph


def _layer(name, feeds=None):
    p = Param(f"{name}.weight", "kernel", (2, 2), "float32", ("out", "in"),
              ArrayData(np.full((2, 2), len(name), np.float32)))
    return Layer(name, "dense", (p,), {} if feeds is None else {"fed_by": tuple(feeds)})


def test_a_graph_with_data_flow_is_put_in_branch_order():
    g = ParamGraph("arrays", "keras", "g", (_layer("a", []), _layer("short", ["a"]),
                                            _layer("m1", ["a"]), _layer("m2", ["m1"]),
                                            _layer("out", ["m2", "short"])), order="config")
    moved = in_branch_order(g)
    assert [l.name for l in moved.layers] == ["a", "m1", "m2", "short", "out"]
    assert moved.order == "config" and moved.source == g.source
    assert {p.name: p.read().tolist() for p in moved.params()} == \
        {p.name: p.read().tolist() for p in g.params()}


def test_graphs_without_data_flow_are_left_as_they_are():
    g = ParamGraph("arrays", "torch", "g", (_layer("b"), _layer("a")))
    assert in_branch_order(g) is g
    src, tgt = prepare_graphs(g, g)
    assert [l.name for l in src.layers] == ["b", "a"] == [l.name for l in tgt.layers]
