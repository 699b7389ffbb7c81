"""What a layer looks like to the matcher: op family and parameter shapes in one canonical layout.

Shapes are reordered by their axis labels into one label order, so a Keras conv kernel
``(kh, kw, in, out)`` and a torch weight ``(out, in, kh, kw)`` compare equal. A parameter whose
axes are unknown compares by its sorted dims only, and that is weak evidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import AbstractSet

from ..graph import Layer, Param

# Canonical label order: torch-like (out, in, spatial...) with the rarer labels around it.
LABEL_ORDER = ("dir", "pair", "vocab", "out", "in", "c", "dim", "kd", "kh", "kw", "k")
_RANK = {label: i for i, label in enumerate(LABEL_ORDER)}

# Roles that name the same thing under another op's vocabulary.
ROLE_ALIASES = {"embeddings": "kernel", "depthwise_kernel": "kernel"}
# Roles a layer may have on one side only (bias-free conv, Keras BN with scale=False ...).
OPTIONAL_ROLES = frozenset({"bias", "recurrent_bias", "gamma", "beta", "num_batches_tracked"})
RECURRENT_OPS = frozenset({"lstm", "gru", "simple_rnn"})
# Biases of recurrent layers differ in layout between conventions (one bias, two, (2, 3u));
# the kernels already fix the unit count, so these are not compared at layer level.
_RECURRENT_UNCOMPARED = frozenset({"bias", "recurrent_bias"})
# Different op kinds that hold the same parameters: a torch embedding inferred as dense; a
# weight-only norm a state dict cannot type (LayerNorm without bias, or RMSNorm).
CROSS_FAMILY = frozenset({frozenset({"dense", "embedding"}), frozenset({"layernorm", "rmsnorm"})})

SCORE_EQUAL = 10.0      # same family, every shared role has equal canonical shapes
SCORE_WEAK = 6.0        # equal, but some shapes known only as sorted dims
SCORE_CROSS = -2.0      # added when the families differ but are compatible
SCORE_SHAPE = 0.0       # same family, shapes differ: alignable, but reported, never matched


def family(op: str) -> str:
    """``depthwise_conv2d`` is a ``conv2d`` with groups; every other op is its own family."""
    if op.startswith("depthwise_conv"):
        return op[len("depthwise_"):]
    return op


def canonical_shape(param: Param) -> tuple[int, ...] | None:
    """The shape in LABEL_ORDER, or None when the labels do not fix it."""
    return _canonical(param.shape, param.axes)


def _canonical(shape: tuple[int, ...], axes: tuple[str, ...] | None) -> tuple[int, ...] | None:
    if axes is None or len(set(axes)) != len(axes):
        return None
    dims = dict(zip(axes, shape))
    if "c" in dims and "m" in dims:          # Keras depthwise (k..., c, m) → (c·m, 1, k...)
        spatial = tuple(dims[a] for a in axes if a not in ("c", "m"))
        return (dims["c"] * dims["m"], 1) + spatial
    if any(a not in _RANK for a in axes):
        return None
    return tuple(dims[a] for a in sorted(axes, key=_RANK.__getitem__))


@dataclass(frozen=True)
class ParamSig:
    role: str                                  # role after ROLE_ALIASES
    canon: tuple[int, ...] | None
    dims: tuple[int, ...]                      # sorted stored dims, for unknown layouts

    def shown(self) -> tuple[int, ...]:
        return self.canon if self.canon is not None else self.dims


@dataclass(frozen=True)
class LayerSig:
    family: str
    opaque: bool
    roles: tuple[tuple[str, tuple[ParamSig, ...]], ...]

    def role_map(self) -> dict[str, tuple[ParamSig, ...]]:
        return dict(self.roles)


def param_sig(param: Param, op: str) -> ParamSig:
    return _param_sig(param.role, param.shape, param.axes, op)


@lru_cache(maxsize=4096)
def _param_sig(role: str, shape: tuple[int, ...], axes: tuple[str, ...] | None,
               op: str) -> ParamSig:
    # Cached: a deep network repeats the same few (role, shape, axes) many times.
    canon = _canonical(shape, axes)
    if canon is not None and family(op) == "dense" and axes and "out" in axes and len(canon) > 2:
        # A dense kernel compares as (out, in) by element count: the flatten layout before it
        # may differ (NHWC vs NCHW); the planner handles that permutation.
        canon = (canon[0], math.prod(canon[1:]))
    # size-1 axes say nothing about a layout: Keras PReLU alpha (1, 1, C) is torch's (C,)
    return ParamSig(ROLE_ALIASES.get(role, role), canon, tuple(sorted(d for d in shape if d != 1)))


def layer_signature(layer: Layer, skip: AbstractSet[str] = frozenset()) -> LayerSig:
    """The layer's signature, leaving out parameters named in ``skip`` (ignored by rules)."""
    by_role: dict[str, list[ParamSig]] = {}
    for p in layer.params:
        if p.name not in skip:
            sig = param_sig(p, layer.op)
            by_role.setdefault(sig.role, []).append(sig)
    roles = tuple((role, tuple(sorted(sigs, key=_order_key))) for role, sigs in
                  sorted(by_role.items()))
    return LayerSig(family(layer.op), layer.op == "opaque", roles)


