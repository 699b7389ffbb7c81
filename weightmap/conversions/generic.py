"""The default conversion: move each parameter by its axis labels, copy when nothing changes.

This is what makes dense, conv 1d/2d/3d, conv-transpose, embedding and normalisation parameters
move between torch, Keras and ONNX conventions: the permutation comes from the labels, never from
the rank (a square dense kernel proves shape alone cannot decide).
"""
from __future__ import annotations

from ..errors import ConversionError
from ..graph import Param
from ..plans import TensorPlan
from ..transforms import Step
from .base import LayerPair, register


def layout_steps(src: Param, tgt: Param) -> tuple[list[Step], list[str]]:
    """Steps that turn ``src`` into ``tgt``'s layout and dtype, with notes for the report."""
    steps: list[Step] = []
    notes: list[str] = []
    if src.axes is not None and tgt.axes is not None and sorted(src.axes) == sorted(tgt.axes) \
            and len(set(src.axes)) == len(src.axes):
        perm = [src.axes.index(label) for label in tgt.axes]
        moved = tuple(src.shape[i] for i in perm)
        if moved != tgt.shape:
            raise ConversionError(f"shape {src.shape} ({','.join(src.axes)}) becomes {moved} "
                                  f"in the target layout, the target needs {tgt.shape}",
                                  tensor=tgt.name)
        if perm != list(range(len(perm))):
            steps.append(Step("transpose", {"perm": perm}))
            notes.append(f"{','.join(src.axes)} -> {','.join(tgt.axes)}")
    elif src.shape == tgt.shape:
        if src.axes != tgt.axes and (src.axes is None or tgt.axes is None):
            notes.append("layout unknown on one side; copied as stored")
    else:
        raise ConversionError(f"shape {src.shape} vs {tgt.shape} and the axis labels "
                              f"({src.axes} vs {tgt.axes}) give no way between them",
                              tensor=tgt.name)
    steps.extend(cast_steps(src, tgt))
    return steps, notes


def cast_steps(src: Param, tgt: Param) -> list[Step]:
    return [Step("cast", {"dtype": tgt.dtype})] if src.dtype != tgt.dtype else []


def plan_param(pair: LayerPair, tgt: Param, extra_steps=(), extra_notes=()) -> TensorPlan:
    """Plan one target parameter from its single paired source by labels (or keep it new)."""
    sources = pair.sources_of(tgt.name)
    if not sources:
        return pair.plan(tgt, "new", notes=("no counterpart in the source layer",))
    if len(sources) != 1:
        raise ConversionError(f"{len(sources)} source tensors for one target tensor and no "
                              f"conversion registered for {pair.source_framework}:"
                              f"{pair.source.op} -> {pair.target_framework}:{pair.target.op}",
                              tensor=tgt.name)
    steps = list(extra_steps)
    notes = list(extra_notes)
    more_steps, more_notes = layout_steps(sources[0], tgt)
    steps += more_steps
    notes += more_notes
    status = "transformed" if any(s.op != "cast" for s in steps) else "transferred"
    if any(s.op == "cast" for s in steps):
        notes.append(f"dtype {sources[0].dtype} -> {tgt.dtype}")
    return pair.plan(tgt, status, sources=sources, steps=steps, notes=notes)


@register("*:*", "*:*")
def convert_generic(pair: LayerPair) -> list[TensorPlan]:
    return [plan_param(pair, p) for p in pair.target.params]
