"""The plan: for every target tensor, its source tensor(s) and transform chain. JSON, editable.

A plan is data. ``Plan.check`` evaluates every shape contract against the two graphs before a
byte is written; ``weightmap port --plan F`` applies a (possibly edited) plan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from ..dtypes import DTYPES
from ..errors import PlanError, UsageError
from ..graph import ParamGraph
from ..transform import Step, check_steps
from ..transform.steps import finite_number

PLAN_VERSION = 1

# transferred: copied as is; transformed: computed from source tensor(s) by steps;
# new: keeps the target's own value; synthetic: made up so that the port is exact (flagged);
# partial: only part of the tensor comes from the source; adapted: made to fit a target of
# another size on request (--adapt: resampled position embeddings, a stem for other channels).
STATUSES = ("transferred", "transformed", "new", "synthetic", "partial", "adapted")
# A tensor has a value from the source: every status but new and synthetic (made up).
FROM_SOURCE = ("transferred", "transformed", "partial", "adapted")
# How a new tensor's note begins when a rule ignores it, when its layer's counterpart has other
# shapes, or when its layer's conversion was refused (what a plan file says; in memory the
# tensor's ``reason`` says it).
IGNORED = "ignored by rule"
SHAPE_MISMATCH = "shape mismatch with"
CONVERSION_FAILED = "conversion failed"
DECISION = "decision: "


class Reason(Enum):
    """Why a tensor has its status, where that is more than the status says. Code steers on
    this; the notes say it to people."""

    NO_COUNTERPART = "no counterpart"          # new: nothing in the source pairs with it
    IGNORED = "ignored"                        # new: a rule ignores it
    SHAPE_MISMATCH = "shape mismatch"          # new: its counterpart has other shapes
    CONVERSION_FAILED = "conversion failed"    # new: its layer's conversion was refused
    RENAMED = "renamed"                        # carried over under another name (convert)
    NOT_WEIGHT = "not a weight"                # new: no weight (a shape operand), kept as it is
    COUNTER = "a counter"                      # new: a count (num_batches_tracked) the source
                                               # does not keep: the target's value is kept


class Decision(str):
    """A note that is also a decision (what a user should look at: the plan's ``decisions``,
    the report's "check:" lines). Given among a plan's ``notes``, it is written there as
    "decision: TEXT" and its text goes to the tensor's ``decisions``."""

    __slots__ = ()


@dataclass(frozen=True)
class Pending:
    """A tensor a plan pass has still to plan: ``by`` names the pass (``recurrent_stacks``:
    a level of a stack the matcher paired whole; ``conv1d_square_layout``: a square Conv1D
    kernel whose ``side``'s layout its family decides)."""

    by: str
    side: str = ""

# The note of a target tensor that is no weight: a layer a reader marks ``attrs["not_weights"]``
# (an ONNX graph's initializers read only as shapes or indices, or never): kept as it is, not a
# layer left new
# (its reason: Reason.NOT_WEIGHT).
NOT_WEIGHT = "not a weight (the graph reads it as a shape or index operand, or not at all): " \
    "kept as it is"
# The note of a BatchNorm's batch counter (role num_batches_tracked) the source does not hold: a
# count of training steps, no weight; it keeps the target's value (Reason.COUNTER)
COUNTER = "a counter, no weight: keeps the target's value"


@dataclass(frozen=True)
class TensorPlan:
    target: str
    layer: str
    shape: tuple[int, ...]
    dtype: str
    status: str
    sources: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()
    match: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # synthetic tensors carry their value computed at plan time (they have no source tensor)
    value: Any = field(default=None, compare=False, repr=False, hash=False)
    # typed facts the stages steer on (a plan file keeps them as notes only; ``from_dict``
    # reads back the reason of a new tensor and its decisions): why it has its status, the
    # decisions among its notes, a pass that has still to plan it, and the stored layout of a
    # Conv1D-family kernel its plan found by fit, (side, "in,out" | "out,in")
    reason: Reason | None = field(default=None, compare=False)
    decisions: tuple[str, ...] = field(default=(), compare=False)
    pending: Pending | None = field(default=None, compare=False)
    fitted_layout: tuple[str, str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise PlanError(f"unknown status {self.status!r}; one of {', '.join(STATUSES)}",
                            tensor=self.target)
        if any(isinstance(n, Decision) for n in self.notes):
            decided = tuple(str(n) for n in self.notes if isinstance(n, Decision))
            object.__setattr__(self, "notes", tuple(
                DECISION + n if isinstance(n, Decision) else n for n in self.notes))
            object.__setattr__(self, "decisions", tuple(self.decisions) + decided)
        if self.status == "new" and self.reason is None:
            object.__setattr__(self, "reason", Reason.NO_COUNTERPART)

    @property
    def ignored(self) -> bool:
        """Left new because a rule ignores it."""
        return self.status == "new" and self.reason is Reason.IGNORED

    @property
    def remarks(self) -> tuple[str, ...]:
        """The notes that are not decisions (the report shows decisions apart)."""
        shown = {DECISION + d for d in self.decisions}
        return tuple(n for n in self.notes if n not in shown)

    @property
    def not_weight(self) -> bool:
        """A target tensor that is no weight, kept as it is (``Reason.NOT_WEIGHT``, or a
        counter the source does not keep, ``Reason.COUNTER``): reported as kept, not as left
        new, and not counted by ``strict``."""
        return self.status == "new" and self.reason in (Reason.NOT_WEIGHT, Reason.COUNTER)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "layer": self.layer,
                               "shape": list(self.shape), "dtype": self.dtype,
                               "status": self.status, "sources": list(self.sources),
                               "steps": [s.to_dict() for s in self.steps]}
        if self.notes:
            out["notes"] = list(self.notes)
        if self.match:
            out["match"] = dict(self.match)
        if self.value is not None:
            out["value"] = {"fill": self.value} if not hasattr(self.value, "tolist") else \
                {"values": self.value.tolist()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorPlan":
        """A tensor entry of a plan file, every field checked for its JSON type first (a plan
        is a file a user edits: a wrong type is a ``PlanError`` naming the field)."""
        if not isinstance(d, Mapping):
            raise PlanError(f"a tensor entry is a JSON object, found {_kind(d)}")
        for key in ("target", "shape", "dtype", "status"):
            if key not in d:
                raise PlanError(f"a tensor entry lacks the key {key!r}",
                                tensor=d.get("target") if isinstance(d.get("target"), str)
                                else None)
        target = _typed(d, "target", str, "a string", None)
        where = {"tensor": target}
        shape = tuple(_typed(d, "shape", list, "a list of sizes", target))
        if not all(type(n) is int and 0 <= n < 2**63 for n in shape):
            raise PlanError(f"'shape' holds sizes (non-negative integers), found {shape!r:.80}",
                            **where)
        dtype = _typed(d, "dtype", str, "a dtype name", target)
        if dtype not in DTYPES:
            raise PlanError(f"unknown dtype {dtype!r:.40}; one of {', '.join(sorted(DTYPES))}",
                            **where)
        steps = []
        for i, step in enumerate(_typed(d, "steps", list, "a list of steps", target, [])):
            try:
                steps.append(Step.from_dict(step))
            except PlanError as exc:
                raise PlanError(f"step {i + 1}: {exc.message}", **where) from None
        status = _typed(d, "status", str, "a string", target)
        notes = tuple(_strings(d, "notes", target))
        return cls(target=target, layer=_typed(d, "layer", str, "a string", target, ""),
                   shape=shape, dtype=dtype, status=status,
                   sources=tuple(_strings(d, "sources", target)), steps=tuple(steps),
                   notes=notes, match=_typed(d, "match", dict, "an object", target, {}),
                   value=_value(d.get("value"), shape, target),
                   reason=_reason_of(status, notes),
                   decisions=tuple(n[len(DECISION):] for n in notes if n.startswith(DECISION)))


@dataclass(frozen=True)
class Plan:
    source: Mapping[str, Any]              # {"path", "format", "framework"}
    target: Mapping[str, Any]
    tensors: tuple[TensorPlan, ...]        # every target parameter, in target order
    # source tensors no target uses: {name, shape, reason[, kind: the matcher's "ignored" ...]}
    unused: tuple[Mapping[str, Any], ...] = ()
    decisions: tuple[str, ...] = ()        # what a user should look at
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # decisions as data: {kind: "unused_same_shape", target: layer, sources: [layers], shape,
    # text (also among the decisions)}
    suggestions: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"weightmap_plan": PLAN_VERSION, "source": dict(self.source),
                "target": dict(self.target), "options": dict(self.options),
                "decisions": list(self.decisions),
                "suggestions": [dict(s) for s in self.suggestions],
                "tensors": [t.to_dict() for t in self.tensors],
                "unused": [dict(u) for u in self.unused]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Plan":
        if d.get("weightmap_plan") != PLAN_VERSION:
            raise PlanError(f"not a weightmap plan of version {PLAN_VERSION} "
                            f"(found weightmap_plan={d.get('weightmap_plan')!r:.40})")
        unused = _records(d, "unused", "name", ("reason", "kind"))
        suggestions = _records(d, "suggestions", "text", ("kind", "target"))
        return cls(source=_typed(d, "source", dict, "an object", None, {}),
                   target=_typed(d, "target", dict, "an object", None, {}),
                   tensors=tuple(TensorPlan.from_dict(t) for t in
                                 _typed(d, "tensors", list, "a list", None, [])),
                   unused=tuple(unused), decisions=tuple(_strings(d, "decisions", None)),
                   options=_typed(d, "options", dict, "an object", None, {}),
                   suggestions=tuple(suggestions))

    @classmethod
    def load(cls, path: Path) -> "Plan":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError("no such plan file", path=path) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlanError(f"not valid JSON: {exc}", path=path) from None
        if not isinstance(data, dict):
            raise PlanError("a plan file holds a JSON object", path=path)
        try:
            return cls.from_dict(data)
        except PlanError as exc:
            raise PlanError(exc.message, path=path, tensor=exc.tensor) from None

    def check(self, source: ParamGraph, target: ParamGraph) -> None:
        """Every contract of the plan, against both graphs, before anything is written."""
        src = {p.name: p for p in source.params()}
        tgt = {p.name: p for p in target.params()}
        planned = set()
        for t in self.tensors:
            if t.target not in tgt:
                raise PlanError("the plan names a target tensor the target does not have",
                                tensor=t.target)
            if t.target in planned:
                raise PlanError("the plan lists this target tensor twice", tensor=t.target)
            planned.add(t.target)
            want = tgt[t.target]
            if tuple(want.shape) != tuple(t.shape):
                raise PlanError(f"the plan expects shape {t.shape}, the target has {want.shape}",
                                tensor=t.target)
            if t.status in ("new", "synthetic"):
                continue
            missing = [s for s in t.sources if s not in src]
            if missing or not t.sources:
                raise PlanError(f"source tensor(s) {missing or '(none)'} not in the source",
                                tensor=t.target)
            out = check_steps(t.steps, [src[s].shape for s in t.sources], t.target)
            if tuple(out) != tuple(want.shape):
                raise PlanError(f"the steps give shape {tuple(out)}, the target needs "
                                f"{tuple(want.shape)}", tensor=t.target)
        absent = [n for n in tgt if n not in planned]
        if absent:
            raise PlanError(f"the plan does not cover {len(absent)} target tensor(s), e.g. "
                            f"{', '.join(absent[:3])}", hint="every target tensor needs an "
                            "entry; use status 'new' to keep the target's value")

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for t in self.tensors:
            out[t.status] += 1
        return out


def _reason_of(status: str, notes: tuple[str, ...]) -> Reason | None:
    """A new tensor's reason as a plan file's notes give it (its first note says why it is new;
    a rule's ignoring is put first): the one place notes are read, where a plan comes in."""
    if status != "new" or not notes:
        return None
    for text, reason in ((IGNORED, Reason.IGNORED), (SHAPE_MISMATCH, Reason.SHAPE_MISMATCH),
                         (CONVERSION_FAILED, Reason.CONVERSION_FAILED),
                         (NOT_WEIGHT, Reason.NOT_WEIGHT), (COUNTER, Reason.COUNTER)):
        if notes[0].startswith(text):
            return reason
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value),
                                                                          type(value).__name__)