def _order_key(sig: ParamSig) -> tuple:
    return (sig.canon is None, sig.canon or (), sig.dims)


@dataclass(frozen=True)
class Compat:
    """How two layer signatures relate. ``kind``: equal | weak | shape | none."""

    kind: str
    score: float | None                        # None: never aligned
    evidence: tuple[str, ...] = ()
    mismatch: tuple[str, tuple[int, ...], tuple[int, ...]] | None = None  # role, source, target
    cross: bool = False                        # compatible op families that are not the same

    @property
    def matches(self) -> bool:
        return self.kind in ("equal", "weak")

    def reason(self, source_first: bool = False) -> str:
        """``shape (10, 512) vs (1000, 512)`` — target's first unless asked otherwise."""
        role, s, t = self.mismatch or ("", (), ())
        a, b = (s, t) if source_first else (t, s)
        prefix = "" if role == "kernel" else f"{role} "
        return f"{prefix}shape {a} vs {b}"


NO = Compat("none", None)


def op_evidence(source_op: str, target_op: str) -> str:
    """``op conv2d==conv2d``, or ``op depthwise_conv2d~conv2d`` for compatible kinds."""
    return (f"op {source_op}=={target_op}" if source_op == target_op
            else f"op {source_op}~{target_op}")


def compare(source: LayerSig, target: LayerSig) -> Compat:
    """Compare a source and a target layer signature."""
    fams = frozenset({source.family, target.family})
    if source.family != target.family and fams not in CROSS_FAMILY:
        return NO
    cross = source.family != target.family
    bonus = SCORE_CROSS if cross else 0.0
    src, tgt = source.role_map(), target.role_map()
    skip = _RECURRENT_UNCOMPARED if source.family in RECURRENT_OPS else frozenset()
    if any(r not in OPTIONAL_ROLES and r not in skip for r in set(src) ^ set(tgt)):
        return NO                                # a required parameter exists on one side only
    shared = sorted((r for r in set(src) & set(tgt) if r not in skip), key=_role_priority)
    if not shared:
        return NO
    weak = False
    for role in shared:
        state = _compare_role(src[role], tgt[role])
        if state == "differ":
            if source.opaque or target.opaque:
                return NO                        # unrelated opaque tensors are not "mismatched"
            s, t = _first_difference(src[role], tgt[role])
            return Compat("shape", SCORE_SHAPE + bonus, (), (role, s, t), cross)
        weak = weak or state == "weak"
    if weak:
        return Compat("weak", SCORE_WEAK + bonus,
                      ("shapes equal as sorted dims only (axes unknown)",), cross=cross)
    return Compat("equal", SCORE_EQUAL + bonus, ("shapes equal after layout",), cross=cross)


def _role_priority(role: str) -> tuple[int, str]:
    # Report a kernel difference before a bias difference: it is the one a reader recognises.
    return (_PRIORITY.get(role, len(_PRIORITY)), role)


_PRIORITY = {"kernel": 0, "recurrent_kernel": 1, "pointwise_kernel": 2, "gamma": 3,
             "moving_mean": 4}


def _compare_role(a: tuple[ParamSig, ...], b: tuple[ParamSig, ...]) -> str:
    if len(a) != len(b):
        return "differ"
    if all(x.canon is not None for x in a + b):
        return "equal" if sorted(x.canon for x in a) == sorted(x.canon for x in b) else "differ"
    return "weak" if sorted(x.dims for x in a) == sorted(x.dims for x in b) else "differ"


def _first_difference(a: tuple[ParamSig, ...], b: tuple[ParamSig, ...]):
    for x, y in zip(a, b):
        if x.shown() != y.shown():
            return x.shown(), y.shown()
    if len(a) != len(b):
        return (tuple(x.shown() for x in a), tuple(y.shown() for y in b))
    return a[0].shown(), b[0].shown()
