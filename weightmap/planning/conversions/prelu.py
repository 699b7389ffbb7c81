"""PReLU: Keras ``alpha`` has the layer's input shape with 1 on its shared axes (e.g.
``(1, 1, C)`` with ``shared_axes=[1, 2]``); torch and ONNX hold ``(C,)`` (or ``(1,)``).

A Keras alpha with one non-shared axis is the per-channel vector torch holds, reshaped; an alpha
that varies over spatial positions has no torch counterpart and is refused.
"""
from __future__ import annotations

import math

from ...errors import ConversionError
from ..plan import TensorPlan
from ...transform import Step
from .base import LayerPair, register
from .generic import cast_steps, plan_param


def _varying(shape: tuple[int, ...]) -> int:
    return sum(1 for d in shape if d != 1)


def _alpha_plan(pair: LayerPair, tgt) -> TensorPlan:
    (src,) = pair.sources_of(tgt.name) or (None,)
    if src is None:
        return pair.plan(tgt, "new", notes=("no counterpart in the source layer",))
    if src.shape == tgt.shape:
        return plan_param(pair, tgt)
    if math.prod(src.shape) != math.prod(tgt.shape) or _varying(src.shape) > 1 \
            or _varying(tgt.shape) > 1:
        raise ConversionError(f"PReLU alpha {src.shape} cannot become {tgt.shape}: only one "
                              f"per-channel axis converts (share the spatial axes, e.g. Keras "
                              f"shared_axes=[1, 2])", tensor=tgt.name)
    steps = [Step("reshape", {"shape": list(tgt.shape)})] + cast_steps(src, tgt)
    return pair.plan(tgt, "transformed", sources=(src,), steps=steps,
                     notes=(f"prelu alpha {src.shape} -> {tgt.shape}",))


@register("*:prelu", "*:prelu")
def convert_prelu(pair: LayerPair) -> list[TensorPlan]:
    return [_alpha_plan(pair, p) if p.role == "alpha" else plan_param(pair, p)
            for p in pair.target.params]
