"""Separable convolutions: one separable layer (Keras ``SeparableConv{1,2}D``: depthwise kernel,
pointwise kernel, bias) against two layers (torch, ONNX: a depthwise conv without bias, then a
1x1 conv). The depthwise kernels convert by their conventions' patterns (``depthwise.py``), the
pointwise ones by their labels.

The matcher pairs layers one to one, so these stay unmatched; this pass pairs them after the
layer conversions, in order: a still-unused source separable layer with the first still-new
depthwise + pointwise pair of the target whose shapes fit, and a still-new target separable layer
with the first unused source pair (a source depthwise conv with a bias is not merged: its bias
would have to be folded through the pointwise kernel; it is left to a decision).
"""
from __future__ import annotations

from ...errors import ConversionError
from ...graph import Layer, Param
from ..plan import TensorPlan
from ... import registry
from ...convention import SPATIAL
from ...transform.pattern import rearrange
from .base import PlanContext
from .generic import cast_steps, layout_steps

_MATCH = {"strategy": "separable", "score": 0.7}


def _plan(tgt_layer: Layer, tparam: Param, status: str, sources=(), steps=(), notes=(),
          source_layer: str = "", value=None) -> TensorPlan:
    return TensorPlan(target=tparam.name, layer=tgt_layer.name, shape=tparam.shape,
                      dtype=tparam.dtype, status=status, sources=tuple(p.name for p in sources),
                      steps=tuple(steps), notes=tuple(notes), value=value,
                      match={**_MATCH, "source_layer": source_layer})


def _kernel(layer: Layer) -> Param | None:
    return layer.param("kernel")


def _is_pointwise(layer: Layer) -> bool:
    k = _kernel(layer)
    return layer.op in ("conv1d", "conv2d") and k is not None and k.axes is not None and \
        all(k.shape[k.axes.index(a)] == 1 for a in k.axes if a not in ("out", "in"))


def _fit(ctx: PlanContext, dk: Param | None, tdk: Param | None, pk: Param | None,
         tpk: Param | None):
    """``(depthwise steps, "PATTERN -> PATTERN", pointwise steps, pointwise notes)`` when the
    source depthwise kernel ``dk`` fits the target's ``tdk`` as the two conventions lay them out
    and the pointwise kernels convert by their labels; else None."""
    if None in (dk, pk, tdk, tpk) or len(dk.shape) - 2 not in SPATIAL:
        return None
    rank = len(dk.shape) - 2
    sp = registry.convention(ctx.source_graph.framework).depthwise_pattern(rank)
    tp = registry.convention(ctx.target_graph.framework).depthwise_pattern(rank)
    try:
        dk_steps, _ = rearrange(sp, tp, dk.shape, tdk.shape, where=tdk.name)
        pk_steps, pk_notes = layout_steps(pk, tpk)
    except ConversionError:
        return None
    return dk_steps, f"{sp} -> {tp}", pk_steps, pk_notes


def _split(ctx: PlanContext, sep: Layer, dw: Layer, pw: Layer) -> list[TensorPlan] | None:
    """Plans for a target (depthwise, pointwise) pair from a source separable layer, or None."""
    dk, pk, bias = sep.param("depthwise_kernel"), sep.param("pointwise_kernel"), sep.param("bias")
    tdk, tpk = _kernel(dw), _kernel(pw)
    fit = _fit(ctx, dk, tdk, pk, tpk)
    if fit is None:
        return None
    dk_steps, how, pk_steps, pk_notes = fit
    out = [_plan(dw, tdk, "transformed", (dk,), dk_steps + cast_steps(dk, tdk),
                 (f"separable {sep.name}: depthwise {how}",), sep.name),
           _plan(pw, tpk, "transformed", (pk,), pk_steps,
                 (f"separable {sep.name}: pointwise",) + tuple(pk_notes), sep.name)]
    for layer in (dw, pw):
        tb = layer.param("bias")
        if tb is None:
            continue
        if layer is pw and bias is not None and bias.shape == tb.shape:
            out.append(_plan(pw, tb, "transferred" if bias.dtype == tb.dtype else "transformed",
                             (bias,), cast_steps(bias, tb), (), sep.name))
        else:
            out.append(_plan(layer, tb, "synthetic", value=0.0, source_layer=sep.name,
                             notes=("separable layers have no bias here: zeros (exact)",)))
    return out


