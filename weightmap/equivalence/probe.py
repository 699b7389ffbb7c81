"""The probe: one seeded input both models run on, shaped as the models say they take it.

Where its shape and dtype come from, best first: a model file's ``example_input`` (the target's,
then the source's), a Keras model's input spec, an ONNX graph input, the input a torch model
without ``example_input`` was traced on (made up for its stem, the first size that ran), and
last the first layer
of a graph that knows its execution order (a stem convolution's input channels, an embedding's
token ids, a dense layer's features) with default sizes (``DEFAULT_SIZES``). A side that says
nothing takes the other side's input in its own layout. Every side's requirements are merged axis by
axis after their layouts are aligned by labels (a Keras image input is (n, h, w, c), a torch
one (n, c, h, w)): a fixed dimension (Keras, ONNX) must agree with the other side's; an
``example_input`` dimension is a preference; the rest take the defaults. The values are seeded
normal floats, or token ids below the smallest first-embedding vocabulary of both models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import dtypes
from ..errors import VerifyError
from ..graph import Layer, ParamGraph
from ..layouts import data_format, feature_map_axes, spatial_rank
from .runner import InputSpec

DEFAULT_SIZES = {"n": 2, "h": 32, "w": 32, "d": 16, "t": 8}
DEFAULT_POSITIONS = 8          # any other unknown dimension (a sequence position ...)
DEFAULT_VOCAB = 8              # token ids when no embedding says how many there are
# where a shape came from, most trusted first
_RANK = {"example_input": 0, "Keras input": 1, "ONNX input": 2, "made-up input": 3,
         "first layer": 4, "other side": 5}
_TRUSTED = ("execution", "config")           # graph orders whose first layer is the first run


@dataclass(frozen=True)
class SideInput:
    """One input of one side: its labels and what it says of each dimension."""

    side: str                                  # "source" | "target"
    labels: tuple[str, ...]
    shape: tuple[int | None, ...]
    dtype: str
    origin: str                                # "example_input" | "Keras input" | ...
    fixed: bool
    describe: str                              # for the probe's origin sentence


@dataclass(frozen=True)
class Probe:
    feeds: dict[str, list[np.ndarray]]         # side -> arrays in that side's layout and dtype
    info: dict[str, Any]                       # the manifest's "probe" object


def make(source: ParamGraph, target: ParamGraph, source_specs: Sequence[InputSpec],
         target_specs: Sequence[InputSpec], seed: int = 0, *,
         channel_map: np.ndarray | None = None, mapped: str = "") -> Probe:
    """``channel_map`` (source channels, target channels): the source takes the target's
    input through it (an adapted stem, ``adapted.py``); ``mapped`` says so in the origin."""
    sides = _side_inputs({"source": source, "target": target},
                         {"source": source_specs, "target": target_specs})
    n_src, n_tgt = len(sides["source"]), len(sides["target"])
    if n_src != n_tgt:
        raise VerifyError(f"the source takes {n_src} input(s), the target {n_tgt}",
                          hint="verification feeds both models the same inputs")
    rng = np.random.default_rng(seed)
    vocab = _vocab(source, target)
    feeds: dict[str, list[np.ndarray]] = {"source": [], "target": []}
    described = []
    for pair in zip(sides["source"], sides["target"]):
        reference = pair[1] if channel_map is not None else \
            min(pair, key=lambda s: (_RANK.get(s.origin, 9), s.side != "target"))
        pair = tuple(_same_axes(side, reference) for side in pair)
        if channel_map is not None:
            pair = (_channels_free(pair[0]), pair[1])
        shape, filled = _merge(reference, pair)
        values = rng.integers(0, vocab, size=shape) if _is_int(reference.dtype) else \
            rng.standard_normal(shape)
        for side in pair:
            mine = _through(channel_map, values, reference.labels) \
                if side.side == "source" and channel_map is not None else values
            arr = _permute(mine, reference.labels, side.labels)
            feeds[side.side].append(arr.astype(dtypes.to_numpy(side.dtype)))
        described.append({"shape": list(shape), "dtype": reference.dtype,
                          "labels": list(reference.labels), "origin": reference.describe,
                          "defaults": filled,
                          "layout": {s.side: _layout_name(s.labels) for s in pair}})
    first = described[0]
    origin = first["origin"] + (f"; defaults for {', '.join(first['defaults'])}"
                                if first["defaults"] else "") + (f"; {mapped}" if mapped else "")
    if _is_int(first["dtype"]):
        origin += f"; token ids below {vocab}"
    info = {"shape": first["shape"], "dtype": first["dtype"], "origin": origin, "seed": seed,
            "layout": first["layout"], "inputs": described}
    return Probe(feeds, info)


def _channels_free(side: SideInput) -> SideInput:
    """``side`` with no say on its channel count (it takes another count, mapped)."""
    if "c" not in side.labels:
        raise VerifyError(f"the {side.side}'s input has no channel axis to map the adapted "
                          f"stem's channels onto: {_show(side)}")
    shape = tuple(None if l == "c" else d for l, d in zip(side.labels, side.shape))
    return SideInput(side.side, side.labels, shape, side.dtype, side.origin, side.fixed,
                     side.describe)


def _through(channel_map: np.ndarray, values: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``values`` (labelled ``labels``) with their channel axis mapped: ``M @ x`` per sample."""
    axis = list(labels).index("c")
    if values.shape[axis] != channel_map.shape[1]:
        raise VerifyError(f"the adapted stem takes {channel_map.shape[1]} input channels, the "
                          f"target's input has {values.shape[axis]}")
    return np.moveaxis(np.tensordot(channel_map, values, axes=([1], [axis])), 0, axis)


