"""Op kinds, attributes and parameter roles of live torch modules, told by module type.

``describe(module, nn)`` walks a table of (module classes, handler); the first class that matches
wins, so subclasses (``NonDynamicallyQuantizableLinear``, ``SyncBatchNorm`` ...) are covered.
A module type that is not in the table is ``opaque``: its tensors are kept with neutral roles and
no axis labels, because nothing says how a custom module lays them out. Custom types known by
name: Hugging Face's ``Conv1D`` (GPT-2) is a dense layer whose weight is stored (in, out), the
reverse of ``nn.Linear``; its kernel carries the labels ``attrs["kernel_axes"]``. A module whose
class is named like an RMSNorm (``LlamaRMSNorm``, ``RMSNorm``, ``T5LayerNorm`` ...:
``CUSTOM_NORMS``) and holds one 1-D ``weight`` is an ``rmsnorm`` (its ``eps`` or
``variance_epsilon`` kept): the weight-only norm every hand-written Llama defines.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .convention import CONVENTION, recurrent_slot

_NORM_ROLES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
               "running_var": "moving_var", "num_batches_tracked": "num_batches_tracked"}
_ROLES: dict[str, dict[str, str]] = {
    "batchnorm": _NORM_ROLES, "instancenorm": _NORM_ROLES, "layernorm": _NORM_ROLES,
    "groupnorm": _NORM_ROLES, "rmsnorm": _NORM_ROLES,
    "embedding": {"weight": "embeddings"},
    "prelu": {"weight": "alpha"},
    "attention": {"in_proj_weight": "in_proj_kernel", "in_proj_bias": "in_proj_bias",
                  "q_proj_weight": "query_kernel", "k_proj_weight": "key_kernel",
                  "v_proj_weight": "value_kernel"},
}
_DEFAULT_ROLES = {"weight": "kernel", "bias": "bias"}
# Custom norm classes known by name (transformers and hand-written models define their own).
CUSTOM_NORMS = ((re.compile(r"rms_?norm", re.I), "rmsnorm"),
                (re.compile(r"^T5LayerNorm$"), "rmsnorm"))
_EPS_ATTRS = ("eps", "variance_epsilon", "epsilon")


def role_for(op: str, key: str) -> str:
    """The role of a module's own tensor ``key`` (``weight``, ``running_mean`` ...)."""
    if op in ("lstm", "gru", "simple_rnn"):
        found = recurrent_slot(key)
        return "other" if found is None or found[0] == "projection" else found[0]
    return _ROLES.get(op, _DEFAULT_ROLES).get(key, "other")


def _dims(value: Any) -> Any:
    return tuple(value) if isinstance(value, (tuple, list)) else value


def _dense(m: Any) -> tuple[str, dict]:
    return "dense", {"in_features": m.in_features, "out_features": m.out_features,
                     "use_bias": m.bias is not None}


def _conv(m: Any) -> tuple[str, dict]:
    rank = len(m.kernel_size)
    attrs = {"in_channels": m.in_channels, "out_channels": m.out_channels,
             "kernel_size": _dims(m.kernel_size), "stride": _dims(m.stride),
             "padding": _dims(m.padding), "dilation": _dims(m.dilation), "groups": m.groups,
             "padding_mode": m.padding_mode, "use_bias": m.bias is not None}
    if m.transposed:
        attrs["output_padding"] = _dims(m.output_padding)
        return f"conv_transpose{rank}d", attrs
    if m.groups == m.in_channels > 1 and m.in_channels // m.groups == 1:
        attrs["depth_multiplier"] = m.out_channels // m.in_channels
        return f"depthwise_conv{rank}d", attrs
    return f"conv{rank}d", attrs


def _batchnorm(m: Any) -> tuple[str, dict]:
    return "batchnorm", {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                         "affine": m.affine, "track_running_stats": m.track_running_stats}


def _instancenorm(m: Any) -> tuple[str, dict]:
    return "instancenorm", {"num_features": m.num_features, "eps": m.eps,
                            "momentum": m.momentum, "affine": m.affine,
                            "track_running_stats": m.track_running_stats}


def _layernorm(m: Any) -> tuple[str, dict]:
    return "layernorm", {"normalized_shape": _dims(m.normalized_shape), "eps": m.eps,
                         "elementwise_affine": m.elementwise_affine,
                         "use_bias": getattr(m, "bias", None) is not None}


def _groupnorm(m: Any) -> tuple[str, dict]:
    return "groupnorm", {"num_groups": m.num_groups, "num_channels": m.num_channels,
                         "eps": m.eps, "affine": m.affine}


def _rmsnorm(m: Any) -> tuple[str, dict]:
    return "rmsnorm", {"normalized_shape": _dims(m.normalized_shape), "eps": m.eps,
                       "elementwise_affine": m.elementwise_affine}


