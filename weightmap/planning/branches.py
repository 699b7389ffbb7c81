"""Both graphs in branch order before matching (``weightmap.reading.dataflow``).

A graph whose reader knew its data flow (``attrs["fed_by"]``: a Keras config, an ONNX graph,
a traced torch forward) is put in ``branch_order``: the order a sequence alignment needs to pair
a residual block's main branch with the main branch and its shortcut with the shortcut, however
each side happened to create, register or run them. Without data flow a graph keeps its order.
Names and tensor data never change; later passes and the planner's "followed by" (a conv and
its BatchNorm) see the new order.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from ..reading.dataflow import branch_order
from ..graph import ParamGraph


def in_branch_order(graph: ParamGraph) -> ParamGraph:
    layers = branch_order(graph.layers)
    if [l.name for l in layers] == [l.name for l in graph.layers]:
        return graph
    return replace(graph, layers=tuple(layers))


def branch_order_pass(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
                      ) -> tuple[ParamGraph, ParamGraph]:
    return in_branch_order(source), in_branch_order(target)
