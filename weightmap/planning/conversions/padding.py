"""Warn where two frameworks pad a strided convolution differently: weights cannot fix it.

TF/Keras ``padding="same"`` with a stride above 1 pads asymmetrically (the extra row and column
go bottom/right); torch's ``padding=k//2`` pads both sides equally. The weights port exactly, the
outputs still differ (unless the input size makes the two agree), so the report says so and
never claims exactness that is not there.
"""
from __future__ import annotations

from dataclasses import replace

from ...layouts import spatial_rank
from .base import PlanContext, register_pass


def _strides(attrs) -> tuple[int, ...]:
    s = attrs.get("strides", attrs.get("stride", 1))
    return tuple(s) if isinstance(s, (list, tuple)) else (s,)


def _is_keras_same(fw: str, attrs) -> bool:
    return fw == "keras" and str(attrs.get("padding", "")).lower() == "same"


def _symmetric(fw: str, attrs) -> bool:
    pad = attrs.get("padding")
    return fw == "torch" and pad is not None and not isinstance(pad, str)


@register_pass("strided_same_padding")
def warn_strided_same(ctx: PlanContext) -> None:
    index = ctx.index()
    for m in ctx.matching.layers:
        src, tgt = ctx.source_graph.layer(m.source), ctx.target_graph.layer(m.target)
        if spatial_rank(src.op) is None or spatial_rank(tgt.op) is None:
            continue
        sf, tf = ctx.source_graph.framework, ctx.target_graph.framework
        strided = max(_strides(src.attrs) + _strides(tgt.attrs)) > 1
        if not strided:
            continue
        if _is_keras_same(sf, src.attrs) and _symmetric(tf, tgt.attrs):
            what = (f"Keras padding='same' with strides {_strides(src.attrs)} pads "
                    f"asymmetrically; the target pads {tgt.attrs.get('padding')} on both sides")
        elif _symmetric(sf, src.attrs) and _is_keras_same(tf, tgt.attrs):
            what = (f"the source pads {src.attrs.get('padding')} on both sides; Keras "
                    f"padding='same' with strides {_strides(tgt.attrs)} pads asymmetrically")
        else:
            continue
        message = (f"{tgt.name}: {what}: weights are exact, outputs may differ (check the "
                   f"target's padding)")
        ctx.decisions.append(message)
        for p in tgt.params:
            i = index.get(p.name)
            if i is not None:
                t = ctx.tensors[i]
                ctx.tensors[i] = replace(t, notes=t.notes + ("padding differs: " + what,))
