"""A Keras model config (``model_config`` attribute, ``config.json``, ``model.get_config()``) as
ordered layer specs, plus what each dense layer that reads a ``Flatten`` receives.

The config is data: class names and numbers are read, nothing is imported or called (a Lambda's
function, custom objects and module references stay strings). Nested Sequential / Functional
models are flattened into their inner layers, named ``outer/inner``.

Each spec also carries the path its variables have in a Keras 3 ``.weights.h5``: Keras names
the entries of a model's ``layers`` list by their class in snake case, numbered per class in
``model.layers`` order (``conv2d``, ``conv2d_1`` ... ``conv2d_10``), which excludes a
Sequential's InputLayer but includes a Functional model's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from weightmap.errors import FormatError

from .classes import MODEL_CLASSES, OP_OF_CLASS, WRAPPERS, to_snake_case
from .shapes import MERGE_SAME, PASS_THROUGH, Shape, output_shape

Flow = tuple  # (producer layer graph name | None, per-sample shape | None)


@dataclass(frozen=True)
class LayerSpec:
    """One leaf layer of the model, in model order."""

    name: str                            # graph name: nested names joined by "/"
    class_name: str | None
    config: Mapping[str, Any] | None     # the layer's own config (None when unknown)
    k3_path: str                         # its group in a Keras 3 .weights.h5
    outer: str                           # the top-level layer holding it (legacy h5 group)


@dataclass
class ModelInfo:
    specs: list[LayerSpec] = field(default_factory=list)
    # dense layer name -> (per-sample shape in flatten order, "channels_last" | "channels_first")
    flatten: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # every layer (weights or not) -> the layers whose outputs it takes (model inputs left out)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    # dense layer name -> "flatten" | "pooled" | "features": what it reads (see dense_inputs)
    dense_input: dict[str, str] = field(default_factory=dict)
    # per-sample shape of the model's first input layer (channels last for images), if known
    input_shape: Shape | None = None


def is_model(entry: Mapping[str, Any]) -> bool:
    cfg = entry.get("config")
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("layers"), list):
        return False
    return entry.get("class_name") in MODEL_CLASSES or "input_layers" in cfg


def walk(model: Mapping[str, Any] | None,
         known_inputs: Mapping[str, Shape] | None = None) -> ModelInfo | None:
    """Specs and flatten shapes of a ``{"class_name", "config"}`` model entry; None when it
    describes no layers (a subclassed model's config)."""
    if not isinstance(model, Mapping) or not is_model(model):
        return None
    walker = _Walker(dict(known_inputs or {}))
    try:
        walker.model(model, prefix="", k3_prefix="", outer=None, upstream=[])
        info = ModelInfo(specs=walker.specs, inputs=walker.inputs,
                         input_shape=walker.input_shape)
        _find_flattens(walker, info)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        # a config is untrusted JSON: a list where a dict belongs is a malformed file
        raise FormatError(f"the model config is malformed: {type(exc).__name__}: {exc}",
                          hint="the config JSON does not have the structure Keras writes") \
            from exc
    return info


def _batch_shape(cfg: Mapping[str, Any]) -> Shape | None:
    for key in ("batch_shape", "batch_input_shape"):
        value = cfg.get(key)
        if isinstance(value, (list, tuple)) and value:
            return tuple(value[1:])
    return None


def _names(refs: Any) -> list[str]:
    """``[["in", 0, 0], ...]`` or a single ``["in", 0, 0]`` -> layer names."""
    if not isinstance(refs, list) or not refs:
        return []
    if isinstance(refs[0], str):
        return [refs[0]]
    return [r[0] for r in refs if isinstance(r, (list, tuple)) and r and isinstance(r[0], str)]


def inbound_names(layer: Mapping[str, Any]) -> list[str]:
    """Producers of a functional layer's first call, in both config dialects."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, Mapping):                        # keras 3: {"args": [...], "kwargs"}
        found: list[str] = []
        _keras_histories(node.get("args", []), found)
        return found
    return [ref[0] for ref in node                        # tf_keras: [[name, node, idx, kw]]
            if isinstance(ref, (list, tuple)) and ref and isinstance(ref[0], str)]


def _keras_histories(value: Any, found: list[str]) -> None:
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            if history:
                found.append(history[0])
            return
        for v in value.values():
            _keras_histories(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _keras_histories(v, found)


def _build_input(layer: Mapping[str, Any]) -> Shape | None:
    """Keras 3 records each layer's built input shape; a flat list means one input."""
    shape = (layer.get("build_config") or {}).get("input_shape")
    if isinstance(shape, list) and shape and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape[1:])
    return None


