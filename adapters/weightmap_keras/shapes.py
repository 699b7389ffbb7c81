"""Per-sample output shapes of Keras layers, computed from their configs (no framework).

Enough of Keras' shape rules to know what a ``Flatten`` receives: inputs, convolutions (same /
valid / causal padding, strides, dilation), transposed convolutions, pooling, padding, cropping,
upsampling, reshapes and the layers that keep the shape. Shapes exclude the batch axis; an
unknown dimension is None; an unknown layer gives None (the caller then knows nothing).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

Shape = tuple  # per-sample dims, int or None

# Layers whose output has their input's shape.
PASS_THROUGH = frozenset({
    "BatchNormalization", "SyncBatchNormalization", "LayerNormalization", "GroupNormalization",
    "UnitNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax",
    "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Rescaling",
    "Normalization", "Masking", "Identity",
})
MERGE_SAME = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def _tuple(value: Any, rank: int) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * rank


def _channels_first(cfg: Mapping[str, Any]) -> bool:
    return cfg.get("data_format") == "channels_first"


def _split(shape: Shape, cfg: Mapping[str, Any]) -> tuple[Shape, Any]:
    """(spatial dims, channels) of a per-sample shape in the layer's data format."""
    if _channels_first(cfg):
        return shape[1:], shape[0]
    return shape[:-1], shape[-1]


def _join(spatial: Sequence, channels: Any, cfg: Mapping[str, Any]) -> Shape:
    return (channels, *spatial) if _channels_first(cfg) else (*spatial, channels)


