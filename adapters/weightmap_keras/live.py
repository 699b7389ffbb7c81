"""Live Keras models: keras 3 and tf_keras (Keras 2).

A live model is described with the names its own saved file would have, so that a model and its
file are the same graph: a keras 3 model gets the ``.weights.h5`` paths (``layers/conv2d_3/
vars/0``, found by walking the model the way Keras' saver does), a tf_keras model the legacy
``.h5`` weight names (``block1_conv1/kernel:0``, in the saver's trainable-then-non-trainable
order). Op kinds and attributes come from ``model.get_config()``; the flatten shape of a dense
layer from the built model's own input shapes. Data is the live variables (read on demand).

Keras is imported here only, and only for a model that is already Keras'.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from weightmap import dtypes
from weightmap.errors import MissingDependencyError, UsageError
from weightmap.graph import ArrayData, ParamGraph

from . import keras3, legacy
from .classes import MODEL_CLASSES
from .modelconfig import LayerSpec, unique_name, walk

FORMAT = "keras-live"


def read_live(model: Any, *, origin: str | None = None, example_input: Any = None,
              **_options: Any) -> ParamGraph:
    if example_input is not None and not getattr(model, "built", True):
        model(example_input)                 # the user's own model: build it to have weights
    source = origin or f"live {type(model).__name__} {getattr(model, 'name', '')!r}".strip()
    if _is_keras3(model):
        return _read_keras3(model, source)
    return _read_legacy(model, source)


def _keras_class(model: Any) -> type | None:
    """The first Keras class in the type's MRO (a user's subclass lives in the user's module)."""
    for cls in type(model).__mro__:
        if (cls.__module__ or "").split(".")[0] in ("keras", "tf_keras"):
            return cls
    return None


def _root_package(model: Any) -> str:
    """``keras`` or ``tf_keras``."""
    cls = _keras_class(model)
    return cls.__module__.split(".")[0] if cls is not None else ""


def _is_keras3(model: Any) -> bool:
    pkg = sys.modules.get(_root_package(model))
    version = str(getattr(pkg, "__version__", "0"))
    return _root_package(model) == "keras" and version.split(".")[0].isdecimal() and \
        int(version.split(".")[0]) >= 3


def _version(model: Any) -> str:
    return str(getattr(sys.modules.get(_root_package(model)), "__version__", ""))


def _dtype(var: Any) -> str:
    dt = getattr(var, "dtype", None)
    name = getattr(dt, "name", None) or str(dt)
    return name if name in dtypes.DTYPES else dtypes.from_numpy(np.dtype(name))


def _entry(model: Any) -> dict | None:
    """``{"class_name", "config"}`` of a Sequential/Functional model (or a user's subclass of
    one); None for others."""
    keras_cls = _keras_class(model)
    cls = keras_cls.__name__ if keras_cls is not None else ""
    if cls not in MODEL_CLASSES:
        return None
    try:
        return {"class_name": cls, "config": model.get_config()}
    except Exception:                       # a model whose config cannot be made: no config
        return None


def _flatten_inputs(model: Any, prefix: str = "") -> dict[str, tuple]:
    """Per-sample input shapes of the Flatten layers, as the built model knows them."""
    found: dict[str, tuple] = {}
    for layer in getattr(model, "layers", []):
        name = prefix + layer.name
        if hasattr(layer, "layers") and type(layer).__name__ in MODEL_CLASSES:
            found.update(_flatten_inputs(layer, name + "/"))
        elif type(layer).__name__ == "Flatten":
            shape = _input_shape(layer)
            if shape is not None:
                found[name] = shape
    return found


def _input_shape(layer: Any) -> tuple | None:
    for get in (lambda: layer.input.shape, lambda: layer.input_shape):
        try:
            shape = tuple(get())
        except Exception:
            continue
        if shape and all(d is None or isinstance(d, int) for d in shape):
            return shape[1:]
    return None


# ---------------------------------------------------------------------------- tf_keras
def _read_legacy(model: Any, source: str) -> ParamGraph:
    # a model's layers, or a single layer read on its own
    is_model = hasattr(model, "layers")
    layers = list(model.layers) if is_model else [model]
    groups = [(layer.name, _legacy_weights(layer)) for layer in layers]
    # a model's own variables (not in any layer): the saver's top_level_model_weights group
    top = list(getattr(model, "_trainable_weights", [])) + \
        list(getattr(model, "_non_trainable_weights", [])) if is_model else []
    if top:
        groups.append((legacy.TOP_LEVEL, [_stored(w) for w in top]))
    meta = {"keras_version": _version(model), "config": "get_config"}
    return legacy.build_graph(groups, _entry(model), fmt=FORMAT, source=source, meta=meta,
                              known_inputs=_flatten_inputs(model), live=model)


