"""The transform registry and the generic steps (transpose, reshape, flatten permutation ...)."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import PlanError
from ..io.bytes import contiguous

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One transform applied to a tensor: its registered name and JSON-able arguments."""

    op: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or self.op not in STEPS:
            raise PlanError(f"unknown transform {self.op!r:.40}; known: "
                            f"{', '.join(sorted(STEPS))}")
        args = dict(self.args)
        wanted = STEPS[self.op].args
        if set(args) != set(wanted):
            raise PlanError(f"{self.op} takes the arguments {', '.join(wanted) or 'none'}, "
                            f"found {', '.join(sorted(map(str, args))) or 'none'}")
        for name, value in args.items():
            kind, what = ARG_KINDS[name]
            if not kind(value):
                raise PlanError(f"{self.op} argument {name!r} must be {what}, found "
                                f"{value!r:.60}")
        object.__setattr__(self, "args", MappingProxyType(args))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: _plain(v) for k, v in self.args.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Step":
        if not isinstance(data, Mapping):
            raise PlanError(f"a transform step is a JSON object, found {data!r:.60}")
        data = dict(data)
        if "op" not in data:
            raise PlanError(f"a transform step needs an 'op' key, found {sorted(data)}")
        return cls(data.pop("op"), data)

    def describe(self) -> str:
        inner = ", ".join(f"{k}={_plain(v)}" for k, v in self.args.items())
        return f"{self.op}({inner})"


@dataclass(frozen=True)
class _Transform:
    shape: Callable[..., Shape]
    apply: Callable[..., np.ndarray]
    arity: int          # number of input tensors; -1 for any
    args: tuple[str, ...] = ()      # the arguments it takes (each a name of ARG_KINDS)
    # ``census(inputs, output, **args)``: what the step did that a user should know (a cast's
    # overflows), a dict of counts, or None when there is nothing to say
    census: Callable[..., Mapping[str, Any] | None] | None = None


STEPS: dict[str, _Transform] = {}


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -2**62 < v < 2**62


def _ints(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) <= 64 and all(_int(x) for x in v)


def _sizes(v: Any) -> bool:
    return _ints(v) and all(x >= 0 for x in v)


def finite_number(v: Any) -> bool:
    """A finite number (not a bool) any dtype's arithmetic takes: a step argument, a fill."""
    return (_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)


def _dtype(v: Any) -> bool:
    from ..dtypes import DTYPES
    return isinstance(v, str) and v in DTYPES


# Every transform argument by name, with its JSON type: a plan file is edited by hand, so a
# step's arguments are checked before any transform sees them.
ARG_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "axis": (lambda v: _int(v) or (_ints(v) and len(v) > 0),     # bn_fold_kernel: several
             "an integer or a list of integers"),
    "index": (_int, "an integer"), "units": (_int, "an integer"),
    "start": (_int, "an integer"), "stop": (_int, "an integer"),
    "before": (_int, "an integer"), "after": (_int, "an integer"),
    "perm": (_ints, "a list of integers"), "shape": (_sizes, "a list of sizes"),
    "factor": (finite_number, "a finite number"), "eps": (finite_number, "a finite number"),
    "eps_from": (finite_number, "a finite number"), "eps_to": (finite_number, "a finite number"),
    "dtype": (_dtype, "a dtype name"),
    "prefix": (lambda v: _int(v) and v >= 0, "a count (an integer >= 0)"),
    "channels": (lambda v: _int(v) and v > 0, "a positive integer"),
    "grid": (lambda v: _sizes(v) and len(v) == 2, "two sizes [h, w]"),
    "size": (lambda v: _sizes(v) and len(v) == 2, "two sizes [h, w]"),
    "parts": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
              "a list of names"),
}


def register(name: str, *, arity: int = 1):
    """Register ``shape``/``apply`` functions (and optionally ``census``) under ``name``:
    decorate a class with them. Their arguments (after ``shapes``/``arrays``) must be named in
    ``ARG_KINDS``."""
    def wrap(cls):
        if name in STEPS:
            raise PlanError(f"transform {name!r} registered twice")
        args = tuple(inspect.signature(cls.shape).parameters)[1:]
        unknown = [a for a in args if a not in ARG_KINDS]
        if unknown:
            raise PlanError(f"transform {name!r} takes arguments of no known kind: {unknown}")
        STEPS[name] = _Transform(shape=cls.shape, apply=cls.apply, arity=arity, args=args,
                                 census=getattr(cls, "census", None))
        return cls
    return wrap


def check_steps(steps: Sequence[Step], in_shapes: Sequence[Shape], where: str) -> Shape:
    """The output shape of a chain, or PlanError naming ``where`` and the failing step."""
    shapes = [tuple(s) for s in in_shapes]
    for i, step in enumerate(steps):
        t = STEPS[step.op]
        if t.arity != -1 and len(shapes) != t.arity:
            raise PlanError(f"step {i + 1} {step.describe()} takes {t.arity} tensor(s), "
                            f"gets {len(shapes)}", tensor=where)
        try:
            shapes = [tuple(t.shape(shapes, **step.args))]
        except PlanError as exc:
            raise PlanError(f"step {i + 1} {step.describe()}: {exc.message}", tensor=where) from None
        except (TypeError, ValueError, IndexError, KeyError, OverflowError,
                ZeroDivisionError) as exc:     # an argument out of range for these shapes
            raise PlanError(f"step {i + 1} {step.describe()}: bad arguments: "
                            f"{type(exc).__name__}: {exc}", tensor=where) from None
    if len(shapes) != 1:
        raise PlanError(f"{len(shapes)} tensors reach the end of the chain; combine them into "
                        f"one (e.g. with a 'concat' or 'sum' step)", tensor=where)
    return shapes[0]


