"""Both graphs in comparable orders before matching.

The matcher aligns layers by position, so both sides must be in the same *kind* of order. A torch
module read live (or from ``model.py``) is traced into execution order (``synth_input`` when it
has no ``example_input``); a torch state dict can only be in the order its model *registered*
its modules (``torch.save(model.state_dict())``). Where a model runs a module before the ones
created ahead of it (a ResNet block calling its ``downsample`` first), the two orders differ,
and execution order on one side against registration order on the other misaligns exactly
there. So when one side is a torch state dict in registration order, a traced torch module on
the other side is compared in its registration order too (kept by the reader as
``meta["registration_order"]``); the flatten shapes the trace found stay. Against ONNX, Keras
or a name-sorted file (reordered by the transformer pass) the traced order is kept.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from ..graph import ParamGraph
from .base import register_graph_pass

REGISTRATION_ORDERS = ("registration", "stored")


def in_registration_order(graph: ParamGraph) -> bool:
    """A torch graph whose order is its model's registration order: a state dict as saved (not
    one sorted by the safetensors library, ``meta["stored_order"]``), or an untraced module."""
    return graph.framework == "torch" and graph.order in REGISTRATION_ORDERS \
        and not graph.meta.get("stored_order")


def registered(graph: ParamGraph, other: ParamGraph) -> ParamGraph:
    """``graph`` (traced) put back in registration order, with a decision saying why."""
    wanted = graph.meta.get("registration_order")
    if graph.order != "execution" or not wanted:
        return graph
    rank = {name: i for i, name in enumerate(wanted)}
    layers = tuple(sorted(graph.layers, key=lambda l: rank.get(l.name, len(rank))))
    note = (f"{graph.source}: compared in registration order (the order its modules are "
            f"created), as {other.source} is a state dict in that order; its execution order "
            f"differs (e.g. {_first_moved(graph, layers)})")
    meta = {**graph.meta, "decisions": list(graph.meta.get("decisions", ())) + [note]}
    return replace(graph, layers=layers, order="registration", meta=meta)


def _first_moved(graph: ParamGraph, layers: tuple) -> str:
    for executed, created in zip(graph.layers, layers):
        if executed.name != created.name:
            return f"{executed.name} runs before {created.name}"
    return "the layer order"


@register_graph_pass("comparable_order")
def comparable_order(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
                     ) -> tuple[ParamGraph, ParamGraph]:
    if in_registration_order(source):
        target = registered(target, source)
    elif in_registration_order(target):
        source = registered(source, target)
    return source, target