# ---- each side's inputs ------------------------------------------------------------------------

def _side_inputs(graphs: dict[str, ParamGraph], specs: dict[str, Sequence[InputSpec]]
                 ) -> dict[str, list[SideInput]]:
    """Each side's inputs from its own specs; a side without follows the other side's inputs
    in its own layout; with none on either side, the first layer of a graph that knows its
    execution order (the target's first) says what the input is."""
    out = {side: [_from_spec(side, graphs[side], spec) for spec in specs[side]]
           for side in graphs if specs[side]}
    if not out:
        side = next((s for s in ("target", "source") if graphs[s].order in _TRUSTED), "target")
        out[side] = [_from_first_layer(side, graphs[side])]
    for side in graphs:
        if side not in out:
            other = "target" if side == "source" else "source"
            out[side] = [_following(side, graphs[side], x) for x in out[other]]
    return out


def _following(side: str, graph: ParamGraph, other: SideInput) -> SideInput:
    """``side``'s input when only the other side says what it is: the same axes, a feature
    map in this graph's own layout, integers in this framework's index type."""
    labels, dtype = other.labels, other.dtype
    if "c" in labels and len(labels) >= 3 and not _is_int(dtype):
        stem = next((l for l in graph.layers if spatial_rank(l.op) is not None), None)
        fmt = data_format(graph.framework, stem.attrs if stem is not None else {})
        labels = feature_map_axes(fmt, len(labels)) or labels
    if _is_int(dtype):
        dtype = "int32" if graph.framework == "keras" else "int64"
    return SideInput(side, labels, (None,) * len(labels), dtype, "other side", False,
                     f"the {side} takes the {other.side}'s input")


def _from_spec(side: str, graph: ParamGraph, spec: InputSpec) -> SideInput:
    inferred = _from_first_layer(side, graph, required=False)
    dtype = spec.dtype or (inferred.dtype if inferred else "float32")
    if spec.shape is None:
        if inferred is None:
            raise VerifyError(f"the {side} model does not say the shape of its input "
                              f"{spec.name!r}", hint="give the model file an example_input")
        return SideInput(side, inferred.labels, inferred.shape, dtype, inferred.origin,
                         False, inferred.describe)
    shape = tuple(spec.shape)
    labels = _labels_for(graph, shape, dtype, inferred)
    what = f"the {side}'s {spec.origin} {spec.name!r}" if spec.origin != "example_input" \
        else f"the {side} file's example_input"
    return SideInput(side, labels, shape, dtype, spec.origin, spec.fixed, what)


