"""Dense layers, including the flatten permutation before the first dense after a feature map.

Keras flattens NHWC (index h·W·C + w·C + c), torch and ONNX flatten NCHW (c·H·W + h·W + w). A dense
kernel that reads a flattened feature map must have its input axis re-ordered when the two sides
flatten differently; a plain transpose is wrong. The feature-map shape comes from the graphs
(``flatten_input_shape``); when neither graph knows it, it is inferred from the channels of the
last feature layer and the kernel's input size, and the report says so.
"""
from __future__ import annotations

import math
from dataclasses import replace

from ..errors import ConversionError
from ..graph import Layer, ParamGraph
from ..layouts import spatial_rank
from ..plans import TensorPlan
from ..transforms import Step
from .base import LayerPair, register
from .generic import plan_param

_CHANNELS_LAST = {"keras": "channels_last", "torch": "channels_first", "onnx": "channels_first"}
_SPATIAL = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}


def data_format(layer: Layer, graph: ParamGraph) -> str:
    return layer.attrs.get("data_format") or _CHANNELS_LAST.get(graph.framework, "channels_first")


def labels(fmt: str, rank: int) -> tuple[str, ...]:
    return _SPATIAL[rank] + ("c",) if fmt == "channels_last" else ("c",) + _SPATIAL[rank]


def _reorder(shape, from_labels, to_labels):
    return tuple(shape[from_labels.index(l)] for l in to_labels)


def follows_feature_map(layer: Layer, graph: ParamGraph) -> Layer | None:
    """The last conv-like layer before ``layer`` if no dense layer stands between them."""
    layers = graph.layers
    idx = next(i for i, l in enumerate(layers) if l.name == layer.name)
    for prev in reversed(layers[:idx]):
        if spatial_rank(prev.op) is not None:
            return prev
        if prev.op in ("dense", "embedding", "lstm", "gru", "simple_rnn", "attention"):
            return None
    return None


def _channels(conv: Layer) -> int | None:
    k = conv.param("kernel") or conv.param("pointwise_kernel") or conv.param("depthwise_kernel")
    if k is None or k.axes is None:
        return None
    if "out" in k.axes:   # conv-transpose kernels hold out/groups channels
        groups = conv.attrs.get("groups", 1) if conv.op.startswith("conv_transpose") else 1
        return k.shape[k.axes.index("out")] * groups
    if "c" in k.axes and "m" in k.axes:
        return k.shape[k.axes.index("c")] * k.shape[k.axes.index("m")]
    return None


def flatten_shape(pair: LayerPair, in_features: int) -> tuple[tuple[int, ...], str, list[str]]:
    """The feature map shape in the *source* order, how it was found, and decisions to report."""
    src, tgt = pair.source, pair.target
    sfmt, tfmt = data_format(src, pair.source_graph), data_format(tgt, pair.target_graph)
    if src.attrs.get("flatten_input_shape"):
        return tuple(src.attrs["flatten_input_shape"]), "source graph", []
    if tgt.attrs.get("flatten_input_shape"):
        shape = tuple(tgt.attrs["flatten_input_shape"])
        rank = len(shape) - 1
        return _reorder(shape, labels(tfmt, rank), labels(sfmt, rank)), "target graph", []
    conv = follows_feature_map(src, pair.source_graph)
    channels = _channels(conv) if conv is not None else None
    if channels is None or in_features % channels:
        raise ConversionError(
            f"{src.name!r} reads a flattened feature map of {in_features} features but its "
            f"spatial shape is unknown", tensor=tgt.name,
            hint="give the model file an example_input, or a source saved with its config")
    spatial = in_features // channels
    rank = spatial_rank(conv.op) or 2
    side = round(spatial ** (1 / rank))
    if side ** rank != spatial:
        raise ConversionError(f"cannot infer the feature map of {in_features} features with "
                              f"{channels} channels as a square grid", tensor=tgt.name,
                              hint="give the model file an example_input")
    grid = (side,) * rank
    shape = grid + (channels,) if sfmt == "channels_last" else (channels,) + grid
    return shape, "inferred", [f"{tgt.name}: flatten shape {shape} ({sfmt}) inferred from "
                               f"{channels} channels of {conv.name!r} and {in_features} inputs; "
                               f"check it or give an example_input"]


@register("*:dense", "*:dense")
def convert_dense(pair: LayerPair) -> list[TensorPlan]:
    src, tgt = pair.source, pair.target
    sfmt, tfmt = data_format(src, pair.source_graph), data_format(tgt, pair.target_graph)
    kernel = src.param("kernel")
    needs = (sfmt != tfmt and kernel is not None and kernel.axes and "in" in kernel.axes
             and (src.attrs.get("flatten_input_shape") or tgt.attrs.get("flatten_input_shape")
                  or follows_feature_map(src, pair.source_graph) is not None))
    if not needs:
        return [plan_param(pair, p) for p in pair.target.params]
    axis = kernel.axes.index("in")
    shape, how, decisions = flatten_shape(pair, kernel.shape[axis])
    if math.prod(shape) != kernel.shape[axis]:
        raise ConversionError(f"the flatten shape {shape} ({how}) holds {math.prod(shape)} "
                              f"features, the kernel reads {kernel.shape[axis]}", tensor=tgt.name)
    rank = len(shape) - 1
    spatial = _reorder(shape, labels(sfmt, rank), _SPATIAL[rank])
    if all(d == 1 for d in spatial):            # 1x1 feature map: both flatten orders agree
        return [plan_param(pair, p) for p in pair.target.params]
    sl, tl = labels(sfmt, rank), labels(tfmt, rank)
    perm = [sl.index(l) for l in tl]
    step = Step("flatten_permute", {"axis": axis, "shape": list(shape), "perm": perm})
    note = (f"flatten {''.join(sl).upper()} {shape} -> {''.join(tl).upper()} "
            f"{_reorder(shape, sl, tl)} ({how})")
    out = []
    for p in pair.target.params:
        if p.role == "kernel":
            plan = plan_param(pair, p, extra_steps=[step], extra_notes=[note])
            out.append(replace(plan, notes=plan.notes + tuple(f"decision: {d}"
                                                               for d in decisions)))
        else:
            out.append(plan_param(pair, p))
    return out
