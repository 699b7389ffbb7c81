"""Warn where two conventions pad a strided convolution differently: weights cannot fix it.

TF's SAME padding (``Convention.padding`` says ``same``: Keras ``padding="same"``) with a
stride above 1 pads asymmetrically (the extra row and column go bottom/right); an explicit
``padding=k//2`` (``symmetric``: torch) pads both sides equally; a conv that pads nothing
itself (``none``: torch ``padding=0``) matches SAME only when the model pads before it. The weights port exactly, the
outputs still differ (unless the input size makes the two agree), so the report says so and
never claims exactness that is not there.
"""
from __future__ import annotations

from dataclasses import replace

from ... import registry
from ...convention import spatial_rank
from ...spelling import option
from .base import PlanContext


def _strides(attrs) -> tuple[int, ...]:
    s = attrs.get("strides", attrs.get("stride", 1))
    return tuple(s) if isinstance(s, (list, tuple)) else (s,)


def warn_strided_same(ctx: PlanContext) -> None:
    index = ctx.index()
    sc = registry.convention(ctx.source_graph.framework)
    tc = registry.convention(ctx.target_graph.framework)
    for m in ctx.matching.layers:
        src, tgt = ctx.source_graph.layer(m.source), ctx.target_graph.layer(m.target)
        if spatial_rank(src.op) is None or spatial_rank(tgt.op) is None:
            continue
        strided = max(_strides(src.attrs) + _strides(tgt.attrs)) > 1
        if not strided:
            continue
        kinds = (sc.padding(src.attrs), tc.padding(tgt.attrs))
        if kinds == ("same", "symmetric"):
            what = (f"{sc.display} padding='same' with strides {_strides(src.attrs)} pads "
                    f"asymmetrically; the target pads {tgt.attrs.get('padding')} on both sides")
        elif kinds == ("symmetric", "same"):
            what = (f"the source pads {src.attrs.get('padding')} on both sides; {tc.display} "
                    f"padding='same' with strides {_strides(tgt.attrs)} pads asymmetrically")
        elif kinds in (("same", "none"), ("none", "same")):
            # the unpadded side pads outside the conv, or not at all: only running it tells
            same, none = (sc, tc) if kinds[0] == "same" else (tc, sc)
            _note(ctx, index, tgt, f"{same.display} padding='same' with strides "
                  f"{max(_strides(src.attrs), _strides(tgt.attrs))} pads bottom/right; the "
                  f"{none.display} conv pads nothing itself: exact when the {none.display} model "
                  f"pads before it ({none.hint('pad_before', 'a padding layer')}), as "
                  f"{option('verify', True)} shows")
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