def unique_name(name: str, used: dict[str, int]) -> str:
    """Keras' own naming of unnamed layers and containers: ``dense``, ``dense_1``, ``dense_2``
    ... (``used`` counts per base name)."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


class _Walker:
    def __init__(self, known_inputs: dict[str, Shape]):
        self.known_inputs = known_inputs
        self.specs: list[LayerSpec] = []
        self.by_name: dict[str, LayerSpec] = {}
        self.producer: dict[str, str | None] = {}
        self.inputs: dict[str, list[str]] = {}
        self.in_shape: dict[str, Shape | None] = {}
        self.input_shape: Shape | None = None       # the first input layer's

    def first_input(self, shape: Shape | None) -> Shape | None:
        if self.input_shape is None and shape is not None:
            self.input_shape = shape
        return shape

    def model(self, entry, prefix, k3_prefix, outer, upstream: list[Flow]) -> Flow:
        cfg = entry["config"]
        if entry.get("class_name") == "Sequential":
            return self.sequential(cfg, prefix, k3_prefix, outer, upstream)
        return self.functional(cfg, prefix, k3_prefix, outer, upstream)

    def sequential(self, cfg, prefix, k3_prefix, outer, upstream: list[Flow]) -> Flow:
        used: dict[str, int] = {}
        flow: Flow = upstream[0] if upstream else (None, None)
        for layer in cfg["layers"]:
            cls, lcfg = layer.get("class_name"), layer.get("config") or {}
            if cls == "InputLayer":       # not in a Sequential's model.layers: no weights group
                flow = (flow[0], self.first_input(_batch_shape(lcfg)) or flow[1])
                continue
            if flow[1] is None:
                flow = (flow[0], self.first_input(_batch_shape(lcfg)))
            k3 = f"{k3_prefix}layers/{unique_name(to_snake_case(cls or ''), used)}"
            flow = self.layer(layer, prefix, k3, outer, [flow])
        return flow

    def functional(self, cfg, prefix, k3_prefix, outer, upstream: list[Flow]) -> Flow:
        used: dict[str, int] = {}
        outputs: dict[str, Flow] = {}
        fed = dict(zip(_names(cfg.get("input_layers")), upstream))
        for layer in cfg["layers"]:
            cls, lcfg = layer.get("class_name"), layer.get("config") or {}
            name = lcfg.get("name") or layer.get("name")
            k3 = f"{k3_prefix}layers/{unique_name(to_snake_case(cls or ''), used)}"
            if cls == "InputLayer":
                up = fed.get(name, (None, None))
                outputs[name] = (up[0], self.first_input(_batch_shape(lcfg)) or up[1])
                continue
            ins = [outputs.get(p, (None, None)) for p in inbound_names(layer)] or [(None, None)]
            outputs[name] = self.layer(layer, prefix, k3, outer, ins)
        out = _names(cfg.get("output_layers"))
        return outputs.get(out[0], (None, None)) if out else (None, None)

    def layer(self, layer, prefix, k3, outer, ins: list[Flow]) -> Flow:
        cls, lcfg = layer.get("class_name"), layer.get("config")
        name = (lcfg or {}).get("name") or layer.get("name") or k3.rsplit("/", 1)[-1]
        gname = prefix + name
        top = outer or name
        if is_model(layer):
            return self.model(layer, gname + "/", k3 + "/", top, ins)
        spec = LayerSpec(gname, cls, lcfg if isinstance(lcfg, Mapping) else None, k3, top)
        self.specs.append(spec)
        self.by_name[gname] = spec
        shape = self.known_inputs.get(gname) or _build_input(layer) or ins[0][1]
        self.producer[gname] = ins[0][0]
        self.inputs[gname] = [i[0] for i in ins if i[0] is not None]
        self.in_shape[gname] = shape
        out = output_shape(cls or "", lcfg or {}, [shape] + [i[1] for i in ins[1:]])
        return (gname, out)


# Layers whose output a Dense may read without it being a flattened feature map; anything
# else that is not a Flatten (a Reshape, a Lambda, a custom layer) leaves it unknown.
_POOLING = ("GlobalAveragePooling", "GlobalMaxPooling", "GlobalAvgPool", "GlobalMaxPool")
_SHAPED = ("MaxPooling", "AveragePooling", "MaxPool", "AvgPool", "ZeroPadding", "Cropping",
           "UpSampling")


def _built_in(class_name: str) -> bool:
    """A Keras layer that never flattens a feature map into a vector (Flatten, Reshape,
    Permute, Lambda and custom layers are not among these)."""
    return (class_name in OP_OF_CLASS or class_name in WRAPPERS or class_name in MODEL_CLASSES
            or class_name in PASS_THROUGH or class_name in MERGE_SAME
            or class_name in ("Concatenate", "InputLayer") or class_name.startswith(_SHAPED))


def dense_input(class_name: str | None) -> str | None:
    """What a Dense reads when the nearest producer that changes shapes is of this class:
    ``flatten`` (a Flatten), ``pooled`` (global pooling), ``features`` (a vector or the last
    axis of anything else: a Dense never flattens), None when the class does not say."""
    if class_name is None:
        return "features"                       # the model's input itself
    if class_name == "Flatten":
        return "flatten"
    if class_name.startswith(_POOLING):
        return "pooled"
    return "features" if _built_in(class_name) else None


def _find_flattens(w: _Walker, info: ModelInfo) -> None:
    """What each Dense reads (``info.dense_input``); those fed by a Flatten (through
    shape-keeping layers such as Dropout) get the per-sample shape the Flatten enumerates and
    its channel position."""
    for spec in w.specs:
        if spec.class_name != "Dense":
            continue
        src = w.producer.get(spec.name)
        while src is not None and w.by_name[src].class_name in PASS_THROUGH:
            src = w.producer.get(src)
        kind = dense_input(w.by_name[src].class_name if src is not None else None)
        if kind is not None:
            info.dense_input[spec.name] = kind
        if kind != "flatten":
            continue
        shape = w.in_shape.get(src)
        if shape is None or None in shape or len(shape) < 2:
            continue
        flatten_fmt = (w.by_name[src].config or {}).get("data_format") or "channels_last"
        tensor_fmt = _tensor_format(w, src)
        if flatten_fmt == "channels_first":      # Keras moves channels last, then flattens
            if tensor_fmt != "channels_first":
                info.notes.append(f"{src}: channels_first Flatten of a channels_last tensor; "
                                  f"no flatten shape recorded for {spec.name}")
                continue
            shape, fmt = tuple(shape[1:]) + (shape[0],), "channels_last"
        else:
            fmt = tensor_fmt
        info.flatten[spec.name] = (tuple(int(d) for d in shape), fmt)


def _tensor_format(w: _Walker, name: str) -> str:
    """The data format of the tensor a layer receives: that of the nearest producer that has
    one (convolutions, pooling, padding); channels_last when none says."""
    src = w.producer.get(name)
    while src is not None:
        fmt = (w.by_name[src].config or {}).get("data_format")
        if fmt in ("channels_last", "channels_first"):
            return fmt
        src = w.producer.get(src)
    return "channels_last"
