"""Depthwise convolutions: Keras ``(kh, kw, C, M)`` ⇄ torch/ONNX ``(C·M, 1, kh, kw)``.

Output channel ``c·M + m`` in torch is input channel ``c``, multiplier ``m`` in Keras, so the
conversion is a transpose plus a reshape (CONVERSIONS.md, "depthwise 2d").
"""
from __future__ import annotations

from ...errors import ConversionError
from ..plan import TensorPlan
from ...transform import Step
from .base import LayerPair, register
from .generic import cast_steps, plan_param

_KERNEL_ROLES = ("kernel", "depthwise_kernel")


def _kernel_plan(pair: LayerPair, tgt, to_torch: bool) -> TensorPlan:
    (src,) = pair.sources_of(tgt.name) or (None,)
    if src is None:
        return pair.plan(tgt, "new", notes=("no counterpart in the source layer",))
    if to_torch:                      # (kh, kw, C, M) -> (C*M, 1, kh, kw)
        kh, kw, c, m = src.shape
        steps = [Step("transpose", {"perm": [2, 3, 0, 1]}),
                 Step("reshape", {"shape": [c * m, 1, kh, kw]})]
        note = f"depthwise kh,kw,c,m -> (c*m),1,kh,kw (multiplier {m})"
    else:                             # (C*M, 1, kh, kw) -> (kh, kw, C, M)
        cm, one, kh, kw = src.shape
        c, m = tgt.shape[2], tgt.shape[3]
        if one != 1 or c * m != cm:
            raise ConversionError(f"depthwise kernel {src.shape} does not fit {tgt.shape}",
                                  tensor=tgt.name)
        steps = [Step("reshape", {"shape": [c, m, kh, kw]}),
                 Step("transpose", {"perm": [2, 3, 0, 1]})]
        note = f"depthwise (c*m),1,kh,kw -> kh,kw,c,m (multiplier {m})"
    return pair.plan(tgt, "transformed", sources=(src,), steps=steps + cast_steps(src, tgt),
                     notes=(note,))


def _convert(pair: LayerPair, to_torch: bool) -> list[TensorPlan]:
    return [_kernel_plan(pair, p, to_torch) if p.role in _KERNEL_ROLES and len(p.shape) == 4
            else plan_param(pair, p) for p in pair.target.params]


for _cf in ("torch", "onnx"):
    for _op in ("depthwise_conv2d", "conv2d"):
        register("keras:depthwise_conv2d", f"{_cf}:{_op}")(lambda p: _convert(p, True))
        register(f"{_cf}:{_op}", "keras:depthwise_conv2d")(lambda p: _convert(p, False))