def conv_length(n: int | None, k: int, padding: str, stride: int, dilation: int = 1
                ) -> int | None:
    if n is None:
        return None
    if padding in ("same", "causal"):
        return math.ceil(n / stride)
    if padding == "valid":
        eff = (k - 1) * dilation + 1
        return max(0, (n - eff) // stride + 1)
    if padding == "full":
        return (n + (k - 1) * dilation) // stride + 1 if stride else None
    return None


def deconv_length(n: int | None, k: int, padding: str, stride: int, dilation: int,
                  output_padding: int | None) -> int | None:
    """Keras' ``deconv_output_length``."""
    if n is None:
        return None
    k = k + (k - 1) * (dilation - 1)
    if output_padding is None:
        if padding == "valid":
            return n * stride + max(k - stride, 0)
        if padding == "full":
            return n * stride - (stride + k - 2)
        return n * stride
    pad = {"same": k // 2, "valid": 0, "full": k - 1}.get(padding, 0)
    return (n - 1) * stride + k - 2 * pad + output_padding


def _conv(cfg, shape: Shape, rank: int, channels_out: Callable[[Any], Any]) -> Shape:
    spatial, c = _split(shape, cfg)
    ks, st = _tuple(cfg["kernel_size"], rank), _tuple(cfg.get("strides", 1), rank)
    dil = _tuple(cfg.get("dilation_rate", 1), rank)
    pad = cfg.get("padding", "valid")
    out = [conv_length(n, k, pad, s, d) for n, k, s, d in zip(spatial, ks, st, dil)]
    return _join(out, channels_out(c), cfg)


def _conv_transpose(cfg, shape: Shape, rank: int) -> Shape:
    spatial, _ = _split(shape, cfg)
    ks, st = _tuple(cfg["kernel_size"], rank), _tuple(cfg.get("strides", 1), rank)
    dil = _tuple(cfg.get("dilation_rate", 1), rank)
    op = cfg.get("output_padding")
    ops = _tuple(op, rank) if op is not None else (None,) * rank
    out = [deconv_length(n, k, cfg.get("padding", "valid"), s, d, o)
           for n, k, s, d, o in zip(spatial, ks, st, dil, ops)]
    return _join(out, cfg["filters"], cfg)


def _pool(cfg, shape: Shape, rank: int) -> Shape:
    spatial, c = _split(shape, cfg)
    ps = _tuple(cfg.get("pool_size", 2), rank)
    st = cfg.get("strides")
    st = ps if st is None else _tuple(st, rank)
    out = [conv_length(n, k, cfg.get("padding", "valid"), s) for n, k, s in zip(spatial, ps, st)]
    return _join(out, c, cfg)


def _pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    """Keras padding/cropping arguments: int, (a, b ...) or ((a0, a1), (b0, b1) ...)."""
    if isinstance(value, int):
        return [(value, value)] * rank
    items = list(value)
    if rank == 1 and len(items) == 2 and all(isinstance(v, int) for v in items):
        return [(items[0], items[1])]
    return [tuple(v) if isinstance(v, (list, tuple)) else (v, v) for v in items]


def _pad(cfg, shape: Shape, rank: int, key: str, sign: int) -> Shape:
    spatial, c = _split(shape, cfg)
    pairs = _pairs(cfg[key], rank)
    out = [None if n is None else n + sign * (a + b) for n, (a, b) in zip(spatial, pairs)]
    return _join(out, c, cfg)


def _reshape(cfg, shape: Shape) -> Shape | None:
    target = list(cfg["target_shape"])
    if -1 in target or None in target:
        total = math.prod(shape) if None not in shape else None
        known = math.prod(d for d in target if d not in (-1, None))
        fill = total // known if total is not None and known else None
        target = [fill if d in (-1, None) else d for d in target]
    return tuple(target)


def _rank_of(class_name: str) -> int:
    for rank in (1, 2, 3):
        if f"{rank}D" in class_name:
            return rank
    return 2


def output_shape(class_name: str, cfg: Mapping[str, Any],
                 inputs: Sequence[Shape | None]) -> Shape | None:
    """The per-sample output shape, or None when unknown."""
    if not inputs or inputs[0] is None:
        return None
    shape = tuple(inputs[0])
    try:
        return _rule(class_name, cfg, shape, inputs)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None                   # a config this module does not understand: unknown


def _rule(cls: str, cfg: Mapping[str, Any], shape: Shape, inputs) -> Shape | None:
    rank = _rank_of(cls)
    if cls in PASS_THROUGH or cls in MERGE_SAME:
        return shape
    if cls.startswith(("Conv", "Convolution")) and "Transpose" in cls:
        return _conv_transpose(cfg, shape, rank)
    if cls.startswith(("Conv", "Convolution", "SeparableConv")):
        return _conv(cfg, shape, rank, lambda c: cfg["filters"])
    if cls.startswith("DepthwiseConv"):
        return _conv(cfg, shape, rank,
                     lambda c: None if c is None else c * cfg.get("depth_multiplier", 1))
    if cls.startswith(("MaxPooling", "AveragePooling", "MaxPool", "AvgPool")):
        return _pool(cfg, shape, rank)
    if cls.startswith(("GlobalMaxPooling", "GlobalAveragePooling", "GlobalMaxPool",
                       "GlobalAvgPool")):
        spatial, c = _split(shape, cfg)
        return _join([1] * len(spatial), c, cfg) if cfg.get("keepdims") else (c,)
    if cls.startswith("ZeroPadding"):
        return _pad(cfg, shape, rank, "padding", +1)
    if cls.startswith("Cropping"):
        return _pad(cfg, shape, rank, "cropping", -1)
    if cls.startswith("UpSampling"):
        spatial, c = _split(shape, cfg)
        size = _tuple(cfg.get("size", 2), rank)
        return _join([None if n is None else n * s for n, s in zip(spatial, size)], c, cfg)
    if cls == "Flatten":
        return (None if None in shape else math.prod(shape),)
    if cls == "Reshape":
        return _reshape(cfg, shape)
    if cls == "Permute":
        return tuple(shape[d - 1] for d in cfg["dims"])
    if cls == "Dense":
        return (*shape[:-1], cfg["units"])
    if cls == "Embedding":
        return (*shape, cfg["output_dim"])
    if cls in ("LSTM", "GRU", "SimpleRNN"):
        return (shape[0], cfg["units"]) if cfg.get("return_sequences") else (cfg["units"],)
    if cls == "Concatenate":
        if any(s is None for s in inputs):
            return None
        axis = cfg.get("axis", -1)
        axis = axis - 1 if axis > 0 else axis      # config axes count the batch axis
        dims = [s[axis] for s in inputs]
        out = list(shape)
        out[axis] = None if None in dims else sum(dims)
        return tuple(out)
    return None
