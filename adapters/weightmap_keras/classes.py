"""Keras layer classes as data: op kind, attributes kept, and the role of each variable.

Two ways to name a variable's role, one per file family:

* Keras 2 / tf_keras (legacy HDF5, live tf_keras): every weight has a name
  (``block1_conv1/kernel:0``); the role comes from its last part (``role_from_weight_name``).
* Keras 3 ``.weights.h5``: variables are numbered (``vars/0``, ``vars/1`` ...) in the order the
  layer created them; the role comes from the layer class, its config flags and the index
  (``k3_roles``). The tables below were checked against files written by keras 3.15 (the tests
  compare them with the variables' own names on live models).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from .convention import CONVENTION

_CONV = {
    "Conv1D": "conv1d", "Conv2D": "conv2d", "Conv3D": "conv3d",
    "Convolution1D": "conv1d", "Convolution2D": "conv2d", "Convolution3D": "conv3d",
    "DepthwiseConv1D": "depthwise_conv1d", "DepthwiseConv2D": "depthwise_conv2d",
    "SeparableConv1D": "separable_conv1d", "SeparableConv2D": "separable_conv2d",
    "SeparableConvolution1D": "separable_conv1d", "SeparableConvolution2D": "separable_conv2d",
    "Conv1DTranspose": "conv_transpose1d", "Conv2DTranspose": "conv_transpose2d",
    "Conv3DTranspose": "conv_transpose3d", "Convolution1DTranspose": "conv_transpose1d",
    "Convolution2DTranspose": "conv_transpose2d", "Convolution3DTranspose": "conv_transpose3d",
}
OP_OF_CLASS: dict[str, str] = {
    "Dense": "dense", **_CONV,
    "BatchNormalization": "batchnorm", "SyncBatchNormalization": "batchnorm",
    "LayerNormalization": "layernorm", "GroupNormalization": "groupnorm",
    "RMSNormalization": "rmsnorm",
    "Embedding": "embedding", "LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn",
    "PReLU": "prelu", "MultiHeadAttention": "attention",
}
RNN_CLASSES = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}
WRAPPERS = frozenset({"Bidirectional", "TimeDistributed"})
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
_MHA_PARTS = {"query": "query", "key": "key", "value": "value", "attention_output": "output",
              "query_dense": "query", "key_dense": "key", "value_dense": "value",
              "output_dense": "output"}

# Attributes kept per op family (taken from the layer config when the file has one).
_CONV_KEYS = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
              "depth_multiplier", "output_padding", "use_bias", "data_format", "activation")
_RNN_KEYS = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences",
             "return_state", "go_backwards", "stateful", "unit_forget_bias", "reset_after")
_ATTR_KEYS = {
    "dense": ("units", "use_bias", "activation"),
    "batchnorm": ("epsilon", "momentum", "center", "scale", "axis"),
    "layernorm": ("epsilon", "axis", "center", "scale", "rms_scaling"),
    "rmsnorm": ("epsilon", "axis", "center", "scale", "rms_scaling"),
    "groupnorm": ("groups", "epsilon", "axis", "center", "scale"),
    "embedding": ("input_dim", "output_dim", "mask_zero"),
    "lstm": _RNN_KEYS, "gru": _RNN_KEYS, "simple_rnn": _RNN_KEYS,
    "prelu": ("shared_axes",),
    "attention": ("num_heads", "key_dim", "value_dim", "use_bias", "output_shape", "dropout"),
}

# Legacy weight names (last part, ":0" removed) -> role.
_NAME_ROLE = {
    "kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta",
    "moving_mean": "moving_mean", "moving_variance": "moving_var",
    "recurrent_kernel": "recurrent_kernel", "depthwise_kernel": "depthwise_kernel",
    "pointwise_kernel": "pointwise_kernel", "embeddings": "embeddings", "alpha": "alpha",
}


def to_snake_case(name: str) -> str:
    """Keras' own ``naming.to_snake_case``: the group names of ``.weights.h5`` files."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# Snake-case names of the classes above: a Keras 3 weights group or an auto-generated layer
