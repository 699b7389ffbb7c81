"""PReLU: an alpha may have the layer's input shape with 1 on its shared axes (Keras: ``(1, 1,
C)`` with ``shared_axes=[1, 2]``) or be the per-channel vector ``(C,)`` (or ``(1,)``: torch, ONNX).

An alpha with one non-shared axis is the per-channel vector, reshaped; an alpha that varies over
spatial positions has no per-channel counterpart and is refused.
"""
from __future__ import annotations

import math

from ...errors import ConversionError
from ..plan import TensorPlan
from ...transform import Step
from .base import LayerPair
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
        side = pair.source_convention if _varying(src.shape) > 1 else pair.target_convention
        how = side.hint("prelu_shared_axes")
        raise ConversionError(f"PReLU alpha {src.shape} cannot become {tgt.shape}: only one "
                              f"per-channel axis converts (share the spatial axes"
                              f"{', e.g. ' + how if how else ''})", tensor=tgt.name)
    steps = [Step("reshape", {"shape": list(tgt.shape)})] + cast_steps(src, tgt)
    return pair.plan(tgt, "transformed", sources=(src,), steps=steps,
                     notes=(f"prelu alpha {src.shape} -> {tgt.shape}",))


def convert_prelu(pair: LayerPair) -> list[TensorPlan]:
    return [_alpha_plan(pair, p) if p.role == "alpha" else plan_param(pair, p)
            for p in pair.target.params]
