"""Axis labels of each framework's parameters and layer outputs, as data.

Transposes are derived from these labels, never guessed from rank: a square dense kernel looks
the same in (out, in) and (in, out), only the convention tells them apart. The labels of what a
layer outputs (``activation_axes``) let a verification put a Keras (n, h, w, c) feature map
beside a torch (n, c, h, w) one, or an ONNX LSTM's (t, dir, n, h) beside torch's (n, t, dir·h).
"""
from __future__ import annotations

from typing import Any, Mapping

_SPATIAL = {1: ("k",), 2: ("kh", "kw"), 3: ("kd", "kh", "kw")}

# Gate order of recurrent layers along their stacked axis, per convention.
GATE_ORDER = {
    ("torch", "lstm"): "ifgo", ("keras", "lstm"): "ifco", ("onnx", "lstm"): "iofc",
    ("torch", "gru"): "rzn", ("keras", "gru"): "zrh", ("onnx", "gru"): "zrh",
}

# Per-channel roles of normalisation layers (and PReLU), labelled "c".
_CHANNEL_ROLES = {"gamma", "beta", "moving_mean", "moving_var"}


def spatial_rank(op: str) -> int | None:
    """1, 2 or 3 for conv-like ops (conv2d, conv_transpose1d ...), else None."""
    if op[-2:] in ("1d", "2d", "3d") and ("conv" in op):
        return int(op[-2])
    return None


def axes_for(framework: str, op: str, role: str, ndim: int) -> tuple[str, ...] | None:
    """Axis labels of a parameter, or None when the convention does not fix them."""
    labels = _axes(framework, op, role, ndim)
    if labels is not None and len(labels) != ndim:
        return None
    return labels


def _axes(framework: str, op: str, role: str, ndim: int) -> tuple[str, ...] | None:
    if ndim == 0:
        return ()
    if role in ("bias", "recurrent_bias", "query_bias", "key_bias", "value_bias",
                "output_bias", "in_proj_bias") and ndim == 1:
        return ("out",)
    if role in _CHANNEL_ROLES and ndim == 1:
        return ("c",)
    if role == "alpha" and ndim == 1:
        return ("c",)
    if role == "embeddings" or (op == "embedding" and role == "kernel"):
        return ("vocab", "dim") if ndim == 2 else None
    rank = spatial_rank(op)
    if framework in ("torch", "onnx"):
        return _torch_like(op, role, ndim, rank)
    if framework == "keras":
        return _keras(op, role, ndim, rank)
    return None


def _torch_like(op: str, role: str, ndim: int, rank: int | None) -> tuple[str, ...] | None:
    if role not in ("kernel", "recurrent_kernel", "in_proj_kernel", "query_kernel",
                    "key_kernel", "value_kernel", "output_kernel"):
        return None
    if rank is not None and ndim == rank + 2:
        if op.startswith("conv_transpose"):
            return ("in", "out") + _SPATIAL[rank]
        return ("out", "in") + _SPATIAL[rank]
    if ndim == 2:
        return ("out", "in")
    if ndim == 3 and op in ("lstm", "gru", "simple_rnn"):   # ONNX W/R: (directions, G*H, in)
        return ("dir", "out", "in")
    return None


def _keras(op: str, role: str, ndim: int, rank: int | None) -> tuple[str, ...] | None:
    if role == "depthwise_kernel" and rank is not None and ndim == rank + 2:
        return _SPATIAL[rank] + ("c", "m")
    if role == "pointwise_kernel" and rank is not None and ndim == rank + 2:
        return _SPATIAL[rank] + ("in", "out")
    if role == "kernel" and rank is not None and ndim == rank + 2:
        if op.startswith("conv_transpose"):
            return _SPATIAL[rank] + ("out", "in")
        if op.startswith("depthwise"):
            return _SPATIAL[rank] + ("c", "m")
        return _SPATIAL[rank] + ("in", "out")
    if role in ("kernel", "recurrent_kernel") and ndim == 2:
        return ("in", "out")
    if role == "bias" and ndim == 2 and op == "gru":       # reset_after: [input; recurrent]
        return ("pair", "out")
    return None


