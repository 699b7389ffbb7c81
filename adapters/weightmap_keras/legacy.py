"""Keras 2 legacy HDF5: full models (``model.save("m.h5")``) and weights-only files
(``model.save_weights("w.h5")``), written by tf_keras, Keras 2 or Keras 3's legacy saver.

Layout: the root (weights-only) or ``/model_weights`` (full model) lists ``layer_names`` in
``model.layers`` order; each layer group lists its ``weight_names`` (``block1_conv1/kernel:0``)
in the order the layer holds them, each the path of a dataset below the group. A full model also
has the ``model_config`` JSON at the root. The same builder reads live tf_keras models
(``live.py``), which gives them the names their saved file would have.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from weightmap.errors import FormatError
from weightmap.graph import Layer, ParamGraph, TensorData

from .build import Weight, infer_class, make_layer, with_structure
from .classes import direction_of, op_of, role_from_weight_name
from .h5io import Location, dataset_spec, load_attr, load_json_attr, open_h5
from .modelconfig import LayerSpec, ModelInfo, walk

FORMAT_FULL = "keras2-h5"
FORMAT_WEIGHTS = "keras2-h5-weights"
TOP_LEVEL = "top_level_model_weights"


@dataclass(frozen=True)
class Stored:
    """A weight as the file (or live model) holds it."""

    name: str                      # the weight name, e.g. block1_conv1/kernel:0
    shape: tuple[int, ...]
    dtype: str
    data: TensorData | None


def read(path: Path, fmt: str, *, config: Any = None) -> ParamGraph:
    loc = Location(str(path))
    with open_h5(loc) as f:
        full = "model_weights" in f
        root = f["model_weights"] if full else f
        model_cfg = load_json_attr(f, "model_config", loc.path) if full else None
        layer_names = load_attr(root, "layer_names")
        if layer_names is None:
            raise FormatError("no layer_names attribute: not a Keras HDF5 weights file",
                              path=path, hint="expected a file written by model.save(...h5) or "
                                              "model.save_weights(...h5)")
        groups = [(name, _group_weights(root, name, loc)) for name in layer_names]
        if TOP_LEVEL in root:
            groups.append((TOP_LEVEL, _group_weights(root, TOP_LEVEL, loc)))
        meta = {k: load_attr(root, k) or load_attr(f, k) for k in ("keras_version", "backend")}
    if model_cfg is None and config is not None:
        model_cfg = config
    meta["config"] = "model_config" if full else ("option" if config is not None else "none")
    return build_graph(groups, model_cfg, fmt=FORMAT_FULL if full else FORMAT_WEIGHTS,
                       source=str(path), meta=meta)


def _group_weights(root: Any, name: str, loc: Location) -> list[Stored]:
    if name not in root:
        raise FormatError(f"layer_names lists {name!r} but the file has no such group",
                          path=loc.path, hint="the file is truncated or was edited")
    group = root[name]
    out = []
    for wname in load_attr(group, "weight_names") or []:
        if wname not in group:
            raise FormatError(f"layer {name!r} lists weight {wname!r} that the file lacks",
                              path=loc.path, tensor=wname)
        spec = dataset_spec(group[wname], loc, 0)
        out.append(Stored(wname, spec.shape, spec.dtype, spec.data))
    return out


def build_graph(groups: Sequence[tuple[str, list[Stored]]], model_cfg: Mapping | None, *,
                fmt: str, source: str, meta: dict, known_inputs: Mapping | None = None,
                live: Any = None) -> ParamGraph:
    """The graph of ``(layer name, weights)`` groups in model order, typed by the config."""
    info = walk(model_cfg, known_inputs) if model_cfg is not None else None
    qualify = _duplicates(groups)
    layers: list[Layer] = []
    weightless: dict[str, str] = {}          # weightless layer -> the layer before it ("")
    for gname, stored in groups:
        if not stored:
            if gname != TOP_LEVEL:
                weightless[gname] = layers[-1].name if layers else ""
            continue
        for name, cls, cfg, items in _parts(gname, stored, info):
            weights = [_weight(s, gname, qualify, op_of(cls, cfg)) for s in items]
            flatten = info.flatten.get(name) if info else None
            layers.append(make_layer(name, cls, cfg, weights, flatten))
    layers = with_structure(layers, info)
    meta = dict(meta, order_source="layer_names", weightless_layers=list(weightless),
                weightless_after=weightless)
    if info is not None:
        meta["model_class"] = model_cfg.get("class_name")
        if info.input_shape is not None:
            meta["input_shape"] = list(info.input_shape)
        if info.notes:
            meta["notes"] = info.notes
    # layer_names lists model.layers, which for a model with a config is the config's order
    # (a topological order of its data flow): as trusted as the .keras reader's
    return ParamGraph(format=fmt, framework="keras", source=source, layers=tuple(layers),
                      order="config" if info is not None else "registration", meta=meta,
                      live=live)


def _duplicates(groups: Sequence[tuple[str, list[Stored]]]) -> set[str]:
    counts = Counter(s.name for _, stored in groups for s in stored)
    return {name for name, n in counts.items() if n > 1}


def _weight(s: Stored, gname: str, qualify: set[str], op: str) -> Weight:
    # A weight name shared by two layer groups (possible with user-given names) is qualified
    # with its group, the path of its dataset below /model_weights.
    name = f"{gname}/{s.name}" if s.name in qualify else s.name
    return Weight(name, role_from_weight_name(s.name, op), s.shape, s.dtype, s.data,
                  direction_of(s.name))


def _parts(gname: str, stored: list[Stored], info: ModelInfo | None):
    """(graph name, class, config, weights) of each layer inside one top-level group: the layer
    itself, or the inner layers of a nested model."""
    specs = [s for s in info.specs if s.outer == gname] if info else []
    if len(specs) == 1 and specs[0].name == gname:
        yield gname, specs[0].class_name, specs[0].config, stored
        return
    if specs:
        yield from _split_by_config(gname, stored, specs)
        return
    for name, items in _split_by_name(gname, stored):
        cls, cfg = infer_class(name.rsplit("/", 1)[-1], [s.name for s in items],
                               [s.shape for s in items])
        yield name, cls, cfg, items


def _split_by_config(gname: str, stored: list[Stored], specs: list[LayerSpec]):
    """A nested model's weights go to the inner layer named in their path."""
    local = {spec.name.rsplit("/", 1)[-1]: spec for spec in specs}
    owned: dict[str, list[Stored]] = {}
    for s in stored:
        owner = next((p for p in s.name.split("/")[:-1] if p in local), None)
        if owner is None:
            raise FormatError(f"weight {s.name!r} of nested model {gname!r} belongs to none of "
                              f"its layers ({', '.join(local)})", tensor=s.name)
        owned.setdefault(owner, []).append(s)
    for spec in specs:
        items = owned.get(spec.name.rsplit("/", 1)[-1])
        if items:
            yield spec.name, spec.class_name, spec.config, items


def _split_by_name(gname: str, stored: list[Stored]) -> list[tuple[str, list[Stored]]]:
    """Without a config: a group whose weights are not named after it is a nested model, its
    inner layers told apart by the first part of the weight names (``dense_1/kernel:0``)."""
    if any(s.name.startswith(gname + "/") for s in stored) or \
            any("/" not in s.name for s in stored):
        return [(gname, stored)]
    inner: dict[str, list[Stored]] = {}
    for s in stored:
        inner.setdefault(s.name.split("/")[0], []).append(s)
    return [(f"{gname}/{first}", items) for first, items in inner.items()]
