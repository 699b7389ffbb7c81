"""Adaptations a user asks for (``--adapt``): tensors made to fit a target of another size.

* ``resample_grid`` — 2-D absolute position embeddings at another grid size (a ViT trained at
  224 meeting a 384 model), as ``timm.layers.resample_abs_pos_embed`` does: the prefix tokens
  (``cls``, distillation, registers) are kept, the grid is resampled with bicubic interpolation
  with antialiasing (``torch.nn.functional.interpolate(mode="bicubic", antialias=True,
  align_corners=False)``), in numpy here.
* ``adapt_in_channels`` — a stem convolution's kernel for another number of input channels, as
  ``timm.models._manipulate.adapt_input_conv`` does: summed over the RGB channels for one
  channel, repeated and scaled by ``3 / channels`` for more.

The interpolation is the one PyTorch's antialiased kernels (and Pillow) use: separable, each
output sample a normalised weighted sum of the inputs within ``2 * max(scale, 1)`` of its centre,
weights from Keys' cubic with ``a = -0.5``; inputs beyond the edge are left out (the weights of
the others renormalised), not clamped. ``tests/transforms/test_adapt.py`` checks it against
torch.
"""
from __future__ import annotations

import math

import numpy as np

from .steps import _fail, register

CUBIC_A = -0.5            # Keys' cubic as the antialiased kernels use it (plain bicubic: -0.75)
CUBIC_SUPPORT = 2.0       # the cubic's half width


def _cubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    a = CUBIC_A
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of antialiased bicubic resampling along one axis (float64)."""
    scale = n_in / n_out
    support = CUBIC_SUPPORT * max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)          # int(): toward zero, as C++ casts
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = _cubic((j - center + 0.5) * inv)
        out[i, lo:hi] = w / w.sum()
    return out


def resample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``grid`` (h, w, d) resampled to ``size`` + (d,)."""
    rows = resample_matrix(grid.shape[0], size[0])
    cols = resample_matrix(grid.shape[1], size[1])
    return np.einsum("ih,hwd,jw->ijd", rows, grid, cols)


@register("resample_grid")
class _ResampleGrid:
    """Position embeddings ``(..., prefix + h·w, d)`` → ``(..., prefix + H·W, d)``: the first
    ``prefix`` tokens kept, the ``grid`` (h, w) resampled to ``size`` (H, W)."""

    @staticmethod
    def shape(shapes, prefix, grid, size):
        (s,) = shapes
        if len(s) < 2 or s[-2] != prefix + grid[0] * grid[1]:
            _fail(f"shape {tuple(s)} does not hold {prefix} prefix tokens and a {grid[0]}x"
                  f"{grid[1]} grid on its second last axis")
        return tuple(s[:-2]) + (prefix + size[0] * size[1], s[-1])

    @staticmethod
    def apply(arrays, prefix, grid, size):
        (a,) = arrays
        lead, d = a.shape[:-2], a.shape[-1]
        flat = a.reshape((-1,) + a.shape[-2:])
        out = []
        for item in flat:
            tokens = item[prefix:].astype(np.float64).reshape(grid[0], grid[1], d)
            resampled = resample(tokens, tuple(size)).reshape(-1, d)
            out.append(np.concatenate([item[:prefix].astype(np.float64), resampled]))
        return np.stack(out).reshape(lead + (prefix + size[0] * size[1], d)).astype(a.dtype)


@register("adapt_in_channels")
class _AdaptInChannels:
    """A kernel's ``axis`` (its input channels) made ``channels`` long, as timm adapts a stem
    to other inputs: one channel takes the sum over the RGB ones (over each group of three of a
    space-to-depth stem); more channels take the RGB kernel repeated, cut to ``channels`` and
    scaled by 3 / ``channels``. Anything else is refused, as timm refuses it."""

    @staticmethod
    def shape(shapes, axis, channels):
        (s,) = shapes
        have = s[axis]
        if channels == 1 and (have == 3 or (have > 3 and have % 3 == 0)):
            pass
        elif channels != 1 and have != 3:
            _fail(f"input channels {have} -> {channels}: only a 3-channel (RGB) kernel is "
                  f"adapted to another channel count")
        elif channels == 1:
            _fail(f"input channels {have} -> 1: the kernel's channels are not RGB groups")
        out = list(s)
        out[axis] = channels
        return tuple(out)

    @staticmethod
    def apply(arrays, axis, channels):
        (k,) = arrays
        w = k.astype(np.float32)
        have = w.shape[axis]
        if channels == 1:
            if have > 3:                        # space-to-depth stems: sum within RGB groups
                shape = list(w.shape)
                shape[axis:axis + 1] = [have // 3, 3]
                w = w.reshape(shape).sum(axis=axis + 1)
            else:
                w = w.sum(axis=axis, keepdims=True)
        else:
            w = np.repeat(w[np.newaxis], math.ceil(channels / 3), axis=0)
            w = np.concatenate(list(w), axis=axis)
            index = [slice(None)] * w.ndim
            index[axis] = slice(0, channels)
            w = w[tuple(index)] * np.float32(3 / channels)
        return w.astype(k.dtype)
