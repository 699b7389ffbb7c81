"""Execute a checked plan tensor by tensor: read the source(s), apply the steps, yield the result.

One target tensor is in memory at a time (plus its sources), so peak memory is about the largest
tensor, whatever the checkpoint size.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..dtypes import from_numpy, itemsize, to_numpy
from ..errors import FormatError, PlanError
from ..graph import MappedData, Param, ParamGraph
from ..io.spans import FileSpan
from ..planning.plan import Plan, TensorPlan
from . import Step, apply_steps


# ``census(target name, step, counts)``: told what a step with a census did to a tensor (a
# cast's overflows); ``weightmap.emit.manifest.Census`` records it in the manifest
Census = Callable[[str, Step, Mapping[str, Any]], None]


def produce(plan: Plan, source: ParamGraph, target: ParamGraph, *, skip_new: bool = False,
            census: Census | None = None) -> Iterator[tuple[TensorPlan, np.ndarray]]:
    """``(TensorPlan, array)`` in plan order; ``skip_new`` leaves out the tensors that keep the
    target's value (loading in place has nothing to do for them, and reading them is waste)."""
    src = {p.name: p for p in source.params()}
    tgt = {p.name: p for p in target.params()}
    for t in plan.tensors:
        if skip_new and t.status == "new":
            continue
        yield t, tensor_value(t, src, tgt[t.target], census)


def tensor_value(t: TensorPlan, src: dict[str, Param], tparam: Param,
                 census: Census | None = None) -> np.ndarray:
    if t.status == "new":
        if tparam.data is None:
            raise PlanError("the target has no initial value for this new tensor",
                            tensor=t.target, hint="use a target that carries its own weights")
        arr = np.asarray(tparam.read())
    elif t.status == "synthetic" and not t.sources:
        arr = np.broadcast_to(np.asarray(t.value, dtype=to_numpy(t.dtype)), t.shape).copy()
    else:
        observe = None if census is None else \
            (lambda step, counts: census(t.target, step, counts))
        arr = apply_steps(t.steps, [np.asarray(src[s].read()) for s in t.sources],
                          observe=observe)
    return _checked(t, arr)


def tensor_view(t: TensorPlan, src: dict[str, Param], tparam: Param,
                census: Census | None = None) -> np.ndarray:
    """``tensor_value``, except that a chain of transposes gives a strided view of the (mapped)
    source: a writer copies it into place once instead of materialising it first."""
    if t.status in ("new", "synthetic") or len(t.sources) != 1 or not t.steps \
            or any(step.op != "transpose" for step in t.steps):
        return tensor_value(t, src, tparam, census)
    arr = np.asarray(src[t.sources[0]].read())
    for step in t.steps:
        arr = np.transpose(arr, step.args["perm"])
    return _checked(t, arr)


def _checked(t: TensorPlan, arr: np.ndarray) -> np.ndarray:
    if tuple(arr.shape) != tuple(t.shape):
        raise PlanError(f"computed shape {tuple(arr.shape)}, the target needs {t.shape}",
                        tensor=t.target)
    if from_numpy(arr.dtype) != t.dtype:
        raise PlanError(f"computed dtype {from_numpy(arr.dtype)}, the target needs {t.dtype}",
                        tensor=t.target, hint="add a cast step to the plan")
    return arr


# ---- streaming for writers: raw file spans, independent jobs, progress -----------------------

def raw_span(t: TensorPlan, src: dict[str, Param]) -> FileSpan | None:
    """The source bytes of ``t`` when it is an untransformed copy of a memory-mappable tensor."""
    if t.status != "transferred" or t.steps or len(t.sources) != 1 or sys.byteorder != "little":
        return None
    data = src[t.sources[0]].data
    if not isinstance(data, MappedData) or data.fortran_order or data.dtype != t.dtype \
            or tuple(data.shape) != tuple(t.shape):
        return None
    try:
        need = data.stored_nbytes()
    except (FormatError, OSError):
        return None                      # let read() say what is wrong
    return FileSpan(data.path, data.offset, need) if need else None


