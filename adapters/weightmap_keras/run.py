"""Running a Keras model for verification (``weightmap.equivalence``).

A live model (a model file's, or the caller's) runs as it is, with weights loaded into it when
asked (``load_weights`` of a file, as a user loads it; a source checkpoint's tensors by name);
a caller's model gets its own weights back on ``close``. A full-model file (``.keras``, a
legacy ``.h5`` with its config) is rebuilt from its config only when every class in it is a
built-in Keras class and none carries code (``Lambda`` and its kin), checked on the JSON
before Keras sees it; Keras 3 then loads it with ``safe_mode=True`` as well. A weights-only
file has no architecture and cannot be run.

Intermediate outputs come from a Keras model over the layers' own output tensors (built from
the model's inputs), called with ``training=False``; a subclassed model has no such tensors, so
only its outputs are compared.
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from weightmap import dtypes
from weightmap.equivalence.runner import InputSpec, Run
from weightmap.errors import MissingDependencyError, UsageError, VerifyError
from weightmap.graph import ParamGraph

from . import keras3, legacy
from .classes import attrs_from_config, op_of
from .quiet import quiet_tensorflow_start

# Layers whose config carries code (a marshalled function, a TF op by name): never rebuilt.
CODE_CARRYING = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
_WEIGHTS_ONLY = (legacy.FORMAT_WEIGHTS, keras3.FORMAT_WEIGHTS)


def _keras(version: str) -> Any:
    """keras 3, or tf_keras for a model saved by Keras 2."""
    name = "tf_keras" if version.startswith("2") else "keras"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(f"running this Keras {version or '3'} model needs "
                                     f"{name.replace('_', '-')}",
                                     hint=f"pip install {name.replace('_', '-')}") from None


def run_file(path: Path, fmt: str, *, graph: ParamGraph, weights: Any = None) -> "KerasRunner":
    from .adapter import load_config
    if fmt in _WEIGHTS_ONLY:
        raise VerifyError(f"{Path(path).name} holds weights only: no model config says how to "
                          "build the model", path=path)
    try:
        config = load_config(Path(path))
    except UsageError as exc:
        raise VerifyError(exc.message, path=path) from exc
    version = str(graph.meta.get("keras_version") or "3")
    refuse_code(config, path)                 # on the JSON, before Keras is even imported
    # TensorFlow's start-up logs (its import, its first variable) stay off stderr
    with quiet_tensorflow_start(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = _keras(version)
        check_builtin(config, keras, path)
        try:
            if keras.__name__ == "keras":
                model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
            else:              # load_model does these two, and compiles and more besides
                model = keras.models.model_from_config(zero_initializers(config))
                model.load_weights(str(path))
        except Exception as exc:       # Keras' own refusal or failure, in one line
            raise VerifyError(f"Keras cannot rebuild the model from its config: "
                              f"{type(exc).__name__}: {_one_line(exc)}", path=path) from exc
    what = f"{keras.__name__} model rebuilt from the config of {Path(path).name}"
    if weights is not None:
        what += f" with {load(model, weights, keras)}"
    return KerasRunner(model, keras, what, graph)


def zero_initializers(config: Any) -> Any:
    """``config`` with every ``*_initializer`` a ``Zeros``: the weights are loaded from the
    file right after the model is built, so drawing random values first (a transient copy of
    every weight) is work for nothing. ``load_weights`` refuses a file that lacks a weight of
    the model, so none keeps its zeros."""
    if isinstance(config, Mapping):
        return {k: {"class_name": "Zeros", "config": {}}
                if k.endswith("_initializer") and isinstance(v, Mapping)
                else zero_initializers(v) for k, v in config.items()}
    if isinstance(config, list):
        return [zero_initializers(v) for v in config]
    return config


def run_live(obj: Any, *, graph: ParamGraph, weights: Any = None, example_input: Any = None,
             owned: bool = False) -> "KerasRunner":
    keras = importlib.import_module(_root_package(obj))
    what = f"{keras.__name__} model {getattr(obj, 'name', '')!r}".replace(" ''", "")
    restore = None
    if weights is not None:
        if not owned:
            restore = obj.get_weights()
        what += f" with {load(obj, weights, keras)}"
    return KerasRunner(obj, keras, what, graph, restore=restore)


def _root_package(obj: Any) -> str:
    for cls in type(obj).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        if root in ("keras", "tf_keras"):
            return root
    return "keras"


# ---- what a config may hold -------------------------------------------------------------------

def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if "class_name" in value:
            yield value
        for v in value.values():
            yield from _objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects(v)


def refuse_code(config: Any, path: Any) -> None:
    """VerifyError unless every object of the config is a built-in Keras class without code.

    Keras 3 names each object's ``module``; one outside ``keras`` is a custom class, which
    Keras would import to rebuild. tf_keras names classes only; those must exist in Keras'
    own namespace (``check_builtin``, once Keras is imported)."""
    for obj in _objects(config):
        cls = str(obj.get("class_name"))
        module = obj.get("module")
        registered = obj.get("registered_name")
        if cls in CODE_CARRYING or cls.startswith("__lambda"):
            raise VerifyError(f"the model config holds a {cls} layer, which carries code; "
                              "weightmap never runs code from a checkpoint", path=path)
        if module is not None and not str(module).split(".")[0] == "keras":
            raise VerifyError(f"the model config holds {cls} from module {module!r}, not a "
                              "built-in Keras class; weightmap never imports code a "
                              "checkpoint names", path=path)
        if isinstance(registered, str) and ">" in registered:
            raise VerifyError(f"the model config holds the custom object {registered!r}",
                              path=path)


def check_builtin(config: Any, keras: Any, path: Any) -> None:
    """Every layer class of a model config (tf_keras configs name no module) exists among the
    classes ``keras`` itself exports, so rebuilding it looks up nothing else."""
    names = _layer_classes(config)
    known = {"Functional", "Sequential", "Model"} | {n for n in dir(keras.layers)
                                                     if not n.startswith("_")}
    unknown = sorted(names - known)
    if unknown:
        raise VerifyError(f"the model config holds {', '.join(unknown[:3])}, not built-in "
                          "Keras layers", path=path)


def _layer_classes(config: Any) -> set[str]:
    """Class names of the layers of every model in a config, wrapped layers included."""
    found: set[str] = set()
    for obj in _objects(config):
        cfg = obj.get("config")
        if not isinstance(cfg, Mapping):
            continue
        layers = cfg.get("layers")
        for item in layers if isinstance(layers, list) else ():
            if isinstance(item, Mapping):
                found.add(str(item.get("class_name")))
        for key in ("layer", "backward_layer"):
            if isinstance(cfg.get(key), Mapping):
                found.add(str(cfg[key].get("class_name")))
    return found


# ---- weights ------------------------------------------------------------------------------------

def load(model: Any, weights: Any, keras: Any) -> str:
    if isinstance(weights, ParamGraph):
        from .emit import load_into
        from .live import read_live
        mine = read_live(model)
        names = {p.name for p in mine.params()}
        theirs = [p for p in weights.params() if not p.tied_to]
        missing = names - {p.name for p in theirs}
        extra = [p.name for p in theirs if p.name not in names]
        if missing or extra:
            raise VerifyError(f"the tensors of {weights.source} do not fit the model: "
                              f"{len(missing)} missing, {len(extra)} unknown (e.g. "
                              f"{(sorted(missing) + extra)[0]})",
                              hint="the model file must build the model the weights belong to")
        load_into(mine, ((p.name, np.asarray(p.read())) for p in theirs))
        return f"the tensors of {weights.source}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(weights))
    except Exception as exc:
        raise VerifyError(f"Keras cannot load the weights: {type(exc).__name__}: "
                          f"{_one_line(exc)}", path=weights) from exc
    return Path(weights).name


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


# ---- running ------------------------------------------------------------------------------------

def _dtype(value: Any) -> str | None:
    name = getattr(value, "name", None) or str(value)
    return name if name in dtypes.DTYPES else None


class KerasRunner:
    framework = "keras"

    def __init__(self, model: Any, keras: Any, description: str, graph: ParamGraph,
                 restore: list | None = None):
        self.model, self.keras, self.description = model, keras, description
        self.graph, self.restore = graph, restore

    def _inputs(self) -> list:
        try:
            return list(self.model.inputs or [])
        except (AttributeError, ValueError):       # a subclassed model has none
            return []

    def inputs(self) -> list[InputSpec]:
        out = []
        for i, tensor in enumerate(self._inputs()):
            shape = tuple(None if d is None else int(d) for d in tuple(tensor.shape))
            name = getattr(tensor, "name", None) or f"input{i}"
            out.append(InputSpec(str(name).split(":")[0], shape, _dtype(tensor.dtype),
                                 "Keras input"))
        return out

    def run(self, feeds: Sequence[np.ndarray], capture: Sequence[str]) -> Run:
        inputs = self._inputs()
        skipped: dict[str, str] = {}
        taken: list[tuple[str, Any]] = []
        if inputs:
            for name in capture:
                tensor, why = self._output_of(name)
                if tensor is None:
                    skipped[name] = why
                else:
                    taken.append((name, tensor))
            outputs = list(self.model.outputs)
            runner = self.keras.Model(inputs, outputs + [t for _, t in taken])
        else:
            skipped = {n: "a subclassed Keras model exposes no layer outputs" for n in capture}
            outputs, runner = None, self.model
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = runner(list(feeds) if len(feeds) > 1 or inputs else feeds[0],
                             training=False)
        except Exception as exc:
            raise VerifyError(f"the Keras model failed on the probe: {type(exc).__name__}: "
                              f"{_one_line(exc)}") from exc
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        n_out = len(outputs) if outputs is not None else len(got)
        names = [f"output{i}" if n_out > 1 else "output" for i in range(n_out)]
        arrays = [np.asarray(g) for g in got]
        return Run(outputs=list(zip(names, arrays[:n_out])),
                   layers={name: arr for (name, _), arr in zip(taken, arrays[n_out:])},
                   skipped=skipped, described={name: self._describe(name)
                                               for name, _ in taken})

    def _describe(self, name: str) -> tuple[str, dict]:
        layer = self.model.get_layer(name)
        cls = type(layer).__name__
        try:
            config = layer.get_config()
        except Exception:            # a layer without a config: what the class says
            config = None
        op = op_of(cls, config)
        return op, attrs_from_config(cls, config, op)

    def _output_of(self, name: str) -> tuple[Any, str]:
        try:
            layer = self.model.get_layer(name)
        except (ValueError, KeyError):
            # a graph names a nested model's layer "<model>/<layer>"; tf_keras also allows
            # "/" in a layer's own name (DenseNet's conv1/conv), found just above
            return None, "a layer of a nested model: its output is not one of this model's" \
                if "/" in name else "no layer of this name in the model"
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError) as exc:
            return None, f"its output is not one tensor of the model ({_one_line(exc)[:80]})"
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out, ""

    def close(self) -> None:
        if self.restore is not None:
            self.model.set_weights(self.restore)
            self.restore = None