Observer = Callable[[Step, Mapping[str, Any]], None]


def apply_steps(steps: Sequence[Step], arrays: Sequence[np.ndarray], *,
                observe: Observer | None = None) -> np.ndarray:
    """The chain applied to ``arrays``; ``observe(step, counts)`` is told what each step with a
    ``census`` reports (e.g. a cast's overflows)."""
    out = list(arrays)
    for step in steps:
        transform = STEPS[step.op]
        result = transform.apply(out, **step.args)
        if observe is not None and transform.census is not None:
            counts = transform.census(out, result, **step.args)
            if counts:
                observe(step, counts)
        out = [result]
    if len(out) != 1:
        raise PlanError(f"{len(out)} tensors reach the end of the chain")
    return out[0]


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _fail(msg: str) -> None:
    raise PlanError(msg)


# ---- generic steps ---------------------------------------------------------------------------

@register("transpose")
class _Transpose:
    """Permute axes: output axis i is input axis perm[i]."""

    @staticmethod
    def shape(shapes, perm):
        (s,) = shapes
        if sorted(perm) != list(range(len(s))):
            _fail(f"perm {list(perm)} is not a permutation of {len(s)} axes (shape {s})")
        return tuple(s[p] for p in perm)

    @staticmethod
    def apply(arrays, perm):
        return contiguous(np.transpose(arrays[0], perm))


@register("reshape")
class _Reshape:
    @staticmethod
    def shape(shapes, shape):
        (s,) = shapes
        if math.prod(s) != math.prod(shape):
            _fail(f"cannot reshape {s} ({math.prod(s)} elements) to {tuple(shape)}")
        return tuple(shape)

    @staticmethod
    def apply(arrays, shape):
        return np.ascontiguousarray(arrays[0]).reshape(shape)


@register("flatten_permute")
class _FlattenPermute:
    """Re-order the input axis of a dense kernel that follows a flatten from one memory order
    to another. ``axis`` is the kernel's input axis, ``shape`` the per-sample feature map in the
    source's order (e.g. (H, W, C)), ``perm`` the permutation into the target's order (e.g.
    (2, 0, 1) for channels-last → channels-first)."""

    @staticmethod
    def shape(shapes, axis, shape, perm):
        (s,) = shapes
        if s[axis] != math.prod(shape):
            _fail(f"input axis has {s[axis]} features, the flatten shape {tuple(shape)} "
                  f"holds {math.prod(shape)}")
        if sorted(perm) != list(range(len(shape))):
            _fail(f"perm {list(perm)} does not permute {len(shape)} axes")
        return tuple(s)

    @staticmethod
    def apply(arrays, axis, shape, perm):
        a = np.moveaxis(arrays[0], axis, 0)
        rest = a.shape[1:]
        a = a.reshape(tuple(shape) + rest).transpose(tuple(perm) + tuple(
            range(len(shape), len(shape) + len(rest))))
        return np.ascontiguousarray(np.moveaxis(a.reshape((-1,) + rest), 0, axis))


@register("sum", arity=-1)
class _Sum:
    """Element-wise sum of several tensors of one shape (e.g. torch bias_ih + bias_hh)."""

    @staticmethod
    def shape(shapes):
        if len({tuple(s) for s in shapes}) != 1:
            _fail(f"cannot add tensors of shapes {[tuple(s) for s in shapes]}")
        return shapes[0]

    @staticmethod
    def apply(arrays):
        out = np.array(arrays[0], copy=True)
        for a in arrays[1:]:
            out = out + a
        return out


@register("concat", arity=-1)
class _Concat:
    @staticmethod
    def shape(shapes, axis):
        base = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(base) or any(a != b for i, (a, b) in enumerate(zip(s, base))
                                             if i != axis % len(base)):
                _fail(f"cannot concatenate shapes {[tuple(x) for x in shapes]} on axis {axis}")
        base[axis] = sum(s[axis] for s in shapes)
        return tuple(base)

    @staticmethod
    def apply(arrays, axis):
        return np.concatenate(arrays, axis=axis)


@register("slice")
class _Slice:
    """Take ``[start, stop)`` along ``axis`` (e.g. one of q/k/v from a fused projection)."""

    @staticmethod
    def shape(shapes, axis, start, stop):
        (s,) = shapes
        if not 0 <= start < stop <= s[axis]:
            _fail(f"slice {start}:{stop} lies outside axis {axis} of size {s[axis]}")
        out = list(s)
        out[axis] = stop - start
        return tuple(out)

    @staticmethod
    def apply(arrays, axis, start, stop):
        index = [slice(None)] * arrays[0].ndim
        index[axis] = slice(start, stop)
        return np.ascontiguousarray(arrays[0][tuple(index)])


@register("scale")
class _Scale:
    @staticmethod
    def shape(shapes, factor):
        return shapes[0]

    @staticmethod
    def apply(arrays, factor):
        return (arrays[0] * np.asarray(factor, dtype=arrays[0].dtype)).astype(arrays[0].dtype)


@register("sum_axis")
class _SumAxis:
    """Sum over ``axis`` keeping it with size 1 (RGB weights into a 1-channel input)."""

    @staticmethod
    def shape(shapes, axis):
        out = list(shapes[0])
        out[axis] = 1
        return tuple(out)

    @staticmethod
    def apply(arrays, axis):
        return arrays[0].sum(axis=axis, keepdims=True)