@dataclass(frozen=True)
class FileSpans:
    """A target tensor that is the stored bytes of several source tensors one after another:
    a concatenation along the first axis of C-ordered tensors (a fused ``qkv`` or ``gate_up``
    projection). A writer copies it file to file part by part, as a :class:`FileSpan`,
    without computing the concatenation in memory."""

    parts: tuple[FileSpan, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def pieces(self, start: int = 0, length: int | None = None) -> Iterator[FileSpan]:
        """Bytes ``start`` .. ``start + length`` of the whole, as spans of the parts, in
        order."""
        end = self.nbytes if length is None else start + length
        at = 0
        for p in self.parts:
            a, b = max(start, at), min(end, at + p.nbytes)
            if b > a:
                yield FileSpan(p.path, p.offset + a - at, b - a)
            at += p.nbytes

    def read(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """The tensor as an array (for writers that need one)."""
        out = np.empty(self.nbytes, dtype=np.uint8)
        at = 0
        for p in self.parts:
            out[at:at + p.nbytes] = np.asarray(MappedData(p.path, p.offset, (p.nbytes,), "uint8",
                                                          span=p.nbytes).read())
            at += p.nbytes
        return out.view(to_numpy(dtype)).reshape(shape)


def raw_spans(t: TensorPlan, src: dict[str, Param]) -> FileSpans | None:
    """The source bytes of ``t``, part by part, when it is only a concatenation along the
    first axis of memory-mappable tensors of its dtype (the bytes of the sources one after
    another)."""
    if t.status == "new" or len(t.steps) != 1 or t.steps[0].op != "concat" \
            or len(t.sources) < 2 or not t.shape or sys.byteorder != "little":
        return None
    if t.steps[0].args.get("axis") not in (0, -len(t.shape)):
        return None
    parts = []
    for name in t.sources:
        data = src[name].data
        if not isinstance(data, MappedData) or data.fortran_order or data.dtype != t.dtype \
                or tuple(data.shape[1:]) != tuple(t.shape[1:]):
            return None
        try:
            parts.append(FileSpan(data.path, data.offset, data.stored_nbytes()))
        except (FormatError, OSError):
            return None                  # let read() say what is wrong
    if sum(src[name].data.shape[0] for name in t.sources) != t.shape[0]:
        return None
    return FileSpans(tuple(parts))


def _checked_span(span: FileSpan | FileSpans, *checks: Callable[[], None] | None
                  ) -> FileSpan | FileSpans:
    for check in checks:
        if check is not None:
            check()
    return span


@dataclass(frozen=True)
class Job:
    """One target tensor to write: ``compute()`` gives its array, its :class:`FileSpan`
    (known beforehand as ``span``, so a writer can lay out its file for it) or its
    :class:`FileSpans`. Jobs are independent of each other, so a writer may run them on several
    threads."""

    tensor: TensorPlan
    compute: Callable[[], "np.ndarray | FileSpan | FileSpans"]
    span: FileSpan | None = None


class TensorStream:
    """The executed plan as writers receive it.

    Calling it yields ``(TensorPlan, array)`` in plan order, one tensor in memory at a time (the
    protocol every writer understands). Writers that can do better use :meth:`jobs` (independent
    per-tensor jobs; untransformed memory-mapped tensors as :class:`FileSpan`, transposed ones as
    strided views of the mapped source) and report each written tensor with :meth:`advance`.
    ``progress`` (``weightmap.emit.progress``) sees tensors and bytes done; ``census`` what the
    steps report (see ``Census``).
    """

    def __init__(self, plan: Plan, source: ParamGraph, target: ParamGraph,
                 progress: Any = None, census: Census | None = None) -> None:
        self.plan, self.source, self.target = plan, source, target
        self.progress, self.census = progress, census

    def __call__(self) -> Iterator[tuple[TensorPlan, np.ndarray]]:
        for t, arr in produce(self.plan, self.source, self.target, census=self.census):
            yield t, arr
            self.advance(t)

    def jobs(self) -> list[Job]:
        src = {p.name: p for p in self.source.params()}
        tgt = {p.name: p for p in self.target.params()}
        out = []
        for t in self.plan.tensors:
            span = raw_span(t, src)
            spans = None if span is not None else raw_spans(t, src)
            if span is not None or spans is not None:
                # the sources' checks (a torch zip's CRC-32) run on the writer's thread
                checks = [src[s].data.check for s in t.sources]
                out.append(Job(t, lambda value=span or spans, checks=checks:
                               _checked_span(value, *checks), span))
            else:
                out.append(Job(t, lambda t=t: tensor_view(t, src, tgt[t.target],
                                                          self.census)))
        return out

    def advance(self, t: TensorPlan) -> None:
        if self.progress is not None:
            self.progress.advance(tensor_nbytes(t))


def tensor_nbytes(t: TensorPlan) -> int:
    return math.prod(t.shape) * itemsize(t.dtype)