def _all_new(ctx: PlanContext, layer: Layer, index: dict[str, int]) -> bool:
    return bool(layer.params) and all(ctx.tensors[index[p.name]].status == "new"
                                      for p in layer.params if p.name in index)


def pair_separable(ctx: PlanContext) -> None:
    used = {s for t in ctx.tensors for s in t.sources}
    seps = [l for l in ctx.source_graph.layers if l.op.startswith("separable_conv")
            and not any(p.name in used for p in l.params)]
    if not seps:
        return
    index = ctx.index()
    _pair_each(ctx, seps, ctx.target_graph.layers,
               lambda dw, pw: _all_new(ctx, dw, index) and _all_new(ctx, pw, index),
               lambda sep, dw, pw: _split(ctx, sep, dw, pw),
               lambda sep, dw, pw: f"{sep.name} (separable) split into {dw.name} (depthwise) "
                                   f"+ {pw.name} (pointwise)")


def _pair_each(ctx: PlanContext, singles, layers, free, build, say) -> None:
    """For each single layer in order, the first free (depthwise, pointwise) pair of ``layers``
    that ``build(single, dw, pw)`` can plan: its plans replace the new ones; a decision says so."""
    index = ctx.index()
    taken: set[str] = set()
    for single in singles:
        for dw, pw in zip(layers, layers[1:]):
            if dw.name in taken or not dw.op.startswith("depthwise_conv") or \
                    not _is_pointwise(pw) or not free(dw, pw):
                continue
            plans = build(single, dw, pw)
            if plans is None:
                continue
            for t in plans:
                ctx.tensors[index[t.target]] = t
            taken.update((dw.name, pw.name))
            ctx.decisions.append(say(single, dw, pw))
            break


def _merge(ctx: PlanContext, dw: Layer, pw: Layer, sep: Layer) -> list[TensorPlan] | None:
    """Plans for a target separable layer from a source (depthwise, pointwise) pair, or None."""
    dk, pk, bias = _kernel(dw), _kernel(pw), pw.param("bias")
    tdk, tpk, tb = sep.param("depthwise_kernel"), sep.param("pointwise_kernel"), sep.param("bias")
    fit = _fit(ctx, dk, tdk, pk, tpk) if dw.param("bias") is None else None
    if fit is None:
        return None
    dk_steps, how, pk_steps, pk_notes = fit
    source = f"{dw.name}+{pw.name}"
    out = [_plan(sep, tdk, "transformed", (dk,), dk_steps + cast_steps(dk, tdk),
                 (f"depthwise {dw.name}: {how}",), source),
           _plan(sep, tpk, "transformed", (pk,), pk_steps,
                 (f"pointwise {pw.name}",) + tuple(pk_notes), source)]
    if tb is not None:
        if bias is None:
            out.append(_plan(sep, tb, "synthetic", value=0.0, source_layer=source,
                             notes=("the pointwise conv has no bias: zeros (exact)",)))
        elif bias.shape == tb.shape:
            out.append(_plan(sep, tb, "transferred" if bias.dtype == tb.dtype else "transformed",
                             (bias,), cast_steps(bias, tb), (), source))
        else:
            return None
    return out


def merge_separable(ctx: PlanContext) -> None:
    index = ctx.index()
    targets = [l for l in ctx.target_graph.layers if l.op.startswith("separable_conv")
               and _all_new(ctx, l, index)]
    if not targets:
        return
    used = {s for t in ctx.tensors for s in t.sources}
    _pair_each(ctx, targets, ctx.source_graph.layers,
               lambda dw, pw: not any(p.name in used for p in dw.params + pw.params),
               lambda sep, dw, pw: _merge(ctx, dw, pw, sep),
               lambda sep, dw, pw: f"{dw.name} (depthwise) + {pw.name} (pointwise) merged into "
                                   f"{sep.name} (separable)")