# name (``conv2d_transpose_1``) says which class made it.
_SNAKE_TO_CLASS = {to_snake_case(c): c for c in sorted(
    set(OP_OF_CLASS) | WRAPPERS | MODEL_CLASSES | {"InputLayer", "Flatten", "Lambda"})}


def class_from_name(name: str) -> str | None:
    """The class of an auto-named object: ``conv2d_10`` -> Conv2D, ``p_re_lu`` -> PReLU,
    ``forward_lstm_1`` -> LSTM (Bidirectional's copies). None when the name says nothing."""
    base = re.sub(r"^(forward|backward)_", "", name)
    for candidate in (base, re.sub(r"_\d+$", "", base)):
        if candidate in _SNAKE_TO_CLASS:
            return _SNAKE_TO_CLASS[candidate]
    return None


def op_of(class_name: str | None, config: Mapping[str, Any] | None = None) -> str:
    """The op kind of a class; wrappers take their inner layer's op."""
    if class_name in WRAPPERS and config:
        inner = inner_layer(config)
        return op_of(inner[0], inner[1]) if inner else "opaque"
    if class_name == "LayerNormalization" and config and config.get("rms_scaling"):
        return "rmsnorm"
    return OP_OF_CLASS.get(class_name or "", "opaque")


def inner_layer(config: Mapping[str, Any], key: str = "layer"
                ) -> tuple[str | None, Mapping[str, Any] | None] | None:
    """(class, config) of a wrapper's inner layer (``layer`` or ``backward_layer``)."""
    inner = config.get(key) if config else None
    if not isinstance(inner, Mapping):
        return None
    cfg = inner.get("config")
    return inner.get("class_name"), cfg if isinstance(cfg, Mapping) else None


def source_type(class_name: str | None, config: Mapping[str, Any] | None) -> str:
    if class_name in WRAPPERS and config:
        inner = inner_layer(config)
        if inner and inner[0]:
            return f"{class_name}({inner[0]})"
    return class_name or ""


def freeze(value: Any) -> Any:
    """Lists -> tuples, recursively, so file configs (lists) and live configs (tuples) agree."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): freeze(v) for k, v in value.items()}
    return value


def attrs_from_config(class_name: str | None, config: Mapping[str, Any] | None,
                      op: str) -> dict[str, Any]:
    """The attributes weightmap keeps for a layer: data only, nothing is ever called."""
    attrs: dict[str, Any] = {}
    if config is None:
        attrs["inferred"] = True
    elif class_name in WRAPPERS:
        inner = inner_layer(config)
        if inner:
            attrs.update(attrs_from_config(inner[0], inner[1], op))
        if class_name == "Bidirectional":
            attrs["bidirectional"] = True
            if "merge_mode" in config:
                attrs["merge_mode"] = config["merge_mode"]
        else:
            attrs["time_distributed"] = True
    else:
        keys = _CONV_KEYS if op in _CONV.values() else _ATTR_KEYS.get(op, ())
        for key in keys:
            if key in config:
                attrs[key] = freeze(config[key])
    if op in ("lstm", "gru"):
        attrs["gate_order"] = CONVENTION.gate_orders[op]
    return attrs


# --------------------------------------------------------------------------- legacy names
def role_from_weight_name(name: str, op: str) -> str:
    """Role of a named weight: ``dense/kernel:0`` -> kernel, ``mha/query/bias:0`` -> query_bias."""
    parts = [re.sub(r":\d+$", "", p) for p in name.split("/")]
    last = parts[-1]
    role = _NAME_ROLE.get(last, "other")
    if op == "attention" and len(parts) >= 2 and parts[-2] in _MHA_PARTS \
            and last in ("kernel", "bias"):
        return f"{_MHA_PARTS[parts[-2]]}_{last}"
    if op.startswith("depthwise_conv") and role == "depthwise_kernel":
        return "kernel"        # a depthwise conv has one kernel; torch calls it weight too
    return role


def direction_of(name: str) -> str | None:
    """``forward``/``backward`` for weights of a Bidirectional wrapper, from their names."""
    for part in name.split("/"):
        if part.startswith("forward_") or part == "forward_layer":
            return "forward"
        if part.startswith("backward_") or part == "backward_layer":
            return "backward"
    return None


# --------------------------------------------------------------------------- keras 3 indices
def _flag(config: Mapping[str, Any] | None, key: str, default: bool = True) -> bool:
    return bool(config.get(key, default)) if config is not None else default


def _own_roles(class_name: str | None, config: Mapping[str, Any] | None, n: int) -> list[str]:
    """Roles of ``vars/0..n-1`` of a layer's own variables, or ``other`` where unknown."""
    op = op_of(class_name, config)
    table: list[str] | None = None
    if op in ("dense",) or op in _CONV.values():
        first = ["depthwise_kernel", "pointwise_kernel"] if op.startswith("separable") \
            else ["kernel"]
        bias = _flag(config, "use_bias") if config is not None else n > len(first)
        table = first + (["bias"] if bias else [])
    elif op == "batchnorm":
        table = _norm_roles(config, n, stats=True)
    elif class_name == "RMSNormalization":
        table = ["gamma"]                          # Keras calls it "scale"
    elif op in ("layernorm", "rmsnorm", "groupnorm"):
        table = _norm_roles(config, n, stats=False)
    elif op == "embedding":
        table = ["embeddings"]
    elif op == "prelu":
        table = ["alpha"]
    if table is None:
        return ["other"] * n
    return table[:n] + ["other"] * (n - len(table))


