"""Normalisation algebra as transform steps (CONVERSIONS.md, "Normalisation").

Every step computes in float64 and returns the dtype of its first input, so a float32 port stays
within rounding of the exact formula. Steps that take several tensors name them in ``parts`` (in
input order), because a Keras BatchNorm may lack ``gamma`` (``scale=False``) or ``beta``
(``center=False``): a missing gamma counts as 1, a missing beta or bias as 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import PlanError
from .steps import _fail, register

_BN_PARTS = ("kernel", "bias", "gamma", "beta", "mean", "var")


def _named(shapes_or_arrays: Sequence, parts: Sequence[str], required: Sequence[str]) -> dict:
    if len(parts) != len(shapes_or_arrays):
        _fail(f"{len(shapes_or_arrays)} input tensor(s) for parts {list(parts)}")
    unknown = [p for p in parts if p not in _BN_PARTS] + \
        [p for p in set(parts) if list(parts).count(p) > 1]
    if unknown:
        _fail(f"parts {list(parts)}: unknown or repeated {sorted(set(unknown))}")
    missing = [r for r in required if r not in parts]
    if missing:
        _fail(f"parts {list(parts)} lack {missing}")
    return dict(zip(parts, shapes_or_arrays))


def _channel_shapes_agree(named: dict, skip: Sequence[str] = ("kernel",)) -> tuple[int, ...]:
    shapes = {tuple(s) for k, s in named.items() if k not in skip}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        _fail(f"per-channel tensors must be 1-D of one size, found "
              f"{ {k: tuple(s) for k, s in named.items() if k not in skip} }")
    return next(iter(shapes))


def _f64(named: dict, key: str, default: float, n: int) -> np.ndarray:
    if key in named:
        return np.asarray(named[key], dtype=np.float64)
    return np.full(n, default, dtype=np.float64)


def bn_scale(named: dict, eps: float) -> np.ndarray:
    """s = gamma / sqrt(var + eps), per channel (float64)."""
    var = np.asarray(named["var"], dtype=np.float64)
    return _f64(named, "gamma", 1.0, var.shape[0]) / np.sqrt(var + eps)


@register("bn_eps_gamma", arity=-1)
class _BnEpsGamma:
    """gamma' = gamma·sqrt((var + eps_to) / (var + eps_from)): a BatchNorm with epsilon
    ``eps_to`` then computes what the source computed with ``eps_from`` (always valid).
    Inputs named by ``parts``: ["gamma", "var"] or ["var"] (no gamma: 1)."""

    @staticmethod
    def shape(shapes, eps_from, eps_to, parts):
        named = _named(shapes, parts, ("var",))
        if set(parts) - {"gamma", "var"}:
            _fail(f"parts {list(parts)}: only gamma and var")
        if not (eps_from >= 0 and eps_to >= 0):
            _fail(f"epsilons must be >= 0, got {eps_from} and {eps_to}")
        return _channel_shapes_agree(named)

    @staticmethod
    def apply(arrays, eps_from, eps_to, parts):
        named = _named(arrays, parts, ("var",))
        var = np.asarray(named["var"], dtype=np.float64)
        gamma = _f64(named, "gamma", 1.0, var.shape[0])
        out = gamma * np.sqrt((var + eps_to) / (var + eps_from))
        return out.astype(arrays[0].dtype)


@register("bn_eps_var")
class _BnEpsVar:
    """var' = var + eps_from − eps_to: the other exact compensation, for a target BatchNorm
    without gamma. Valid only while every var' stays > 0 (checked on the values)."""

    @staticmethod
    def shape(shapes, eps_from, eps_to):
        (s,) = shapes
        if len(s) != 1:
            _fail(f"a running variance is 1-D, found shape {tuple(s)}")
        return tuple(s)

    @staticmethod
    def apply(arrays, eps_from, eps_to):
        var = np.asarray(arrays[0], dtype=np.float64)
        out = var + eps_from - eps_to
        if np.any(out <= 0):
            bad = int(np.argmin(out))
            raise PlanError(f"var + {eps_from:g} - {eps_to:g} is {out[bad]:g} <= 0 at channel "
                            f"{bad}: the epsilon difference cannot be moved into the variance",
                            hint="give the target BatchNorm a gamma (scale=True) or the "
                                 f"source's epsilon {eps_from:g}")
        return out.astype(arrays[0].dtype)


@register("subtract", arity=2)
class _Subtract:
    """a − b, element-wise, same shape (e.g. running_mean − conv bias)."""

    @staticmethod
    def shape(shapes):
        a, b = (tuple(s) for s in shapes)
        if a != b:
            _fail(f"cannot subtract shape {b} from {a}")
        return a

    @staticmethod
    def apply(arrays):
        a, b = arrays
        return (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).astype(a.dtype)


def _channel_axes(axis) -> list[int]:
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]


@register("bn_fold_kernel", arity=-1)
class _BnFoldKernel:
    """W_f = W·s with s = gamma/sqrt(var + eps) along the kernel's output channels: folds a
    following eval-mode BatchNorm into the kernel. ``axis`` is the output-channel axis, or a list
    of adjacent axes whose row-major index is the channel (Keras depthwise ``(kh, kw, C, M)``:
    channel c·M + m is axes [2, 3]). Inputs named by ``parts``: kernel, [gamma], var."""

    @staticmethod
    def shape(shapes, eps, axis, parts):
        named = _named(shapes, parts, ("kernel", "var"))
        if set(parts) - {"kernel", "gamma", "var"}:
            _fail(f"parts {list(parts)}: only kernel, gamma and var")
        (n,) = _channel_shapes_agree(named)
        kshape = tuple(named["kernel"])
        axes = _channel_axes(axis)
        if any(not 0 <= a < len(kshape) for a in axes) or axes != list(range(axes[0],
                                                                            axes[0] + len(axes))):
            _fail(f"axis {axis} is not a run of adjacent axes of the kernel {kshape}")
        if math.prod(kshape[a] for a in axes) != n:
            _fail(f"kernel {kshape} has {math.prod(kshape[a] for a in axes)} output channels on "
                  f"axis {axis}, the BatchNorm has {n}")
        return kshape

    @staticmethod
    def apply(arrays, eps, axis, parts):
        named = _named(arrays, parts, ("kernel", "var"))
        kernel = named["kernel"]
        axes = _channel_axes(axis)
        shape = [1] * kernel.ndim
        for a in axes:
            shape[a] = kernel.shape[a]
        s = bn_scale(named, eps).reshape(shape)
        return (np.asarray(kernel, dtype=np.float64) * s).astype(kernel.dtype)


@register("bn_fold_bias", arity=-1)
class _BnFoldBias:
    """b_f = (b − mean)·s + beta with s = gamma/sqrt(var + eps): the bias of a conv with the
    following eval-mode BatchNorm folded in. Inputs named by ``parts``: [bias], [gamma], [beta],
    mean, var (missing bias and beta: 0, missing gamma: 1)."""

    @staticmethod
    def shape(shapes, eps, parts):
        named = _named(shapes, parts, ("mean", "var"))
        if "kernel" in parts:
            _fail("parts name no kernel for a bias")
        return _channel_shapes_agree(named)

    @staticmethod
    def apply(arrays, eps, parts):
        named = _named(arrays, parts, ("mean", "var"))
        n = np.asarray(named["var"]).shape[0]
        out = (_f64(named, "bias", 0.0, n) - _f64(named, "mean", 0.0, n)) * bn_scale(named, eps) \
            + _f64(named, "beta", 0.0, n)
        return out.astype(arrays[0].dtype)
