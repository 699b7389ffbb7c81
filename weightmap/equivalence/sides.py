"""Opening each side of a verification as a runner, through the adapter registry.

A model file (``model.py[:NAME]``) is built normally (its own code, as ``python model.py``
would) and run by the adapter that accepts the object; a checkpoint is run by the adapter that
reads it, if its format holds an architecture that adapter can run without executing anything
from the file. The core never looks at a framework: which adapter runs what is the registry's
business, as reading is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import MissingDependencyError, VerifyError, WeightmapError
from ..graph import ParamGraph
from ..sources import detect, load_python_lazily, split_pyref
from ..spelling import option
from .runner import Runner

def source_hint() -> str:
    return (f"pass {option('source_model', 'FILE.py[:NAME]')}, the file that builds the source "
            "model; its weights are taken from the source checkpoint")

TARGET_HINT = "give the target as the model file that builds it (model.py[:NAME]) or an .onnx"


def open_source(source: Any, graph: ParamGraph, source_model: Any = None,
                notes: list[str] | None = None) -> Runner:
    """The source model with its own weights: a model file, a live model, or a checkpoint
    whose format holds a runnable architecture, as it is; else ``source_model`` (file or
    object) with the source checkpoint's tensors loaded by name. A source that runs by itself
    does not use ``source_model`` (a migration shares one across sources of every kind): a
    note appended to ``notes`` says so."""
    try:
        try:
            if graph.live is not None and not isinstance(graph.live, dict):
                own = _live(graph.live, graph, weights=None, example=None, owned=False)
            else:
                own = _open(source, graph, weights=None, owned=False)
        except VerifyError:
            if source_model is None:
                raise
            return _open(source_model, graph, weights=graph, owned=False)
        if source_model is not None and notes is not None:
            notes.append(f"{option('source_model', _shown(source_model))} not used: the source "
                         f"{_shown(graph.source)} runs by itself ({own.description})")
        return own
    except VerifyError as exc:
        raise VerifyError(f"cannot run the source: {exc.message}", path=exc.path,
                          tensor=exc.tensor, hint=exc.hint or source_hint()) from exc


def _shown(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(os.fspath(model)).name
    return f"a live {type(model).__name__}"


def open_target(target: Any, graph: ParamGraph, weights: Path) -> Runner:
    """The target model with the written ``weights`` loaded, as a user would load them."""
    try:
        return _open(target, graph, weights=Path(weights), owned=False)
    except VerifyError as exc:
        raise VerifyError(f"cannot run the target: {exc.message}", path=exc.path,
                          tensor=exc.tensor, hint=exc.hint or TARGET_HINT) from exc


def _open(model: Any, graph: ParamGraph, *, weights: Any, owned: bool) -> Runner:
    if isinstance(model, ParamGraph):
        if model.live is not None and not isinstance(model.live, dict):
            return _live(model.live, graph, weights, None, owned)
        model = model.source
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        pyfile, name = split_pyref(text)
        if pyfile is not None:       # built lazily where its framework can (torch: meta)
            obj, example, extra = _guard(lambda: load_python_lazily(pyfile, name), text)
            rebuild = extra.get("rebuild")
            return _live(obj, graph, weights, example, owned=True, origin=text,
                         rebuild=(lambda: rebuild()[0]) if rebuild else None)
        return _file(Path(text), graph, weights)
    return _live(model, graph, weights, None, owned)


def _live(obj: Any, graph: ParamGraph, weights: Any, example: Any, owned: bool,
          origin: str | None = None, rebuild: Any = None) -> Runner:
    if isinstance(obj, dict):
        raise VerifyError("a dict of tensors holds weights only, not the model's code")
    for adapter in registry.adapters().values():
        accepts = getattr(adapter, "accepts", None)
        if accepts and accepts(obj):
            run = getattr(adapter, "run_live", None)
            if run is None:
                break
            extra = {"rebuild": rebuild} if rebuild is not None else {}
            return _guard(lambda: run(obj, graph=graph, weights=weights, example_input=example,
                                      owned=owned, **extra), origin)
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise VerifyError(f"no adapter runs a live {kind}")


def _file(path: Path, graph: ParamGraph, weights: Any) -> Runner:
    adapter, fmt = detect(path)
    run = getattr(adapter, "run_file", None)
    if run is None:
        raise VerifyError(f"the {adapter.name} adapter runs no {fmt} file")
    return _guard(lambda: run(path, fmt, graph=graph, weights=weights), str(path))


def _guard(open_it, where: str | None) -> Any:
    """Errors of building a model or opening its runner as one-line VerifyErrors (a missing
    framework keeps its own words: what to install)."""
    try:
        return open_it()
    except VerifyError:
        raise
    except MissingDependencyError as exc:
        raise VerifyError(exc.message, hint=exc.hint) from exc
    except WeightmapError as exc:
        raise VerifyError(exc.message, path=exc.path or where, tensor=exc.tensor,
                          hint=exc.hint) from exc