def _norm_roles(config: Mapping[str, Any] | None, n: int, stats: bool) -> list[str]:
    tail = ["moving_mean", "moving_var"] if stats else []
    if config is not None:
        scale = _flag(config, "scale") or _flag(config, "rms_scaling", False)
        center = _flag(config, "center") and not _flag(config, "rms_scaling", False)
        return (["gamma"] if scale else []) + (["beta"] if center else []) + tail
    affine = n - len(tail)
    if affine == 2:
        return ["gamma", "beta"] + tail
    # one affine variable: gamma (center=False) or beta (scale=False); the file cannot say
    return ["other"] * affine + tail


def _cell_roles(config: Mapping[str, Any] | None, n: int) -> list[str]:
    table = ["kernel", "recurrent_kernel"] + (["bias"] if _flag(config, "use_bias", n > 2) else [])
    return table[:n] + ["other"] * (n - len(table))


def k3_roles(class_name: str | None, config: Mapping[str, Any] | None, owner: str,
             n: int) -> list[str]:
    """Roles of the ``n`` variables stored at ``<layer>/<owner>/vars/i`` (owner "" = the layer's
    own variables, ``cell`` for RNNs, ``forward_layer/cell`` for Bidirectional ...)."""
    head, _, rest = owner.partition("/")
    if class_name == "Bidirectional" and head in ("forward_layer", "backward_layer"):
        key = "backward_layer" if head == "backward_layer" and config and \
            config.get("backward_layer") else "layer"
        inner = inner_layer(config or {}, key) or (None, None)
        return k3_roles(inner[0], inner[1], rest, n)
    if class_name == "TimeDistributed" and head == "layer":
        inner = inner_layer(config or {}) or (None, None)
        return k3_roles(inner[0], inner[1], rest, n)
    if class_name in RNN_CLASSES and owner == "cell":
        return _cell_roles(config, n)
    if class_name == "MultiHeadAttention" and owner in _MHA_PARTS:
        part = _MHA_PARTS[owner]
        return ([f"{part}_kernel", f"{part}_bias"] + ["other"] * n)[:n]
    if owner == "":
        return _own_roles(class_name, config, n)
    return ["other"] * n


# Sub-objects in the order a layer uses them (forward before backward, q/k/v before output);
# anything else keeps the alphabetical order Keras walks attributes in.
_OWNER_RANK = {"": 0, "cell": 1, "layer": 1, "forward_layer": 1, "backward_layer": 2,
               "query_dense": 1, "key_dense": 2, "value_dense": 3, "output_dense": 4}


def owner_sort_key(owner: str) -> tuple:
    head = owner.split("/")[0]
    return (_OWNER_RANK.get(head, 5), owner)
