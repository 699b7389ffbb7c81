"""The default conversion: move each parameter by its axis labels, copy when nothing changes.

This is what makes dense, conv 1d/2d/3d, conv-transpose, embedding and normalisation parameters
move between torch, Keras and ONNX conventions: the permutation comes from the labels, never from
the rank (a square dense kernel proves shape alone cannot decide).
"""
from __future__ import annotations

from dataclasses import replace

from ...errors import ConversionError
from ...graph import Param
from ..plan import TensorPlan
from ...transform import Step
from .base import LayerPair


def layout_steps(src: Param, tgt: Param) -> tuple[list[Step], list[str]]:
    """Steps that turn ``src`` into ``tgt``'s layout and dtype, with notes for the report."""
    steps: list[Step] = []
    notes: list[str] = []
    if src.axes is not None and tgt.axes is not None and sorted(src.axes) != sorted(tgt.axes) \
            and _unit_free(src) is not None and _unit_free(src) == _unit_free(tgt):
        return _through_unit_axes(src, tgt)
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


def _unit_free(p: Param) -> list[str] | None:
    """The sorted labels of the axes longer than 1 (None when labels are missing or repeat)."""
    if p.axes is None or len(set(p.axes)) != len(p.axes):
        return None
    return sorted(a for a, n in zip(p.axes, p.shape) if n != 1)


def _through_unit_axes(src: Param, tgt: Param) -> tuple[list[Step], list[str]]:
    """Layouts that differ only by axes of size 1 (a dense kernel ⇄ a 1x1 convolution): the
    axes longer than 1 are put in the target's order, then reshaped into its shape."""
    big = [a for a, n in zip(src.axes, src.shape) if n != 1]
    want = [a for a, n in zip(tgt.axes, tgt.shape) if n != 1]
    perm = [src.axes.index(a) for a in want] + [i for i, n in enumerate(src.shape) if n == 1]
    steps = []
    if perm != list(range(len(perm))):
        steps.append(Step("transpose", {"perm": perm}))
    if tuple(src.shape[i] for i in perm) != tuple(tgt.shape):
        steps.append(Step("reshape", {"shape": list(tgt.shape)}))
    note = f"{','.join(src.axes)} -> {','.join(tgt.axes)} (axes of size 1 dropped or added)"
    if not big:
        note = "a single value, reshaped"
    return steps + cast_steps(src, tgt), [note]


def stacked(sources: tuple[Param, ...], tgt: Param) -> tuple[Param, Step]:
    """Several source tensors (q, k, v of a ``pair`` rule) as one stacked on their out axis:
    the parameter they make and the ``concat`` step that makes it."""
    axes = {p.axes for p in sources}
    first = sources[0]
    if len(axes) != 1 or first.axes is None or "out" not in first.axes \
            or len({p.dtype for p in sources}) != 1:
        raise ConversionError(f"{len(sources)} source tensors for one target tensor: they can "
                              f"be stacked on their out axis only with one known layout and "
                              f"dtype (found {', '.join(str(p.axes) for p in sources)})",
                              tensor=tgt.name)
    axis = first.axes.index("out")
    shape = list(first.shape)
    if any(len(p.shape) != len(shape) or any(a != b for i, (a, b) in
                                             enumerate(zip(p.shape, shape)) if i != axis)
           for p in sources):
        raise ConversionError(f"source tensors of shapes {[p.shape for p in sources]} differ "
                              f"beyond their out axis: they cannot be stacked", tensor=tgt.name)
    shape[axis] = sum(p.shape[axis] for p in sources)
    return replace(first, shape=tuple(shape)), Step("concat", {"axis": axis})


def sliced(src: Param, note: str, tgt: Param) -> tuple[Param, Step]:
    """``slice:START:STOP`` (a ``pair`` rule splitting one source among several targets): the
    part of ``src``'s out axis the target takes, and the ``slice`` step that takes it."""
    start, stop = (int(v) for v in note.split(":")[1:])
    if src.axes is None or "out" not in src.axes or stop > src.shape[src.axes.index("out")]:
        raise ConversionError(f"cannot take out {start}:{stop} of {src.name} {src.shape} "
                              f"(axes {src.axes})", tensor=tgt.name)
    axis = src.axes.index("out")
    shape = list(src.shape)
    shape[axis] = stop - start
    return replace(src, shape=tuple(shape)), Step("slice", {"axis": axis, "start": start,
                                                            "stop": stop})


def cast_steps(src: Param, tgt: Param) -> list[Step]:
    return [Step("cast", {"dtype": tgt.dtype})] if src.dtype != tgt.dtype else []


def plan_param(pair: LayerPair, tgt: Param, extra_steps=(), extra_notes=()) -> TensorPlan:
    """Plan one target parameter from its single paired source by labels (or keep it new)."""
    sources = pair.sources_of(tgt.name)
    if not sources:
        return pair.plan(tgt, "new", notes=("no counterpart in the source layer",))
    note = pair.note_of(tgt.name)
    first, steps, notes = sources[0], list(extra_steps), list(extra_notes)
    if len(sources) > 1 and note in ("", "concat") and not extra_steps:
        first, step = stacked(sources, tgt)           # several layers into one fused target
        steps.append(step)
        notes.append(f"stacked from {len(sources)} tensors on the out axis")
    elif len(sources) != 1:
        raise ConversionError(f"{len(sources)} source tensors for one target tensor and no "
                              f"conversion registered for {pair.source_framework}:"
                              f"{pair.source.op} -> {pair.target_framework}:{pair.target.op}",
                              tensor=tgt.name)
    elif note.startswith("slice:"):
        first, step = sliced(first, note, tgt)        # a part of a source split among targets
        steps.append(step)
        notes.append(f"out {note[len('slice:'):]} of {first.name}")
    more_steps, more_notes = layout_steps(first, tgt)
    steps += more_steps
    notes += more_notes
    status = "transformed" if any(s.op != "cast" for s in steps) else "transferred"
    if any(s.op == "cast" for s in steps):
        notes.append(f"dtype {first.dtype} -> {tgt.dtype}")
    return pair.plan(tgt, status, sources=sources, steps=steps, notes=notes)


def convert_generic(pair: LayerPair) -> list[TensorPlan]:
    return [plan_param(pair, p) for p in pair.target.params]