_MISSING = object()


def _typed(d: Mapping[str, Any], key: str, kind: type, what: str, tensor: str | None,
           default: Any = _MISSING) -> Any:
    """``d[key]`` if it is a ``kind`` (JSON type), else a PlanError naming the field."""
    value = d.get(key, default)
    if value is _MISSING:
        raise PlanError(f"the plan lacks the key {key!r}", tensor=tensor)
    if not isinstance(value, kind):
        raise PlanError(f"{key!r} must be {what}, found {_kind(value)}", tensor=tensor)
    return value


def _records(d: Mapping[str, Any], key: str, required: str, texts: tuple[str, ...]
             ) -> list[dict]:
    """A list of objects, each with a string ``required`` and strings (if present) at
    ``texts`` (``unused``: name, reason, kind; ``suggestions``: text, kind, target)."""
    records = _typed(d, key, list, "a list of objects", None, [])
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get(required), str) or \
                any(not isinstance(r[k], str) for k in texts if k in r):
            raise PlanError(f"{key!r} lists objects with a {required!r} string (and "
                            f"{', '.join(texts)} strings), found {r!r:.80}")
    return records


def _strings(d: Mapping[str, Any], key: str, tensor: str | None) -> list[str]:
    values = _typed(d, key, list, "a list of strings", tensor, [])
    if not all(isinstance(v, str) for v in values):
        raise PlanError(f"{key!r} must be a list of strings", tensor=tensor)
    return values


def _value(value: Any, shape: tuple[int, ...], tensor: str) -> Any:
    """A synthetic tensor's value: ``{"fill": number}`` or ``{"values": nested lists of numbers
    of the tensor's shape}``."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"fill"} and finite_number(value["fill"]):
        return value["fill"]
    if isinstance(value, dict) and set(value) == {"values"}:
        import numpy as np
        try:
            arr = np.asarray(value["values"])
        except (ValueError, TypeError, OverflowError):
            arr = None
        if arr is not None and arr.dtype.kind in "biuf" and tuple(arr.shape) == shape:
            return arr
    raise PlanError('\'value\' must be {"fill": a number} or {"values": numbers nested in '
                    f'the tensor\'s shape {list(shape)}}}', tensor=tensor)

