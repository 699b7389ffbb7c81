"""Axis labels of each framework's parameters, as data.

Transposes are derived from these labels, never guessed from rank: a square dense kernel looks
the same in (out, in) and (in, out), only the convention tells them apart.
"""
from __future__ import annotations

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
