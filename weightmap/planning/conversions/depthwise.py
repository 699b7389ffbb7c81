"""Depthwise convolutions: each convention's depthwise kernel is a rearrangement pattern
(``Convention.depthwise_kernel``), e.g. channels-last ``(kh, kw, C, M)`` and channels-first
``(C·M, 1, kh, kw)``; the steps between two patterns come from ``transform/pattern.py``.

Output channel ``c·M + m`` of the channels-first kernel is input channel ``c``, multiplier ``m``
of the channels-last one, so the conversion is a transpose plus a reshape (CONVERSIONS.md,
"depthwise 2d"). A depthwise layer may meet a plain convolution of its groups on the other side
(a torch ``Conv2d(groups=C)`` read as ``conv2d``): its kernel follows the same pattern.
"""
from __future__ import annotations

from ...convention import spatial_rank
from ...transform.pattern import rearrange
from ..plan import TensorPlan
from .base import LayerPair
from .generic import cast_steps, plan_param

_KERNEL_ROLES = ("kernel", "depthwise_kernel")


def depthwise_steps(pair: LayerPair, src, tgt, rank: int):
    """(steps, note) from the source's depthwise kernel ``src`` to the target's ``tgt``, or None
    when both conventions lay it out alike."""
    sp = pair.source_convention.depthwise_pattern(rank)
    tp = pair.target_convention.depthwise_pattern(rank)
    if sp == tp:
        return None
    steps, sizes = rearrange(sp, tp, src.shape, tgt.shape, where=tgt.name)
    return steps, f"depthwise {sp} -> {tp} (multiplier {sizes['m']})"


def _kernel_plan(pair: LayerPair, tgt, rank: int) -> TensorPlan:
    (src,) = pair.sources_of(tgt.name) or (None,)
    if src is None:
        return pair.plan(tgt, "new", notes=("no counterpart in the source layer",))
    found = depthwise_steps(pair, src, tgt, rank)
    if found is None:
        return plan_param(pair, tgt)
    steps, note = found
    return pair.plan(tgt, "transformed", sources=(src,), steps=steps + cast_steps(src, tgt),
                     notes=(note,))


def convert_depthwise(pair: LayerPair) -> list[TensorPlan]:
    rank = spatial_rank(pair.target.op)
    return [_kernel_plan(pair, p, rank) if p.role in _KERNEL_ROLES and len(p.shape) == rank + 2
            else plan_param(pair, p) for p in pair.target.params]

