"""Where each parameter of an ONNX target graph lives in the model: which value name which node
input reads, and which initializer is behind it.

The reader names parameters after the value names nodes use (initializer names, ``Identity``
alias names, ``<name>@<layer>`` for a second use of a name). The writer needs the way back. It is
found by replaying the reader's walk over the model (same nodes, same drafts, same slot order) and
zipping each draft's slots with the layer's parameters; the replay checks, slot by slot, that the
model still gives the graph it was read into, so a model edited in between is refused instead of
written wrongly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightmap.errors import FormatError
from weightmap.graph import Layer, ParamGraph

from .graphinfo import GraphInfo
from .ops import layer_drafts
from .tensors import Initializer, dtype_name


@dataclass(frozen=True)
class Use:
    """One parameter: the value name it reads, the initializer behind that, and the node input
    reading it (``node`` None for the ``<unconsumed>`` layer: no weight slot reads it)."""

    param: str
    value: str
    root: str
    node: int | None = None
    pos: int | None = None


@dataclass(frozen=True)
class Alias:
    """An ``Identity`` node whose output is another name for an initializer."""

    node: int
    name: str          # the Identity's output
    source: str        # its input (the initializer, or an earlier alias)
    root: str


@dataclass
class TargetMap:
    uses: dict[str, Use]                         # param name -> use, in graph order
    aliases: list[Alias]                         # in graph order (an alias's source comes first)
    groups: dict[str, list[str]] = field(default_factory=dict)  # root -> params, when > 1

    def group_of(self, param: str) -> list[str] | None:
        return self.groups.get(self.uses[param].root)


def map_target(model: Any, target: ParamGraph, *, where: object) -> TargetMap:
    """Replay the reader's walk over ``model`` and tie every parameter of ``target`` to it."""
    graph = model.graph
    # specs only: the handlers look at shapes, never at data
    where_path = Path(str(where))
    inits = {t.name: Initializer(t.name, dtype_name(t.data_type, name=t.name, path=where_path),
                                 tuple(int(d) for d in t.dims),
                                 data=None)  # type: ignore[arg-type]
             for t in graph.initializer}
    info = GraphInfo.build(graph, inits, {})
    node_layers = iter([l for l in target.layers if "node_index" in l.attrs])
    uses: dict[str, Use] = {}
    for index, node, draft in layer_drafts(info):
        layer = _next_layer(node_layers, index, len(draft.slots), where)
        for slot, param in zip(draft.slots, layer.params):
            if param.name != slot.name and not param.name.startswith(slot.name + "@"):
                _mismatch(where, f"parameter {param.name!r} where the model reads {slot.name!r}")
            node_index = index if slot.pos is not None else draft.merged[0]
            pos = slot.pos if slot.pos is not None \
                else list(info.nodes[node_index].input).index(slot.name)
            uses[param.name] = Use(param.name, slot.name, info.root(slot.name), node_index, pos)
    if next(node_layers, None) is not None:
        _mismatch(where, "the graph has more weight layers than the model")
    for layer in target.layers:
        if "node_index" in layer.attrs:
            continue
        for param in layer.params:
            if param.name not in inits or param.name in uses:
                _mismatch(where, f"no unused initializer named {param.name!r}")
            uses[param.name] = Use(param.name, param.name, param.name)
    missing = [p.name for p in target.params() if p.name not in uses]
    if missing:
        _mismatch(where, f"parameter(s) {missing[:3]} not found in the model")
    aliases = [Alias(i, info.nodes[i].output[0], info.nodes[i].input[0],
                     info.aliases[info.nodes[i].output[0]]) for i in sorted(info.alias_nodes)]
    by_root: dict[str, list[str]] = {}
    for use in uses.values():
        by_root.setdefault(use.root, []).append(use.param)
    groups = {root: params for root, params in by_root.items() if len(params) > 1}
    return TargetMap(uses=uses, aliases=aliases, groups=groups)


def _next_layer(layers: Any, index: int, n_slots: int, where: object) -> Layer:
    layer = next(layers, None)
    if layer is None or layer.attrs["node_index"] != index or len(layer.params) != n_slots:
        _mismatch(where, f"node {index} does not give the layer the graph has there")
    return layer


def _mismatch(where: object, what: str) -> None:
    raise FormatError(f"the target model is not the one its graph was read from: {what}",
                      path=where, hint="read the target again (was the file changed?)")
