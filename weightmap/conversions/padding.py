"""Warn where two frameworks pad a strided convolution differently: weights cannot fix it.

TF/Keras ``padding="same"`` with a stride above 1 pads asymmetrically (the extra row and column
go bottom/right); torch's ``padding=k//2`` pads both sides equally. The weights port exactly, the
outputs still differ (unless the input size makes the two agree), so the report says so and
never claims exactness that is not there.
"""
from __future__ import annotations

from dataclasses import replace

from ..layouts import spatial_rank
from ..spelling import option
from .base import PlanContext, register_pass


def _strides(attrs) -> tuple[int, ...]:
    s = attrs.get("strides", attrs.get("stride", 1))
    return tuple(s) if isinstance(s, (list, tuple)) else (s,)


def _is_keras_same(fw: str, attrs) -> bool:
    return fw == "keras" and str(attrs.get("padding", "")).lower() == "same"


def _symmetric(fw: str, attrs) -> bool:
    """A torch conv that pads by itself, the same on both sides of each axis."""
    pad = attrs.get("padding")
    return fw == "torch" and pad is not None and not isinstance(pad, str) \
        and any(p != 0 for p in (pad if isinstance(pad, (list, tuple)) else (pad,)))


def _unpadded(fw: str, attrs) -> bool:
    """A torch conv that pads nothing itself: a model matching Keras' 'same' pads before it
    (``F.pad``, ``nn.ZeroPad2d``), which no graph shows."""
    pad = attrs.get("padding")
    return fw == "torch" and pad is not None and not isinstance(pad, str) and not \
        _symmetric(fw, attrs)


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
        elif (_is_keras_same(sf, src.attrs) and _unpadded(tf, tgt.attrs)) or \
                (_unpadded(sf, src.attrs) and _is_keras_same(tf, tgt.attrs)):
            # the torch side pads outside the conv, or not at all: only running it tells
            _note(ctx, index, tgt, "Keras padding='same' with strides "
                  f"{max(_strides(src.attrs), _strides(tgt.attrs))} pads bottom/right; the "
                  "torch conv pads nothing itself: exact when the torch model pads before it "
                  f"(F.pad, nn.ZeroPad2d), as {option('verify', True)} shows")
            continue
        else:
            continue
        ctx.decisions.append(f"{tgt.name}: {what}: weights are exact, outputs may differ "
                             f"(check the target's padding)")
        _note(ctx, index, tgt, "padding differs: " + what)


def _note(ctx: PlanContext, index, layer, note: str) -> None:
    for p in layer.params:
        i = index.get(p.name)
        if i is not None:
            t = ctx.tensors[i]
            ctx.tensors[i] = replace(t, notes=t.notes + (note,))
