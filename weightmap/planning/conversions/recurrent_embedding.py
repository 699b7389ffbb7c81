"""Embeddings: ``(vocab, dim)`` in torch, Keras and ONNX (``Gather`` data) alike — no transform.

The tensor is copied as is; what differs is how the layer treats some rows, which weights cannot
change, so it is reported:

* torch ``padding_idx``: the row is copied like any other (torch only keeps its gradient at zero;
  nothing re-zeroes it);
* Keras ``mask_zero=True``: index 0 masks the step, and recurrent layers after it skip masked
  steps; a torch model does not (it needs packed sequences), so outputs differ on padded input —
  a decision for the user;
* torch ``max_norm``: rows are renormalised at lookup time.
"""
from __future__ import annotations

from dataclasses import replace

from ...graph import Layer
from ..plan import Decision, TensorPlan
from .base import LayerPair, register
from .generic import plan_param


def _notes(layer: Layer, framework: str, side: str, other: str) -> list[str]:
    a, out = layer.attrs, []
    if a.get("padding_idx") is not None:
        i = a["padding_idx"]
        if side == "target":
            out.append(f"padding_idx={i}: row {i} copied from the source as is (torch keeps its "
                       f"gradient at zero, it is not re-zeroed)")
        elif other != "torch":
            out.append(f"the source's padding_idx={i} has no {other} counterpart; row {i} "
                       f"copied as is")
    if a.get("max_norm") is not None:
        out.append(f"{side} max_norm={a['max_norm']}: torch renormalises rows at lookup")
    if a.get("mask_zero") and other != "keras":
        out.append(Decision(
            f"{layer.name}: the Keras {side} has mask_zero=True: its recurrent layers skip "
            f"steps with index 0, the {other} model does not; outputs differ on padded input "
            f"(use packed sequences or an explicit mask)"))
    return out


@register("*:embedding", "*:embedding")
def convert_embedding(pair: LayerPair) -> list[TensorPlan]:
    notes = _notes(pair.source, pair.source_framework, "source", pair.target_framework) + \
        _notes(pair.target, pair.target_framework, "target", pair.source_framework)
    out = []
    for p in pair.target.params:
        plan = plan_param(pair, p)
        if plan.status != "new" and notes:
            plan = replace(plan, notes=plan.notes + tuple(notes))
        out.append(plan)
    return out