def _labels_for(graph: ParamGraph, shape: tuple, dtype: str,
                inferred: SideInput | None) -> tuple[str, ...]:
    """The first layer's labels for an input of its rank; for an image-like input, channels
    first if its axis 1 holds the stem's channel count, last if its last axis does (a model
    may take NHWC images into an NCHW graph: an ONNX export of a Keras model)."""
    rank = len(shape)
    if (inferred is None or len(inferred.labels) != rank) and graph.order not in _TRUSTED:
        inferred = _stem_fitting(graph, shape) or inferred
    if inferred is None or len(inferred.labels) != rank:
        return ("n",) + tuple(f"a{i}" for i in range(rank - 1))
    if "c" in inferred.labels and rank >= 3 and not _is_int(dtype):
        channels = inferred.shape[inferred.labels.index("c")]
        first, last = shape[1] == channels, shape[-1] == channels
        if first != last:
            return feature_map_axes("channels_first" if first else "channels_last", rank)
    return inferred.labels


def _stem_fitting(graph: ParamGraph, shape: tuple) -> SideInput | None:
    """In a graph whose layer order says nothing of execution (a state dict sorted by name:
    its first layer may be a BatchNorm), the first convolution of the input's rank whose input
    channels sit on the input's axis 1 or last: its labels say the input's layout."""
    for layer in graph.layers:
        if spatial_rank(layer.op) != len(shape) - 2 or layer.op.startswith("conv_transpose"):
            continue
        found = _layer_input(graph, layer)
        if found is not None and found[1][found[0].index("c")] in (shape[1], shape[-1]):
            labels, dims, dtype, why = found
            return SideInput("", labels, dims, dtype, "first layer", False, why)
    return None


def _is_int(dtype: str) -> bool:
    return dtypes.to_numpy(dtype).kind in "iub"


def _from_first_layer(side: str, graph: ParamGraph, required: bool = True
                      ) -> SideInput | None:
    layer = next((l for l in graph.layers if l.params and l.op != "opaque"), None)
    found = _layer_input(graph, layer) if layer is not None else None
    if found is None:
        if not required:
            return None
        what = f"{layer.name} ({layer.op})" if layer is not None else "no layer"
        raise VerifyError(f"cannot tell what input the {side} model takes: it does not say, "
                          f"and its first layer is {what}",
                          hint="give the model file an example_input")
    labels, shape, dtype, why = found
    return SideInput(side, labels, shape, dtype, "first layer", False,
                     f"the {side}'s first layer {layer.name} ({why})")


def _layer_input(graph: ParamGraph, layer: Layer):
    """(labels, shape with None for unknown, dtype, why) of what ``layer`` takes as input."""
    op, fw, attrs = layer.op, graph.framework, layer.attrs
    rank = spatial_rank(op)
    if rank is not None and not op.startswith("conv_transpose"):
        channels = _in_channels(layer)
        labels = feature_map_axes(data_format(fw, attrs), rank + 2)
        if channels is None or labels is None:
            return None
        shape = tuple(channels if l == "c" else None for l in labels)
        return labels, shape, "float32", f"{op}, {channels} input channels"
    if op == "embedding":
        return ("n", "t"), (None, None), "int64" if fw != "keras" else "int32", "token ids"
    if op == "dense":
        kernel = layer.param("kernel")
        if kernel is None or kernel.axes is None or "in" not in kernel.axes:
            return None
        features = kernel.shape[kernel.axes.index("in")]
        return ("n", "c"), (None, features), "float32", f"dense, {features} features"
    if op in ("lstm", "gru", "simple_rnn"):
        kernel = layer.param("kernel")
        if kernel is None or kernel.axes is None or "in" not in kernel.axes:
            return None
        features = kernel.shape[kernel.axes.index("in")]
        batch_first = fw == "keras" or attrs.get("batch_first") or attrs.get("layout") == 1
        labels = ("n", "t", "c") if batch_first else ("t", "n", "c")
        return labels, tuple(features if l == "c" else None for l in labels), "float32", \
            f"{op}, {features} features"
    return None


