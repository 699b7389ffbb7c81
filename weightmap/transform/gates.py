"""Steps for recurrent layers (CONVERSIONS.md, "Recurrent layers"): gates, directions, packing.

Recurrent weights stack their gates along one axis in an order each convention fixes (torch LSTM
``ifgo``, Keras ``ifco``, ONNX ``iofc``); ONNX also stacks directions on a leading axis and packs
both biases as ``[Wb; Rb]``. These steps move blocks and axes only, so every value is copied
exactly.
"""
from __future__ import annotations

import numpy as np

from .steps import _fail, register


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        _fail(f"axis {axis} does not exist in a tensor of {ndim} axes")
    return axis % ndim


@register("gate_permute")
class _GatePermute:
    """Re-order gate blocks of ``units`` rows along ``axis``: output block j is input block
    ``perm[j]``. The axis holds one or more groups of ``len(perm)`` blocks (an ONNX bias
    ``[Wb; Rb]`` holds two); each group is permuted on its own."""

    @staticmethod
    def shape(shapes, axis, perm, units):
        (s,) = shapes
        ax = _axis(axis, len(s))
        if sorted(perm) != list(range(len(perm))):
            _fail(f"perm {list(perm)} is not a permutation of {len(perm)} gates")
        group = len(perm) * units
        if units <= 0 or s[ax] % group:
            _fail(f"axis {axis} of shape {tuple(s)} is not a whole number of {len(perm)} "
                  f"gate blocks of {units} units")
        return tuple(s)

    @staticmethod
    def apply(arrays, axis, perm, units):
        a = arrays[0]
        ax = axis % a.ndim
        moved = np.moveaxis(a, ax, 0)
        groups = moved.shape[0] // (len(perm) * units)
        blocks = moved.reshape((groups, len(perm), units) + moved.shape[1:])
        out = blocks[:, list(perm)].reshape(moved.shape)
        return np.ascontiguousarray(np.moveaxis(out, 0, ax))


@register("take")
class _Take:
    """Index ``index`` of ``axis``, dropping the axis (one direction of an ONNX ``W``)."""

    @staticmethod
    def shape(shapes, axis, index):
        (s,) = shapes
        ax = _axis(axis, len(s))
        if not 0 <= index < s[ax]:
            _fail(f"index {index} lies outside axis {axis} of size {s[ax]}")
        return tuple(d for i, d in enumerate(s) if i != ax)

    @staticmethod
    def apply(arrays, axis, index):
        return np.ascontiguousarray(np.take(arrays[0], index, axis=axis))


@register("stack", arity=-1)
class _Stack:
    """Stack tensors of one shape on a new ``axis`` (directions of an ONNX ``W``; a Keras GRU
    bias ``[input; recurrent]``)."""

    @staticmethod
    def shape(shapes, axis):
        if len({tuple(s) for s in shapes}) != 1:
            _fail(f"cannot stack tensors of shapes {[tuple(s) for s in shapes]}")
        s = list(shapes[0])
        ax = _axis(axis, len(s) + 1)
        return tuple(s[:ax] + [len(shapes)] + s[ax:])

    @staticmethod
    def apply(arrays, axis):
        return np.stack(arrays, axis=axis)


@register("zero_pad")
class _ZeroPad:
    """Add ``before``/``after`` zeros along ``axis`` (a single bias into ONNX ``[Wb; Rb]``:
    ``Rb = 0``)."""

    @staticmethod
    def shape(shapes, axis, before, after):
        (s,) = shapes
        ax = _axis(axis, len(s))
        if before < 0 or after < 0:
            _fail(f"padding {before}, {after} is negative")
        out = list(s)
        out[ax] += before + after
        return tuple(out)

    @staticmethod
    def apply(arrays, axis, before, after):
        a = arrays[0]
        widths = [(0, 0)] * a.ndim
        widths[axis % a.ndim] = (before, after)
        return np.pad(a, widths)