# ---- activations ------------------------------------------------------------------------------
# What a layer *outputs*, labelled per axis, so that a verification can map one framework's
# activation onto another's: "n" batch, "c" channels / features, "t" time steps, "h"/"w"/"d"
# spatial axes, "dir" directions of a recurrent layer, "a0".. other positions. A tuple inside
# the labels is one axis holding several (row-major): torch's bidirectional LSTM output axis
# ("dir", "c") is ONNX's separate dir and hidden axes merged.
_ACT_SPATIAL = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
_PER_CHANNEL_OPS = frozenset({"batchnorm", "instancenorm", "groupnorm", "prelu"})
_RECURRENT_OPS = frozenset({"lstm", "gru", "simple_rnn"})
_CHANNELS_LAST_FRAMEWORKS = frozenset({"keras"})

Units = tuple  # of str | tuple[str, ...]


def data_format(framework: str, attrs: Mapping[str, Any]) -> str:
    """``channels_first`` or ``channels_last`` of a layer's feature maps: its own
    ``data_format`` (Keras), a Keras normalisation's ``axis`` 1, else the framework's."""
    fmt = attrs.get("data_format")
    if fmt in ("channels_first", "channels_last"):
        return fmt
    if framework in _CHANNELS_LAST_FRAMEWORKS and attrs.get("axis") in (1, (1,), [1]):
        return "channels_first"
    return "channels_last" if framework in _CHANNELS_LAST_FRAMEWORKS else "channels_first"


def feature_map_axes(fmt: str, ndim: int) -> Units | None:
    """Labels of an (n, c, spatial...) or (n, spatial..., c) tensor of ``ndim`` axes."""
    if ndim == 2:
        return ("n", "c")
    spatial = _ACT_SPATIAL.get(ndim - 2)
    if spatial is None:
        return None
    return ("n", "c") + spatial if fmt == "channels_first" else ("n",) + spatial + ("c",)


def activation_axes(framework: str, op: str, attrs: Mapping[str, Any], ndim: int
                    ) -> Units | None:
    """Labels of the output of a layer (``op`` with ``attrs``) in ``framework``'s convention,
    or None when the convention does not fix them."""
    if op in _RECURRENT_OPS:
        return _recurrent_output(framework, attrs, ndim)
    if op == "attention" and framework == "torch" and ndim == 3:
        return ("n", "t", "c") if attrs.get("batch_first") else ("t", "n", "c")
    if spatial_rank(op) is not None or op in _PER_CHANNEL_OPS:
        return feature_map_axes(data_format(framework, attrs), ndim)
    if ndim >= 2:              # dense, embedding, layer norms ...: features on the last axis
        return ("n",) + tuple(f"a{i}" for i in range(ndim - 2)) + ("c",)
    return None


def _recurrent_output(framework: str, attrs: Mapping[str, Any], ndim: int) -> Units | None:
    features = ("dir", "c")
    if framework == "onnx":            # Y: (T, dirs, N, H), or (N, T, dirs, H) with layout=1
        return ("n", "t", "dir", "c") if attrs.get("layout") == 1 else ("t", "dir", "n", "c")
    if framework == "keras":
        if attrs.get("bidirectional") and attrs.get("merge_mode", "concat") != "concat":
            return None                # summed / averaged directions have no dir axis
        return ("n", "t", features) if ndim == 3 else ("n", features) if ndim == 2 else None
    if attrs.get("cell"):              # torch *Cell: (N, H)
        return ("n", features) if ndim == 2 else None
    if ndim != 3:
        return None
    return ("n", "t", features) if attrs.get("batch_first") else ("t", "n", features)
