"""Dense layers, including the flatten permutation before the first dense after a feature map.

A channels-last model flattens NHWC (index h·W·C + w·C + c), a channels-first one NCHW
(c·H·W + h·W + w): which one a layer's feature maps are is its convention's ``data_format``. A
dense kernel that reads a flattened feature map must have its input axis re-ordered when the two
sides flatten differently; a plain transpose is wrong. What a dense layer reads comes from the graphs,
never from channel counts: ``attrs["dense_input"]`` (``flatten``, ``pooled``, ``features``: the
Keras config's Flatten or global pooling, the ONNX graph's Flatten / GlobalAveragePool /
ReduceMean, the traced torch forward) and ``flatten_input_shape``, the per-sample shape the
flatten enumerates. Pooled features need no reordering. When neither graph says, the port
stops (``UndecidableError``) and says what would tell.
"""
from __future__ import annotations

import math

from ...errors import ConversionError, UndecidableError
from ...graph import Layer, ParamGraph
from ... import registry
from ...convention import spatial_rank
from ..plan import TensorPlan
from ...transform import Step
from .base import LayerPair
from .generic import plan_param
from .transformer_layout import convert_conv1d_dense, has_conv1d

_SPATIAL = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}


def data_format(layer: Layer, graph: ParamGraph) -> str:
    return registry.convention(graph.framework).data_format(layer.attrs)


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


def flatten_shape(pair: LayerPair) -> tuple[tuple[int, ...], str] | None:
    """The flattened feature map's shape in the *source* order and which graph said it."""
    src, tgt = pair.source, pair.target
    sfmt, tfmt = data_format(src, pair.source_graph), data_format(tgt, pair.target_graph)
    if src.attrs.get("flatten_input_shape"):
        return tuple(src.attrs["flatten_input_shape"]), "source graph"
    if tgt.attrs.get("flatten_input_shape"):
        shape = tuple(tgt.attrs["flatten_input_shape"])
        rank = len(shape) - 1
        return _reorder(shape, labels(tfmt, rank), labels(sfmt, rank)), "target graph"
    return None


def reads(pair: LayerPair) -> str | None:
    """``flatten`` when either graph says the dense layer reads a flattened feature map;
    ``pooled`` / ``features`` when one says it reads a vector; None when neither says."""
    said = [l.attrs.get("dense_input") for l in (pair.source, pair.target)]
    if "flatten" in said or any(l.attrs.get("flatten_input_shape")
                                for l in (pair.source, pair.target)):
        return "flatten"
    return next((k for k in said if k), None)


def _undecidable(pair: LayerPair, in_features: int, why: str) -> UndecidableError:
    sfmt = data_format(pair.source, pair.source_graph)
    tfmt = data_format(pair.target, pair.target_graph)
    return UndecidableError(
        f"{pair.target.name} <- {pair.source.name}: {why}; the source orders a flattened map "
        f"{sfmt}, the target {tfmt}, so its {in_features} inputs would need reordering if it "
        f"is one, and a guess could port it wrong", tensor=pair.target.name,
        hint=", or ".join(c.hint("dataflow") for c in registry.conventions().values()
                          if c.hint("dataflow")) + ", so that one graph says what the dense "
                                                   "layer reads")


def convert_dense(pair: LayerPair) -> list[TensorPlan]:
    if has_conv1d(pair):                 # GPT-2 Conv1D kernels stored (in, out)
        return convert_conv1d_dense(pair)
    src, tgt = pair.source, pair.target
    sfmt, tfmt = data_format(src, pair.source_graph), data_format(tgt, pair.target_graph)
    kernel = src.param("kernel")
    if sfmt == tfmt or kernel is None or not kernel.axes or "in" not in kernel.axes:
        return [plan_param(pair, p) for p in pair.target.params]
    axis = kernel.axes.index("in")
    kind = reads(pair)
    if kind is None and (follows_feature_map(src, pair.source_graph) is not None
                         or follows_feature_map(tgt, pair.target_graph) is not None):
        raise _undecidable(pair, kernel.shape[axis], "it follows a convolution, and neither "
                           "graph says whether it reads a flattened feature map or pooled "
                           "features")
    if kind != "flatten":                       # pooled or plain features: no reordering
        return [plan_param(pair, p) for p in pair.target.params]
    found = flatten_shape(pair)
    if found is None:
        raise _undecidable(pair, kernel.shape[axis], "it reads a flattened feature map whose "
                           "shape neither graph knows")
    shape, how = found
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
    return [plan_param(pair, p, extra_steps=[step], extra_notes=[note]) if p.role == "kernel"
            else plan_param(pair, p) for p in pair.target.params]
