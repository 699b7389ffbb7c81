"""Layer conversions, one module per op family, in one table (``CONVERSIONS``): (source op, target
op) -> the conversion of a matched layer pair. A conversion sees canonical layers — each side's
``Convention`` answers for its layouts, gate orders and defaults — and never a framework's name.
``*`` stands for any op; the most specific entry wins, the generic label-driven one is last.

Adding an op: its conversion in a module of its family (or the generic one moves it by its
labels), one line in ``CONVERSIONS``, its axes in ``weightmap/convention.py`` where the kernel
families do not cover it. Passes over the whole plan are listed in ``planning/passes.py``.
"""
from __future__ import annotations

from ...convention import RECURRENT_OPS
from ...errors import ConversionError
from ..plan import TensorPlan
from . import dense, depthwise, generic, norm, prelu, recurrent, recurrent_embedding
from .base import Converter, LayerPair, PlanContext

CONVERSIONS: dict[tuple[str, str], Converter] = {
    # the flatten permutation before the first dense layer; GPT-2 Conv1D kernels (in, out)
    ("dense", "dense"): dense.convert_dense,
    # depthwise kernels by their conventions' patterns, also against a grouped conv
    **{key: depthwise.convert_depthwise for rank in (1, 2)
       for key in ((f"depthwise_conv{rank}d", f"depthwise_conv{rank}d"),
                   (f"depthwise_conv{rank}d", f"conv{rank}d"),
                   (f"conv{rank}d", f"depthwise_conv{rank}d"))},
    # epsilon compensation, missing gamma/beta, momentum
    ("batchnorm", "batchnorm"): norm.convert_batchnorm,
    **{(op, op): norm.convert_input_norm
       for op in ("layernorm", "groupnorm", "instancenorm", "rmsnorm")},
    ("layernorm", "rmsnorm"): norm.convert_norm_kind,
    ("rmsnorm", "layernorm"): norm.convert_norm_kind,
    # gate orders, biases, directions and levels
    **{(op, op): recurrent.convert_layers for op in RECURRENT_OPS},
    ("embedding", "embedding"): recurrent_embedding.convert_embedding,
    ("prelu", "prelu"): prelu.convert_prelu,
    # everything else: moved by its axis labels
    ("*", "*"): generic.convert_generic,
}


def lookup(pair: LayerPair) -> Converter:
    so, to = pair.source.op, pair.target.op
    for key in ((so, to), ("*", to), (so, "*"), ("*", "*")):
        if key in CONVERSIONS:
            return CONVERSIONS[key]
    raise ConversionError(f"no conversion from {so} to {to}")


def convert(pair: LayerPair) -> list[TensorPlan]:
    return lookup(pair)(pair)


__all__ = ["CONVERSIONS", "LayerPair", "PlanContext", "convert", "lookup"]