def _embedding(m: Any) -> tuple[str, dict]:
    return "embedding", {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim,
                         "padding_idx": m.padding_idx, "max_norm": m.max_norm}


def _recurrent(op: str) -> Callable[[Any], tuple[str, dict]]:
    def describe(m: Any) -> tuple[str, dict]:
        attrs = {"input_size": m.input_size, "hidden_size": m.hidden_size,
                 "units": m.hidden_size, "use_bias": m.bias}
        if hasattr(m, "num_layers"):        # nn.LSTM/GRU/RNN; the *Cell classes have none
            attrs.update(num_layers=m.num_layers, bidirectional=m.bidirectional,
                         batch_first=m.batch_first, dropout=m.dropout)
            if getattr(m, "proj_size", 0):
                attrs["proj_size"] = m.proj_size
        else:
            attrs.update(num_layers=1, bidirectional=False, cell=True)
        if hasattr(m, "nonlinearity"):
            attrs["nonlinearity"] = m.nonlinearity
        if op in CONVENTION.gate_orders:
            attrs["gate_order"] = CONVENTION.gate_orders[op]
        return op, attrs
    return describe


def _prelu(m: Any) -> tuple[str, dict]:
    return "prelu", {"num_parameters": m.num_parameters}


def _attention(m: Any) -> tuple[str, dict]:
    return "attention", {"embed_dim": m.embed_dim, "num_heads": m.num_heads, "kdim": m.kdim,
                         "vdim": m.vdim, "batch_first": m.batch_first, "dropout": m.dropout,
                         "add_bias_kv": m.bias_k is not None, "add_zero_attn": m.add_zero_attn,
                         "use_bias": m.in_proj_bias is not None}


def handlers(nn: Any) -> list[tuple[tuple[type, ...], Callable[[Any], tuple[str, dict]]]]:
    """The type table, most specific first (``torch.nn`` passed in: nothing imported here)."""
    rmsnorm = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()      # torch >= 2.4
    return [
        ((nn.Linear,), _dense),
        ((nn.modules.conv._ConvNd,), _conv),
        ((nn.modules.batchnorm._BatchNorm,), _batchnorm),
        ((nn.modules.instancenorm._InstanceNorm,), _instancenorm),
        ((nn.LayerNorm,), _layernorm),
        ((nn.GroupNorm,), _groupnorm),
        (rmsnorm, _rmsnorm),
        ((nn.Embedding,), _embedding),
        ((nn.LSTM, nn.LSTMCell), _recurrent("lstm")),
        ((nn.GRU, nn.GRUCell), _recurrent("gru")),
        ((nn.RNN, nn.RNNCell), _recurrent("simple_rnn")),
        ((nn.PReLU,), _prelu),
        ((nn.MultiheadAttention,), _attention),
    ]


def is_hf_conv1d(module: Any) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2, GPT, ImageGPT ...), told by its class name, its ``nf``
    (output features) and a 2-D weight whose last axis is ``nf``: transformers is not imported."""
    weight = getattr(module, "weight", None)
    shape = tuple(getattr(weight, "shape", ()))
    return (type(module).__name__ == "Conv1D" and isinstance(getattr(module, "nf", None), int)
            and len(shape) == 2 and shape[1] == module.nf)


def _hf_conv1d(m: Any) -> tuple[str, dict]:
    """A dense layer whose weight is stored (in, out), the reverse of ``nn.Linear``."""
    return "dense", {"in_features": m.weight.shape[0], "out_features": m.nf,
                     "use_bias": getattr(m, "bias", None) is not None,
                     "kernel_axes": ("in", "out"), "layout_from": "module type Conv1D"}


def custom_norm(module: Any) -> tuple[str, dict] | None:
    """An RMSNorm-like custom class (``CUSTOM_NORMS``) holding one 1-D ``weight`` and nothing
    else: (op, attributes), else None."""
    own = dict(getattr(module, "_parameters", {}))
    weight = own.get("weight")
    if set(own) != {"weight"} or weight is None or len(tuple(weight.shape)) != 1:
        return None
    name = type(module).__name__
    op = next((op for pattern, op in CUSTOM_NORMS if pattern.search(name)), None)
    if op is None:
        return None
    attrs: dict[str, Any] = {"normalized_shape": tuple(weight.shape), "custom_class": name}
    eps = next((getattr(module, a) for a in _EPS_ATTRS if isinstance(getattr(module, a, None),
                                                                     (int, float))), None)
    if eps is not None and not isinstance(eps, bool):
        attrs["eps"] = float(eps)
    return op, attrs


def describe(module: Any, table: list) -> tuple[str, dict]:
    """(op kind, attributes) of one module; ``opaque`` when its type is not in the table."""
    for classes, handler in table:
        if classes and isinstance(module, classes):
            return handler(module)
    if is_hf_conv1d(module):
        return _hf_conv1d(module)
    return custom_norm(module) or ("opaque", {})
