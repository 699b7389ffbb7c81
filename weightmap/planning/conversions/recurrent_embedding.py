"""Embeddings: ``(vocab, dim)`` in every built-in convention (an ONNX ``Gather``'s data too) —
no transform.

The tensor is copied as is; what differs is how the layer treats some rows, which weights cannot
change, so it is reported (``Convention.padding_idx`` / ``mask_zero`` say who has which):

* ``padding_idx`` (torch): the row is copied like any other (torch only keeps its gradient at
  zero; nothing re-zeroes it);
* ``mask_zero=True`` (Keras): index 0 masks the step, and recurrent layers after it skip masked
  steps; a model without it does not (it needs packed sequences), so outputs differ on padded
  input — a decision for the user;
* ``max_norm``: rows are renormalised at lookup time.
"""
from __future__ import annotations

from dataclasses import replace

from ...convention import Convention
from ...graph import Layer
from ..plan import Decision, TensorPlan
from .base import LayerPair
from .generic import plan_param


def _notes(layer: Layer, conv: Convention, side: str, other: Convention) -> list[str]:
    a, out = layer.attrs, []
    if a.get("padding_idx") is not None:
        i = a["padding_idx"]
        if side == "target":
            out.append(f"padding_idx={i}: row {i} copied from the source as is ({conv.display} "
                       f"keeps its gradient at zero, it is not re-zeroed)")
        elif not other.padding_idx:
            out.append(f"the source's padding_idx={i} has no {other.name} counterpart; row {i} "
                       f"copied as is")
    if a.get("max_norm") is not None:
        out.append(f"{side} max_norm={a['max_norm']}: {conv.display} renormalises rows at "
                   f"lookup")
    if a.get("mask_zero") and not other.mask_zero:
        out.append(Decision(
            f"{layer.name}: the {conv.display} {side} has mask_zero=True: its recurrent layers "
            f"skip steps with index 0, the {other.name} model does not; outputs differ on "
            f"padded input (use packed sequences or an explicit mask)"))
    return out


def convert_embedding(pair: LayerPair) -> list[TensorPlan]:
    sc, tc = pair.source_convention, pair.target_convention
    notes = _notes(pair.source, sc, "source", tc) + _notes(pair.target, tc, "target", sc)
    out = []
    for p in pair.target.params:
        plan = plan_param(pair, p)
        if plan.status != "new" and notes:
            plan = replace(plan, notes=plan.notes + tuple(notes))
        out.append(plan)
    return out