def _legacy_weights(layer: Any) -> list[legacy.Stored]:
    # the saver's order: trainable first, then non-trainable
    return [_stored(w) for w in list(layer.trainable_weights) + list(layer.non_trainable_weights)]


def _stored(var: Any) -> legacy.Stored:
    return legacy.Stored(var.name, tuple(int(d) for d in var.shape), _dtype(var), ArrayData(var))


# ---------------------------------------------------------------------------- keras 3
def _read_keras3(model: Any, source: str) -> ParamGraph:
    owners, specs = _walk_keras3(model)
    entry = _entry(model)
    info = walk(entry, _flatten_inputs(model)) if entry is not None else None
    meta: dict[str, Any] = {"keras_version": _version(model)}
    if info is not None:
        specs, flatten, how = info.specs, info.flatten, "config"
        meta.update(config="get_config", model_class=entry["class_name"])
    else:
        flatten, how = {}, "walk"
        meta["config"] = "none"
    meta["order_source"] = how
    return keras3.assemble(specs, owners, flatten, fmt=FORMAT, source=source, info=info,
                           order="registration", meta=meta, live=model,
                           check_paths=info is not None)


def _walk_keras3(model: Any) -> tuple[dict[str, keras3.Owner], list[LayerSpec]]:
    """Mirror of Keras' ``saving_lib._save_state``: each saveable's path and variables, plus
    specs for the layers of models that are not Sequential/Functional."""
    try:
        from keras.src.saving import saving_lib
        from keras.src.saving.keras_saveable import KerasSaveable
        from keras.src.utils.naming import to_snake_case
    except ImportError as exc:           # pragma: no cover - depends on the keras version
        raise MissingDependencyError(f"this keras has no saving_lib walker ({exc})",
                                     hint="keras >= 3.0 is needed to read live keras 3 "
                                          "models") from exc
    owners: dict[str, keras3.Owner] = {}
    specs: list[LayerSpec] = []
    visited: set[int] = set()

    def state(obj: Any, path: str, parent_is_model: bool) -> None:
        if id(obj) in visited:
            return
        if hasattr(obj, "save_own_variables"):
            store: dict[str, Any] = {}
            obj.save_own_variables(store)
            name = obj.name if isinstance(getattr(obj, "name", None), str) else None
            owners[path] = keras3.Owner(path, name, [
                (k, tuple(int(d) for d in v.shape), _dtype(v), ArrayData(v))
                for k, v in store.items()])
        visited.add(id(obj))
        is_model = hasattr(obj, "layers") and hasattr(obj, "get_weights") and \
            hasattr(obj, "compile")
        if parent_is_model and not is_model and path:
            specs.append(_spec(obj, path))
        for attr, child in saving_lib._walk_saveable(obj):
            if not path and attr in keras3.SKIPPED:
                continue
            child_path = f"{path}/{attr}" if path else attr
            if isinstance(child, KerasSaveable):
                state(child, child_path, is_model)
            elif isinstance(child, (list, dict, tuple)):
                container(child, child_path, is_model, set())

    def container(items: Any, path: str, parent_is_model: bool, seen: set[int]) -> None:
        if id(items) in seen:
            return
        seen.add(id(items))
        used: dict[str, int] = {}
        for item in (items.values() if isinstance(items, dict) else items):
            if isinstance(item, KerasSaveable):
                name = unique_name(to_snake_case(type(item).__name__), used)
                state(item, f"{path}/{name}", parent_is_model)
            elif isinstance(item, (list, dict, tuple)):
                container(item, f"{path}/{unique_name('container', used)}", parent_is_model, seen)

    state(model, "", False)
    if not (hasattr(model, "layers") and hasattr(model, "compile")):
        specs.append(_spec(model, "", model.name))     # a single layer, read on its own
    if not model.built and not any(o.vars for o in owners.values()):
        raise UsageError("the Keras model is not built: it has no weights yet",
                         hint="call it on an example input or model.build(input_shape) first")
    return owners, specs


def _spec(layer: Any, path: str, name: str | None = None) -> LayerSpec:
    """A layer of a subclassed model (no model config): named by its weights path, as the file
    reader names it; class and config from the object."""
    try:
        cfg = layer.get_config()
    except Exception:
        cfg = None
    return LayerSpec(name or path, type(layer).__name__, cfg, path, name or path)
