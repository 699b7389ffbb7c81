"""Comparing two activations: one mapped onto the other's layout by axis labels, the figures
(max abs error, and that error relative to the largest reference value), and the fused
activation one side applies inside a layer (a Keras ``Conv2D(activation="relu")``) applied in
numpy to the side that lacks it.

Labels are those of ``Convention.activation_axes``; a tuple among them is one axis holding several
labels row-major (torch's LSTM output ``("dir", "c")``). Both arrays are brought into one
common order in which every such merged axis stays merged: the side holding its labels as
separate axes is transposed and reshaped into it. Nothing is ever split, so no size has to be
guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..convention import Convention, spatial_rank

Units = Sequence  # of str | tuple[str, ...]


class Incomparable(Exception):
    """The two arrays cannot be put side by side (the reason is the message)."""


@dataclass(frozen=True)
class Figures:
    max_abs: float
    rel: float                       # max_abs / max |reference|; inf when the reference is 0

    def within(self, tol: float) -> bool:
        return math.isfinite(self.rel) and self.rel <= tol


def figures(reference: np.ndarray, other: np.ndarray) -> Figures:
    """Max abs error and its ratio to the largest reference magnitude. Computed in the arrays'
    own float precision when both are float32 or wider (a difference of two float32 values is
    exact to 1e-7 of them, far below any tolerance; activations are large), else in float64.
    NaN or Inf in either array gives rel = inf (never "within" a tolerance), unless both hold
    the same non-finite values at the same places."""
    dtype = np.result_type(reference, other)
    if dtype.kind != "f" or dtype.itemsize < 4:
        dtype = np.dtype(np.float64)
    ref, got = np.asarray(reference, dtype=dtype), np.asarray(other, dtype=dtype)
    finite = np.isfinite(ref) & np.isfinite(got)
    if not finite.all():
        same = (ref == got) | (np.isnan(ref) & np.isnan(got))
        if not np.all(finite | same):
            return Figures(math.inf, math.inf)
        ref, got = ref[finite], got[finite]
    if not ref.size:
        return Figures(0.0, 0.0)
    max_abs = float(np.max(np.abs(ref - got)))
    scale = float(np.max(np.abs(ref)))
    if scale == 0.0:
        return Figures(max_abs, 0.0 if max_abs == 0.0 else math.inf)
    return Figures(max_abs, max_abs / scale)


def side_by_side(a: np.ndarray, a_units: Units | None, b: np.ndarray, b_units: Units | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` in one common layout (``a``'s order, merged axes kept merged), or
    Incomparable. Without labels on either side, equal shapes compare as they are."""
    if a_units is None or b_units is None:
        if a.shape == b.shape:
            return a, b
        raise Incomparable(f"shapes {a.shape} and {b.shape} differ and the layout of "
                           f"{'the source' if a_units is None else 'the target'} is unknown")
    common = _common_units(list(a_units), list(b_units))
    a2, b2 = _into(a, a_units, common), _into(b, b_units, common)
    if a2.shape != b2.shape:
        raise Incomparable(f"shapes {a.shape} {_show(a_units)} and {b.shape} {_show(b_units)} "
                           "do not match after the layout change")
    return a2, b2


def _atoms(unit) -> tuple[str, ...]:
    return tuple(unit) if isinstance(unit, tuple) else (unit,)


def _show(units: Units) -> str:
    return "(" + ", ".join("·".join(_atoms(u)) for u in units) + ")"


def _common_units(a_units: list, b_units: list) -> list:
    """``a``'s units with every merged unit of ``b`` merged in too (at its first atom)."""
    a_atoms = [x for u in a_units for x in _atoms(u)]
    b_atoms = [x for u in b_units for x in _atoms(u)]
    if sorted(a_atoms) != sorted(b_atoms) or len(set(a_atoms)) != len(a_atoms):
        raise Incomparable(f"axes {_show(a_units)} and {_show(b_units)} are not the same axes")
    common = list(a_units)
    for unit in b_units:
        if not isinstance(unit, tuple) or unit in common:
            continue
        spots = [i for i, u in enumerate(common) if set(_atoms(u)) & set(unit)]
        if any(isinstance(common[i], tuple) for i in spots):
            raise Incomparable(f"axes {_show(a_units)} and {_show(b_units)} merge different "
                               "axes")
        first = spots[0]
        common = [u for i, u in enumerate(common) if i not in spots[1:]]
        common[first] = unit
    return common


def _into(arr: np.ndarray, units: Units, common: list) -> np.ndarray:
    if arr.ndim != len(units):
        raise Incomparable(f"an array of {arr.ndim} axes labelled {_show(units)}")
    position = {unit: axis for axis, unit in enumerate(units)}
    order, sizes = [], []
    for unit in common:
        if unit in position:                          # held as one axis already
            order.append(position[unit])
            sizes.append(arr.shape[position[unit]])
            continue
        axes = [position[atom] for atom in _atoms(unit)]   # separate here: merge them
        order += axes
        sizes.append(math.prod(arr.shape[a] for a in axes))
    return np.transpose(arr, order).reshape(sizes)


# ---- fused activations --------------------------------------------------------------------------

def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The built-in activations by name, in numpy (each as Keras defines it).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: 1.0507009873554805 * np.where(
        x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "exponential": np.exp,
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}
NO_ACTIVATION = (None, "linear")


def activation_of(op: str, attrs, convention: Convention) -> str | None:
    """The activation a dense or convolution layer applies to its output, as its convention
    names it (``Convention.activation``), None for none. A recurrent layer's ``activation`` is
    its cell's inner one, not applied to what it outputs."""
    if op != "dense" and spatial_rank(op) is None:
        return None
    act = convention.activation(attrs)
    return None if act in NO_ACTIVATION else str(act)


def reconcile(source_act: str | None, target_act: str | None, source: np.ndarray,
              target: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Apply the activation one side fuses into its layer to the other side's (pre-activation)
    output; Incomparable when both fuse different ones or the activation is unknown."""
    if source_act == target_act:
        return source, target, ""
    if source_act is not None and target_act is not None:
        raise Incomparable(f"the source layer applies {source_act}, the target layer "
                           f"{target_act}")
    act = source_act or target_act
    fn = ACTIVATIONS.get(act)
    if fn is None:
        raise Incomparable(f"the {'source' if source_act else 'target'} layer applies the "
                           f"activation {act!r}, which verification does not know")
    if source_act is not None:
        return source, fn(np.asarray(target)), \
            f"{act} (fused in the source layer) applied to the target's output"
    return fn(np.asarray(source)), target, \
        f"{act} (fused in the target layer) applied to the source's output"