def _in_channels(layer: Layer) -> int | None:
    if isinstance(layer.attrs.get("in_channels"), int):
        return layer.attrs["in_channels"]
    kernel = layer.param("kernel") or layer.param("depthwise_kernel")
    if kernel is None or kernel.axes is None:
        return None
    if "in" in kernel.axes:
        groups = layer.attrs.get("groups") or layer.attrs.get("group") or 1
        return kernel.shape[kernel.axes.index("in")] * int(groups)
    if "c" in kernel.axes:
        return kernel.shape[kernel.axes.index("c")]
    return None


def _vocab(*graphs: ParamGraph) -> int:
    """The token table's size: the first embedding of each graph that knows its execution
    order (a checkpoint sorted by name may list a position table first), the smaller."""
    ordered = [g for g in graphs if g.order in _TRUSTED] or list(graphs)
    sizes = []
    for graph in ordered:
        layer = next((l for l in graph.layers if l.op == "embedding"), None)
        kernel = layer and (layer.param("embeddings") or layer.param("kernel"))
        if kernel is not None and kernel.axes and "vocab" in kernel.axes:
            sizes.append(kernel.shape[kernel.axes.index("vocab")])
    return min(sizes) if sizes else DEFAULT_VOCAB


# ---- merging -------------------------------------------------------------------------------------

def _merge(reference: SideInput, pair: Sequence[SideInput]) -> tuple[tuple[int, ...], list]:
    """The probe shape in the reference's labels: fixed dims must agree, preferences next,
    defaults last (listed)."""
    fixed: dict[str, tuple[int, str]] = {}
    preferred: dict[str, int] = {}
    for side in sorted(pair, key=lambda s: s is not reference):
        for label, dim in zip(side.labels, side.shape):
            if dim is None:
                continue
            if side.fixed:
                if label in fixed and fixed[label][0] != dim:
                    raise VerifyError(f"the source and the target need different input sizes "
                                      f"on axis {label!r}: {fixed[label][0]} "
                                      f"({fixed[label][1]}) and {dim} ({side.side})")
                fixed.setdefault(label, (dim, side.side))
            else:
                preferred.setdefault(label, dim)
    shape, filled = [], []
    for label in reference.labels:
        if label in fixed:
            shape.append(fixed[label][0])
        elif label in preferred:       # a batch of one proves less than two: at least two
            shape.append(max(preferred[label], DEFAULT_SIZES["n"]) if label == "n"
                         else preferred[label])
        else:
            dim = DEFAULT_SIZES.get(label, DEFAULT_POSITIONS)
            shape.append(dim)
            filled.append(f"{label}={dim}")
    return tuple(shape), filled


def _same_axes(side: SideInput, reference: SideInput) -> SideInput:
    """``side`` labelled as the reference: as it is when both name the same axes; position by
    position when one side's labels are only positions (its layout unknown); an error when
    the ranks differ."""
    if sorted(side.labels) == sorted(reference.labels):
        return side
    if len(side.labels) != len(reference.labels):
        raise VerifyError(f"the {side.side} takes inputs {_show(side)}, the {reference.side} "
                          f"{_show(reference)}: not the same number of axes",
                          hint="give the model files example_inputs of the same shape")
    return SideInput(side.side, reference.labels, side.shape, side.dtype, side.origin,
                     side.fixed, side.describe)


def _permute(arr: np.ndarray, labels: Sequence[str], into: Sequence[str]) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(arr, [list(labels).index(l) for l in into]))


def _show(side: SideInput) -> str:
    dims = ", ".join(f"{l}={d if d is not None else '?'}" for l, d in zip(side.labels,
                                                                           side.shape))
    return f"({dims})"


def _layout_name(labels: Sequence[str]) -> str:
    if "c" in labels and len(labels) >= 3:
        return "channels_first" if labels[1] == "c" else "channels_last"
    return "none"
