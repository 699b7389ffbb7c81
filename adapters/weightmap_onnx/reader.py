"""Build a ParamGraph from an ONNX model: layers from weight-consuming nodes in graph order.

- Nodes are visited in stored order (ONNX requires it topological), so the order is "execution".
- A node with initializer inputs becomes one layer (see ``ops.HANDLERS``; others are opaque).
- Parameter names are the names the node uses: initializer names, or ``Identity`` alias names
  (older torch exporter, duplicates of an identical initializer). One tensor has one holding
  parameter: the first use; every later use (an alias, or a second node sharing the
  initializer) is a parameter with ``tied_to`` = the holder. When a name is already taken, the
  later use is named ``<name>@<layer>``. ``meta["aliases"]`` and ``meta["shared"]`` list both.
- Initializers no layer uses (unused, or only shapes/axes/indices) go into one trailing
  ``opaque`` layer named ``<unconsumed>``: nothing is dropped.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from weightmap.dataflow import FED_BY, fed_by
from weightmap.errors import FormatError
from weightmap.graph import Layer, Param, ParamGraph
from weightmap.layouts import axes_for

from .graphinfo import DEFAULT_DOMAINS, GraphInfo, infer_shapes, module_hint, rewrite_rule
from .ops import DEFAULT_AXES, Draft, Slot, layer_drafts
from .tensors import Initializer, read_initializer

FORMAT = "onnx"
UNCONSUMED = "<unconsumed>"
_DENSE_INPUT_OPS = {"Flatten", "Reshape"}
_POOLING_OPS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"}


def build_graph(model: Any, *, source: str, model_path: Path, folder: Path | None,
                shape_inference: bool = True) -> ParamGraph:
    graph = model.graph
    if len(graph.sparse_initializer):
        raise FormatError("sparse initializers are not supported", path=model_path,
                          tensor=graph.sparse_initializer[0].values.name or None,
                          hint="densify them (onnx.numpy_helper) and save again")
    inits = initializers(graph, model_path=model_path, folder=folder)
    shapes, shape_note = infer_shapes(model) if shape_inference else ({}, "off")
    info = GraphInfo.build(graph, inits, shapes)
    builder = _Builder(info)
    for index, node, draft in layer_drafts(info):
        builder.add(index, node, draft)
    builder.add_unconsumed()
    meta = _model_meta(model, info, builder, shape_note)
    return ParamGraph(format=FORMAT, framework="onnx", source=source,
                      layers=tuple(with_fed_by(builder.layers, info, builder.node_layer)),
                      order="execution", meta=meta)


def with_fed_by(layers: list[Layer], info: GraphInfo, node_layer: dict[int, str]
                ) -> list[Layer]:
    """Each node layer with ``attrs["fed_by"]``: the layers whose outputs reach its data
    inputs through nodes without weights (``weightmap.dataflow``)."""
    ids = {i: node_layer.get(i, f"#{i}") for i in range(len(info.nodes))}
    inputs: dict[str, list[str]] = {}
    for i, node in enumerate(info.nodes):
        mine = inputs.setdefault(ids[i], [])
        for value in node.input:
            producer = info.producers.get(value) if value and info.root(value) is None \
                else None
            if producer is not None and ids[producer] != ids[i]:
                mine.append(ids[producer])
    flows = fed_by(inputs, set(node_layer.values()))
    return [replace(l, attrs={**l.attrs, FED_BY: flows[l.name]}) if l.name in flows else l
            for l in layers]


def initializers(graph: Any, *, model_path: Path, folder: Path | None
                 ) -> dict[str, Initializer]:
    inits: dict[str, Initializer] = {}
    for tensor in graph.initializer:
        if tensor.name in inits:
            raise FormatError("two initializers share this name", path=model_path,
                              tensor=tensor.name)
        inits[tensor.name] = read_initializer(tensor, model_path=model_path, folder=folder)
    return inits


class _Builder:
    """Turns drafts into frozen layers, keeping track of which tensor is held by which param."""

    def __init__(self, info: GraphInfo) -> None:
        self.info = info
        self.layers: list[Layer] = []
        self.holder: dict[str, str] = {}          # initializer -> name of the holding param
        self.taken: set[str] = set()              # param names in use
        self.layer_names: set[str] = set()
        self.shared: dict[str, list[str]] = {}    # holder -> params tied to it
        self.node_layer: dict[int, str] = {}      # node index -> the layer it belongs to

    def add(self, index: int, node: Any, draft: Draft) -> None:
        name = self._layer_name(index, node)
        self.node_layer.update({i: name for i in (index, *draft.merged)})
        params = tuple(self._param(slot, name, draft.op) for slot in draft.slots)
        attrs = {"node_index": index, "op_type": node.op_type, **draft.attrs}
        if node.domain not in DEFAULT_DOMAINS:
            attrs["domain"] = node.domain
        hint, rule = module_hint(node), rewrite_rule(node)
        if hint:
            attrs["module_hint"] = hint
        if rule:
            attrs["rewrite_rule"] = rule
        if draft.op == "dense":
            attrs.update(flatten_attrs(self.info, _activation(node, draft)))
        source_type = node.op_type if node.domain in DEFAULT_DOMAINS \
            else f"{node.domain}::{node.op_type}"
        self.layers.append(Layer(name=name, op=draft.op, params=params, attrs=attrs,
                                 source_type=source_type))

    def add_unconsumed(self) -> None:
        left = [n for n in self.info.inits if n not in self.holder]
        if not left:
            return
        # consumed somewhere, but only where shapes/axes/indices go (aliasing Identity aside)
        used = {self.info.root(v) for v, users in self.info.consumers.items()
                if any(i not in self.info.alias_nodes for i, _ in users)}
        slots = [Slot(n, "other", None) for n in left]
        params = tuple(self._param(slot, UNCONSUMED, "opaque") for slot in slots)
        attrs = {"shape_operands": [n for n in left if n in used],
                 "unused": [n for n in left if n not in used],
                 "not_weights": True}      # the plan keeps them as they are
        self.layers.append(Layer(name=UNCONSUMED, op="opaque", params=params, attrs=attrs))

    def _layer_name(self, index: int, node: Any) -> str:
        return layer_name(index, node, self.layer_names)

    def _param(self, slot: Slot, layer: str, op: str) -> Param:
        root = self.info.root(slot.name)
        init = self.info.inits[root]
        name = slot.name
        k = 1
        while name in self.taken:
            name = f"{slot.name}@{layer}" + (f"#{k}" if k > 1 else "")
            k += 1
        self.taken.add(name)
        tied = self.holder.get(root)
        if tied is None:
            self.holder[root] = name
        else:
            self.shared.setdefault(tied, []).append(name)
        axes = axes_for("onnx", op, slot.role, len(init.shape)) \
            if slot.axes is DEFAULT_AXES else slot.axes
        return Param(name=name, role=slot.role, shape=init.shape, dtype=init.dtype, axes=axes,
                     data=init.data, tied_to=tied)


def layer_name(index: int, node: Any, taken: set[str]) -> str:
    """The layer name of the node at ``index``: its own name, else ``<op>_<index>``; a name
    already in ``taken`` gets ``#<index>``. Adds it to ``taken``."""
    name = node.name or f"{node.op_type}_{index}"
    if name in taken:
        name = f"{name}#{index}"
    taken.add(name)
    return name


