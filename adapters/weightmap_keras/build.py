"""Layers of the neutral graph from what the Keras readers found: one place for op kinds,
attributes, axis labels and the inference used when a file has no model config."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from weightmap.reading.dataflow import FED_BY, fed_by
from weightmap.graph import Layer, Param, TensorData
from .convention import CONVENTION

from .classes import (attrs_from_config, class_from_name, direction_of, op_of,
                      role_from_weight_name, source_type)

_GATES = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}


@dataclass(frozen=True)
class Weight:
    """One variable of a layer, with its role already decided by the reader."""

    name: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    data: TensorData | None
    direction: str | None = None          # forward / backward inside a Bidirectional


def make_layer(name: str, class_name: str | None, config: Mapping[str, Any] | None,
               weights: Sequence[Weight],
               flatten: tuple[tuple[int, ...], str] | None = None) -> Layer:
    """A graph layer. ``config`` None means the file did not say: attributes are inferred."""
    op = op_of(class_name, config)
    attrs = attrs_from_config(class_name, config, op)
    if attrs.get("inferred"):
        attrs.update(_inferred_attrs(op, weights))
    if class_name == "Bidirectional":
        attrs["directions"] = {d: tuple(w.name for w in weights if w.direction == d)
                               for d in ("forward", "backward")}
    if flatten is not None:
        attrs["flatten_input_shape"], attrs["data_format"] = flatten
    params = tuple(Param(name=w.name, role=w.role, shape=w.shape, dtype=w.dtype,
                         axes=CONVENTION.axes(op, w.role, len(w.shape)), data=w.data)
                   for w in weights)
    return Layer(name=name, op=op, params=params, attrs=attrs,
                 source_type=source_type(class_name, config))


def with_structure(layers: Sequence[Layer], info: Any) -> list[Layer]:
    """``layers`` with what the model config says of their place in it: ``fed_by`` (which
    layers with weights feed each one, ``weightmap.reading.dataflow``) and, for a Dense,
    ``dense_input`` (flatten, pooled or features)."""
    if info is None:
        return list(layers)
    flows = fed_by(info.inputs, {l.name for l in layers})
    out = []
    for layer in layers:
        facts = {}
        if layer.name in flows:
            facts[FED_BY] = flows[layer.name]
        if layer.name in info.dense_input and layer.op == "dense":
            facts["dense_input"] = info.dense_input[layer.name]
        out.append(replace(layer, attrs={**layer.attrs, **facts}) if facts else layer)
    return out


def _inferred_attrs(op: str, weights: Sequence[Weight]) -> dict[str, Any]:
    """What shapes alone say about a layer whose config is unknown."""
    by_role = {w.role: w for w in weights}
    out: dict[str, Any] = {}
    rec = by_role.get("recurrent_kernel")
    if op in ("lstm", "gru", "simple_rnn") and rec is not None and len(rec.shape) == 2:
        out["units"] = rec.shape[0]
    bias = by_role.get("bias")
    if op == "gru" and bias is not None:
        out["reset_after"] = len(bias.shape) == 2
    return out


# ----------------------------------------------------------------- inference without a config
def rnn_class(shapes: Sequence[tuple[int, ...]]) -> str | None:
    """LSTM / GRU / SimpleRNN from a cell's (kernel, recurrent_kernel) shapes: the recurrent
    kernel is (units, gates * units)."""
    if len(shapes) < 2 or len(shapes[1]) != 2 or not shapes[1][0]:
        return None
    units, width = shapes[1]
    return _GATES.get(width // units) if width % units == 0 else None


def infer_class(layer_name: str, names: Sequence[str], shapes: Sequence[tuple[int, ...]]
                ) -> tuple[str | None, dict | None]:
    """(class, synthetic wrapper config or None) of a legacy layer known only by its weights.

    The weight names and shapes decide; an auto-generated layer name (``conv2d_transpose_1``)
    only settles what they cannot: Conv2D vs Conv2DTranspose, LayerNormalization vs
    GroupNormalization.
    """
    hint = class_from_name(layer_name)
    roles = [role_from_weight_name(n, "") for n in names]
    rs = set(roles)
    kernel = next((s for r, s in zip(roles, shapes) if r == "kernel"), None)
    if "recurrent_kernel" in rs:
        cell = [s for r, s in zip(roles, shapes) if r in ("kernel", "recurrent_kernel")]
        inner = rnn_class(cell[:2])
        if any(direction_of(n) for n in names):
            return "Bidirectional", {"layer": {"class_name": inner, "config": None}}
        return inner, None
    if any(set(n.split("/")) & {"query", "key", "value", "attention_output"} for n in names):
        return "MultiHeadAttention", None
    if "pointwise_kernel" in rs:
        return _sized("SeparableConv{}D", shapes[roles.index("pointwise_kernel")]), None
    if "depthwise_kernel" in rs:
        return _sized("DepthwiseConv{}D", shapes[roles.index("depthwise_kernel")]), None
    if "moving_mean" in rs or "moving_var" in rs:
        return "BatchNormalization", None
    if "embeddings" in rs:
        return "Embedding", None
    if "alpha" in rs:
        return "PReLU", None
    if kernel is not None and len(kernel) == 2:
        return "Dense", None
    if kernel is not None and 3 <= len(kernel) <= 5:
        if hint is not None and hint.endswith(f"{len(kernel) - 2}DTranspose"):
            return hint, None
        return _sized("Conv{}D", kernel), None
    if rs and rs <= {"gamma", "beta"}:
        return ("GroupNormalization" if hint == "GroupNormalization"
                else "LayerNormalization"), None
    return None, None


def _sized(pattern: str, shape: tuple[int, ...]) -> str | None:
    rank = len(shape) - 2
    return pattern.format(rank) if 1 <= rank <= 3 else None
