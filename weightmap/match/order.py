"""Which order of a traced module to match in, against a state dict in registration order.

The matcher aligns layers by position, so both sides should be in the same kind of order. A
torch module read live (or from ``model.py``) is traced into execution order (``synth_input``
when it has no ``example_input``). A torch state dict can only be in the order its model
*registered* its modules (``torch.save(model.state_dict())``), which is often — not always —
the order they run in: a ResNet block may call its ``downsample`` before the layers created
ahead of it. Against such a state dict neither of the module's orders is right for sure: the
state dict's registration order matches the module's own registration order when both come
from the same code, and its execution order when the source code registered its modules in the
order they run. So both are matched and the one that pairs more target tensors is kept (ties:
execution order); the report says when that is registration order. Against ONNX, Keras or a
name-sorted file (put in order by the ``transformer_order`` pass) only the traced order is used.
"""
from __future__ import annotations

from dataclasses import replace

from .. import registry
from ..graph import ParamGraph

REGISTRATION_ORDERS = ("registration", "stored")


def in_registration_order(graph: ParamGraph) -> bool:
    """A graph of a convention whose state dicts keep registration order
    (``Convention.registration_order``: torch) in its model's registration order: a state dict
    as saved (not one sorted by the safetensors library, ``meta["stored_order"]``, nor one put
    in execution order by its names, ``meta["order_from"]``), or an untraced module."""
    return graph.order in REGISTRATION_ORDERS \
        and registry.convention(graph.framework).registration_order \
        and not graph.meta.get("stored_order") and not graph.meta.get("order_from")


def registered(graph: ParamGraph, other: ParamGraph) -> ParamGraph:
    """``graph`` (traced) put back in the registration order its reader kept, with a decision
    naming ``other``; ``graph`` itself when there is no other order."""
    wanted = graph.meta.get("registration_order")
    if graph.order != "execution" or not wanted:
        return graph
    rank = {name: i for i, name in enumerate(wanted)}
    layers = tuple(sorted(graph.layers, key=lambda l: rank.get(l.name, len(rank))))
    note = (f"{graph.source}: matched in registration order (the order its modules are "
            f"created), which pairs more with {other.source}, a state dict in that order, "
            f"than its execution order (e.g. {_first_moved(graph, layers)})")
    meta = {**graph.meta, "decisions": list(graph.meta.get("decisions", ())) + [note]}
    return replace(graph, layers=layers, order="registration", meta=meta)


def _first_moved(graph: ParamGraph, layers: tuple) -> str:
    for executed, created in zip(graph.layers, layers):
        if executed.name != created.name:
            return f"{executed.name} runs before {created.name}"
    return "the layer order"


def registration_variant(source: ParamGraph, target: ParamGraph
                         ) -> tuple[ParamGraph, ParamGraph] | None:
    """The pair with the traced side in registration order, when the other side is a state
    dict in registration order and the traced side's two orders differ; else None."""
    if in_registration_order(source):
        variant = (source, registered(target, source))
    elif in_registration_order(target):
        variant = (registered(source, target), target)
    else:
        return None
    return None if variant[0] is source and variant[1] is target else variant


def paired(matching) -> int:
    """How many target tensors a matching pairs: what decides between two orders."""
    return sum(len(pp.sources) > 0 for m in matching.layers for pp in m.params)