def layer_outputs(info: GraphInfo) -> dict[str, str]:
    """Layer name -> the value holding that layer's output (a MatMul's, after the bias Add
    folded into its layer), replaying the walk ``build_graph`` names layers by."""
    taken: set[str] = set()
    out = {}
    for index, node, draft in layer_drafts(info):
        last = info.nodes[draft.merged[-1]] if draft.merged else node
        if last.output and last.output[0]:
            out[layer_name(index, node, taken)] = last.output[0]
    return out


def _activation(node: Any, draft: Draft) -> str:
    """The non-weight input of a dense node (the activations it multiplies)."""
    kernel_pos = next(s.pos for s in draft.slots if s.role == "kernel")
    other = 1 - kernel_pos
    # a malformed node may have the kernel as its only input
    return node.input[other] if kernel_pos in (0, 1) and other < len(node.input) else ""


def flatten_attrs(info: GraphInfo, value: str) -> dict[str, Any]:
    """What a dense node reads (``dense_input``): ``pooled`` from a global pooling or a
    ReduceMean/ReduceMax, ``flatten`` from a Flatten/Reshape to 2-D of a tensor with spatial
    axes, with ``flatten_input_shape`` (without batch) from shape inference; ``data_format``
    channels_last only when that tensor came out of a Transpose to channels-last, as Keras
    exports do. Nothing when the graph does not say."""
    index = info.producers.get(value)
    if index is None:
        return {}
    node = info.nodes[index]
    if node.domain not in DEFAULT_DOMAINS:
        return {}
    if node.op_type in _POOLING_OPS:
        return {"dense_input": "pooled"}
    if node.op_type not in _DENSE_INPUT_OPS:
        return {}
    if node.op_type == "Flatten" and _axis(node) != 1:
        return {}
    out_shape = info.shapes.get(value)
    if node.op_type == "Reshape" and (out_shape is None or len(out_shape) != 2):
        return {}
    x = node.input[0]
    shape = info.shapes.get(x)
    if shape is not None and len(shape) < 3:
        return {"dense_input": "features"}          # a vector reshaped, not a feature map
    if not shape or any(d is None for d in shape[1:]):
        return {"dense_input": "flatten"}           # a flatten of a shape nothing inferred
    return {"dense_input": "flatten", "flatten_input_shape": list(shape[1:]),
            "data_format": "channels_last" if _to_channels_last(info, x, len(shape))
            else "channels_first"}


def _axis(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return attr.i
    return 1


def _to_channels_last(info: GraphInfo, value: str, rank: int) -> bool:
    index = info.producers.get(value)
    if index is None or info.nodes[index].op_type != "Transpose":
        return False
    perm = next((list(a.ints) for a in info.nodes[index].attribute if a.name == "perm"), None)
    return perm == [0, *range(2, rank), 1]


def _model_meta(model: Any, info: GraphInfo, builder: _Builder, shape_note: str) -> dict:
    meta: dict[str, Any] = {
        "ir_version": model.ir_version,
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph_name": model.graph.name, "shape_inference": shape_note,
    }
    if model.metadata_props:
        meta["metadata"] = {p.key: p.value for p in model.metadata_props}
    if info.aliases:
        meta["aliases"] = dict(info.aliases)
    if builder.shared:
        meta["shared"] = dict(builder.shared)
    shape = input_shape(model.graph, info)
    if shape is not None:
        meta["input_shape"] = shape
    external = sorted({i.external for i in info.inits.values() if i.external})
    if external:
        meta["external_data"] = external
    return meta


def input_shape(graph: Any, info: GraphInfo) -> list[int | None] | None:
    """The per-sample shape (batch axis left out; a symbolic size as None) of the graph's
    first input that is not an initializer, e.g. ``[3, 224, 224]``: what a target without an
    ``example_input`` is traced with (docs/matching.md)."""
    for value in graph.input:
        if value.name in info.inits:
            continue
        ttype = value.type.tensor_type
        if not ttype.HasField("shape") or len(ttype.shape.dim) < 2:
            return None
        return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in ttype.shape.dim[1:]]
    return None
