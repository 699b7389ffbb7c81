"""What the readers need to know about an ONNX graph besides its nodes: which values are
initializers (directly or through ``Identity`` aliases), who produces and consumes each value,
and the shapes ONNX shape inference finds."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .tensors import Initializer

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class GraphInfo:
    nodes: list[Any]
    inits: dict[str, Initializer]
    aliases: dict[str, str] = field(default_factory=dict)      # Identity output -> initializer
    alias_nodes: set[int] = field(default_factory=set)         # those Identity nodes' indices
    producers: dict[str, int] = field(default_factory=dict)    # value -> node index
    consumers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # -> (node, pos)
    graph_outputs: set[str] = field(default_factory=set)
    shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, graph: Any, inits: dict[str, Initializer],
              shapes: dict[str, tuple[int | None, ...]]) -> "GraphInfo":
        info = cls(nodes=list(graph.node), inits=inits, shapes=shapes,
                   graph_outputs={o.name for o in graph.output})
        for index, node in enumerate(info.nodes):
            for pos, name in enumerate(node.input):
                if name:
                    info.consumers.setdefault(name, []).append((index, pos))
            for name in node.output:
                if name:
                    info.producers[name] = index
            info._note_alias(index, node)
        return info

    def _note_alias(self, index: int, node: Any) -> None:
        """The older torch exporter turns duplicate initializers into ``Identity(original)``
        whose output carries the duplicate's name: that output is the same tensor."""
        if node.op_type != "Identity" or node.domain not in DEFAULT_DOMAINS:
            return
        if len(node.input) != 1 or len(node.output) != 1 or not node.output[0]:
            return
        root = self.root(node.input[0])
        if root is not None and node.output[0] not in self.inits:
            self.aliases[node.output[0]] = root
            self.alias_nodes.add(index)

    def root(self, name: str) -> str | None:
        """The initializer behind a value name (itself, or what an alias chain points to)."""
        if name in self.inits:
            return name
        return self.aliases.get(name)

    def weight(self, name: str) -> Initializer | None:
        root = self.root(name) if name else None
        return None if root is None else self.inits[root]


def infer_shapes(model: Any) -> tuple[dict[str, tuple[int | None, ...]], str]:
    """Value shapes from ONNX shape inference (unknown dims as None) and a status note.

    Shape inference is optional help (for flatten shapes): any failure leaves it out."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises several types (InferenceError, RuntimeError ...)
        return {}, f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    shapes: dict[str, tuple[int | None, ...]] = {}
    g = inferred.graph
    for value in [*g.input, *g.value_info, *g.output]:
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                   for d in ttype.shape.dim)
    return shapes, "ok"


def node_attrs(node: Any) -> dict[str, Any]:
    """A node's scalar and list attributes as plain Python values (graphs/tensors left out)."""
    from onnx import AttributeProto, helper

    plain = {AttributeProto.FLOAT, AttributeProto.INT, AttributeProto.STRING,
             AttributeProto.FLOATS, AttributeProto.INTS, AttributeProto.STRINGS}
    out: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type not in plain:
            continue
        value = helper.get_attribute_value(attr)
        if attr.type == AttributeProto.FLOAT:
            value = _short_float(value)
        elif attr.type == AttributeProto.FLOATS:
            value = [_short_float(v) for v in value]
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[attr.name] = value
    return out


def _short_float(value: float) -> float:
    """ONNX float attributes are float32: 1e-3 comes back as 0.0010000000474974513. The shortest
    decimal that round-trips through float32 is what the writer meant."""
    import numpy as np

    return float(str(np.float32(value)))


_QUOTED = re.compile(r"'([^'\\]*)'")


def module_hint(node: Any) -> str | None:
    """The torch module a node came from, when the exporter left a trace of it.

    Dynamo exporter: node metadata ``pkg.torch.onnx.name_scopes`` (``['', 'fc1', 'linear']``).
    Older exporter: the node name (``/features/features.0/Conv``). Only a hint: parsed as text,
    nothing in it is evaluated."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes" and prop.value.startswith("["):
            return _join_scopes(_QUOTED.findall(prop.value[:10_000])[:-1])
    if not node.name.startswith("/"):
        return None
    return _join_scopes(node.name.strip("/").split("/")[:-1])


def _join_scopes(parts: list[str]) -> str | None:
    """Scopes are relative (``fc1``) or already qualified (``features``, ``features.0``)."""
    hint = ""
    for part in filter(None, parts):
        hint = part if not hint or part.startswith(hint + ".") else f"{hint}.{part}"
    return hint or None


def rewrite_rule(node: Any) -> str | None:
    """The onnxscript optimizer rule that produced a node (e.g. FuseBatchNormIntoConv)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.onnxscript.rewriter.rule_name":
            return prop.value[:200]
    return None
