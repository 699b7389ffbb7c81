"""The passes, in the order they run: one explicit list each, not import order.

Graph passes run on (source, target) before matching, for facts the readers cannot know alone;
plan passes run on the whole plan after every layer conversion, for conversions that span
layers. A pass that depends on another comes after it, as the notes say.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..graph import ParamGraph
from . import branches, transformer_order
from .conversions import (adapt, fusion, padding, recurrent_stack, separable, transformer_layout,
                          transformer_qkv, transformer_tied)
from .conversions.base import GraphPass, PlanContext, PlanPass


def graph_decisions(ctx: PlanContext) -> None:
    """What the graph passes decided before matching (e.g. a recovered GPT-2 order)."""
    for graph in (ctx.source_graph, ctx.target_graph):
        ctx.decisions.extend(graph.meta.get("decisions", ()))


GRAPH_PASSES: tuple[tuple[str, GraphPass], ...] = (
    # first: later passes see the branch order a reader's data flow gives
    ("branch_order", branches.branch_order_pass),
    # a transformer stored sorted by name, put in execution order; config.json's facts
    ("transformer_order", transformer_order.transformer_order),
    # GPT-2 Conv1D kernels of a state dict without module types: layout open or forced
    ("conv1d_layout", transformer_layout.conv1d_layout),
    # fused q/k/v (or gate/up) layers held out of matching for the fused_qkv plan pass
    ("qkv_hold", transformer_qkv.hold_qkv),
)

PLAN_PASSES: tuple[tuple[str, PlanPass], ...] = (
    ("conv_bn", fusion.conv_bn_pass),               # conv bias into the mean, (un)fusion
    ("graph_decisions", graph_decisions),
    # in this order: q/k/v pairing may decide Conv1D layouts by fit, which the square kernels
    # of the family then follow; tied heads come last
    ("fused_qkv", transformer_qkv.pair_fused_qkv),
    ("conv1d_square_layout", transformer_layout.resolve_square),
    ("tied_head", transformer_tied.tie_heads),
    ("recurrent_stacks", recurrent_stack.pair_stacked_levels),
    ("strided_same_padding", padding.warn_strided_same),
    ("separable_split", separable.pair_separable),
    ("separable_merge", separable.merge_separable),
    ("adapt", adapt.adapt),                         # --adapt: the last pass
)


def prepare_graphs(source: ParamGraph, target: ParamGraph,
                   options: Mapping[str, Any] | None = None) -> tuple[ParamGraph, ParamGraph]:
    """Both graphs after every graph pass."""
    for _name, graph_pass in GRAPH_PASSES:
        source, target = graph_pass(source, target, options or {})
    return source, target


def run_plan_passes(ctx: PlanContext) -> None:
    for _name, plan_pass in PLAN_PASSES:
        plan_pass(ctx)
