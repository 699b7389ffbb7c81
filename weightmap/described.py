"""A weights-only source described by the model that made it (``--source-model``).

A state dict or a safetensors file stores names, shapes and bytes. What its model does with
them is in the model's code: a BatchNorm's epsilon and momentum, whether a weight-only norm is
an RMSNorm or a LayerNorm, the activations, the order the layers run in, which layer feeds
which. Read from the file alone, those are inferred from names or assumed (``statedict.py``,
the framework's default epsilon). Given the file that builds the model (``source_model``),
the source graph takes the model's layers — op kinds, attributes, roles, axis labels, data
flow, execution order — read the way a target model file is read (``api.target_graph``:
torch on the meta device, no weights allocated), and keeps the checkpoint's names, dtypes and
bytes. Tensors pair by name, wrapper prefixes aside (``module.``, ``model.``, ``_orig_mod.``
on either side).

The model must be the checkpoint's: a tensor of another shape, or no tensor in common, is a
UsageError. Checkpoint tensors the model does not have keep what their names say, and the
report says so; model tensors the checkpoint lacks are simply not in the source.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .errors import UsageError
from .graph import Layer, ParamGraph
from .match.names import common_prefixes
from .dataflow import FED_BY
from .spelling import option

# a graph whose order is only the order its file stores: what a state dict is
FILE_ORDERS = ("stored", "registration")
MODEL_META = ("trace_input", "trace_input_shape", "trace_input_dtype", "not_called", "class")


def weights_only(graph: ParamGraph) -> bool:
    """A checkpoint that holds tensors and names only (a state dict, safetensors, a Keras
    weights file without config): its layers and order are what the names and the file say."""
    return graph.live is None and graph.order in FILE_ORDERS \
        and not graph.meta.get("described_by")


def described(weights: ParamGraph, model: ParamGraph, origin: str) -> ParamGraph:
    """``weights`` with the layers, facts and order of ``model`` (read from ``origin``)."""
    stored = {p.name: p for p in weights.params()}
    own = _Names(list(stored), weights.meta.get("prefixes") or ())
    theirs = _Names([p.name for p in model.params()], model.meta.get("prefixes") or ())
    by_key = {own.key(n): n for n in stored}

    def spelled(name: str) -> str:          # a model name as the checkpoint spells it
        return own.prefix + theirs.key(name)

    layers, used, conflicts, absent = [], set(), [], []
    for layer in model.layers:
        params = []
        for p in layer.params:
            name = by_key.get(theirs.key(p.name))
            if name is None:
                if not p.tied_to:
                    absent.append(spelled(p.name))
                continue
            got = stored[name]
            if tuple(got.shape) != tuple(p.shape):
                conflicts.append(f"{name} {tuple(got.shape)} against {tuple(p.shape)}")
            used.add(name)
            params.append(dataclasses.replace(p, name=name, dtype=got.dtype, data=got.data,
                                              tied_to=got.tied_to))
        if params:
            layers.append(_layer(layer, params, spelled, own.prefix))
    where = f"the model built by {option('source_model', origin)}"
    if not used:
        raise UsageError(f"{where} has none of the source's tensor names "
                         f"(it has e.g. {next(iter(theirs.names), 'none')}, the source "
                         f"{next(iter(stored), 'none')})", path=weights.source,
                         hint="give the file that builds the model these weights were saved "
                              "from")
    if conflicts:
        raise UsageError(f"{len(conflicts)} tensor(s) of the source have another shape in "
                         f"{where}: {'; '.join(conflicts[:3])}",
                         path=weights.source,
                         hint="give the file that builds the model these weights were saved "
                              "from")
    leftover = [dataclasses.replace(l, params=tuple(p for p in l.params if p.name not in used))
                for l in weights.layers if any(p.name not in used for p in l.params)]
    return dataclasses.replace(
        weights, layers=tuple(layers + leftover), order=model.order,
        meta=_meta(weights, model, origin, spelled, [p.name for l in leftover
                                                    for p in l.params], absent))


class _Names:
    """The names of one side and the wrapper prefixes all of them carry."""

    def __init__(self, names: list[str], declared: Any) -> None:
        self.names = names
        self.prefix = "".join(common_prefixes(names, declared))

    def key(self, name: str) -> str:
        return name[len(self.prefix):] if name.startswith(self.prefix) else name


def _layer(layer: Layer, params: list, spelled, prefix: str) -> Layer:
    attrs = dict(layer.attrs)
    if FED_BY in attrs:
        attrs[FED_BY] = tuple(_layer_name(n, spelled, prefix) for n in attrs[FED_BY])
    return dataclasses.replace(layer, name=_layer_name(layer.name, spelled, prefix),
                               params=tuple(params), attrs=attrs)


def _layer_name(name: str, spelled, prefix: str) -> str:
    """A model layer's name as the checkpoint's grouping spells it (``<root>``: the prefix)."""
    if name == "<root>":
        return prefix.rstrip(".") or "<root>"
    return spelled(name)


def _meta(weights: ParamGraph, model: ParamGraph, origin: str, spelled, leftover: list[str],
          absent: list[str]) -> dict[str, Any]:
    meta = {k: v for k, v in weights.meta.items() if k not in ("stored_order", "order_from")}
    meta.update({k: model.meta[k] for k in MODEL_META if k in model.meta})
    meta["described_by"] = origin
    if model.meta.get("registration_order"):
        meta["registration_order"] = [spelled(n) if n != "<root>" else n
                                      for n in model.meta["registration_order"]]
    decisions = list(model.meta.get("decisions", ()))
    if leftover:
        decisions.append(f"{weights.source}: {len(leftover)} tensor(s) the model of "
                         f"{origin} does not have keep what their names say (e.g. "
                         f"{leftover[0]})")
    if absent:
        decisions.append(f"{weights.source}: {len(absent)} tensor(s) of the model of {origin} "
                         f"are not in it (e.g. {absent[0]}); is it the model these weights "
                         f"were saved from?")
    if decisions:
        meta["decisions"] = decisions
    return meta
