"""Transformer checkpoints: GPT-2 ``Conv1D`` layouts, fused qkv, tied heads, block order.

The pieces, one module each:

* ``transformer_layout`` — ``Conv1D`` kernels stored (in, out): from the module type, an option,
  or consistency with the non-square kernels of the same family (square ones never by shape);
* ``transformer_order`` — a transformer state dict stored sorted by name is put back in
  execution order before matching (blocks by number, parts by role: ``weightmap.arch``);
* ``transformer_qkv`` — a fused ``c_attn``/``qkv`` projection ⇄ separate q/k/v layers
  (slice / concat along the out axis), a plan pass over the layers the matcher left;
* ``transformer_tied`` — an lm_head the checkpoint does not store takes the token embedding.

This module registers the dense conversion that orients Conv1D-family kernels; every other dense
pair goes to ``dense.convert_dense`` unchanged. LayerNorm epsilon differences are reported by
``norm.py``.
"""
from __future__ import annotations

from dataclasses import replace

from ...graph import Param
from ..plan import Decision, TensorPlan
from .base import LayerPair, PlanContext, register, register_pass
from .dense import convert_dense
from .generic import plan_param
from .transformer_layout import (LAYOUT_FROM, UNDECIDED, Pending, kernel_undecided, orient,
                                 pending, resolve_square, text)
from .transformer_qkv import pair_fused_qkv
from .transformer_tied import tie_heads


def _layout_note(pair: LayerPair) -> list[str]:
    """How a kernel layout known before matching was known (module type or option)."""
    notes = []
    for side, layer in (("source", pair.source), ("target", pair.target)):
        how = layer.attrs.get(LAYOUT_FROM)
        kernel = layer.param("kernel")
        if how and how != UNDECIDED and kernel is not None and kernel.axes:
            notes.append(f"{side} layout ({text(kernel.axes)}) from {how}")
            notes.append(Decision(f"{side} kernels stored ({text(kernel.axes)}): layout "
                                  f"from {how}"))
    return notes


def _kernel_plan(pair: LayerPair, tgt: Param) -> TensorPlan:
    sources = pair.sources_of(tgt.name)
    src_open = bool(sources) and kernel_undecided(pair.source, sources[0])
    tgt_open = kernel_undecided(pair.target, tgt)
    if len(sources) != 1 or not (src_open or tgt_open):
        return plan_param(pair, tgt)
    (src,) = sources
    try:
        steps, notes, fitted = orient(src, tgt, src_open, tgt_open)
    except Pending as side:
        # resolved by the family (resolve_square) once every layer is planned
        return pair.plan(tgt, "new", sources=(src,), **pending(str(side)))
    if src.dtype != tgt.dtype:
        notes.append(f"dtype {src.dtype} -> {tgt.dtype}")
    status = "transformed" if any(s.op != "cast" for s in steps) else "transferred"
    return pair.plan(tgt, status, sources=(src,), steps=steps, notes=notes,
                     fitted_layout=fitted)


def convert_conv1d_dense(pair: LayerPair) -> list[TensorPlan]:
    """Dense pairs where either side is a Conv1D-style layer; others go to ``convert_dense``."""
    if not any(l.attrs.get(LAYOUT_FROM) for l in (pair.source, pair.target)):
        return convert_dense(pair)
    notes = tuple(_layout_note(pair))
    plans = []
    for p in pair.target.params:
        if p.role == "kernel":
            plan = _kernel_plan(pair, p)
            plans.append(replace(plan, notes=plan.notes + notes) if plan.sources else plan)
        else:
            plans.append(plan_param(pair, p))
    return plans


# Conv1D-style layers are torch-side layers (HF models, their state dicts).
register("torch:dense", "*:dense")(convert_conv1d_dense)
register("*:dense", "torch:dense")(convert_conv1d_dense)

@register_pass("graph_decisions")
def graph_decisions(ctx: PlanContext) -> None:
    """What the graph passes decided before matching (e.g. a recovered GPT-2 order)."""
    for graph in (ctx.source_graph, ctx.target_graph):
        ctx.decisions.extend(graph.meta.get("decisions", ()))


# In this order: q/k/v pairing may decide Conv1D layouts by fit, which the square kernels of the
# family then follow; tied heads come last.
register_pass("fused_qkv")(pair_fused_qkv)
register_pass("conv1d_square_layout")(resolve_square)
register_pass("tied_head")(tie_heads)

__all__ = ["convert_conv1d_dense", "graph_decisions"]
