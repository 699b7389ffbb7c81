"""Turn whatever the user names (a file, a folder, ``model.py:NAME``, a live object) into a graph."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import registry
from .atomic import abandoned
from .dtypes import from_numpy
from .errors import (AdapterRegistryError, FormatError, UnknownFormatError, UsageError,
                     WeightmapError)
from .graph import ArrayData, ParamGraph
from .statedict import Entry, group

HEAD_BYTES = 64


def read(source: Any, **options: Any) -> ParamGraph:
    """A ParamGraph for a path, ``model.py[:NAME]``, or a live model / dict of arrays.

    ``lazy=True``: a model file is built without weights where its framework allows
    (``load_python_lazily``; torch: the meta device), as a port target is."""
    if isinstance(source, ParamGraph):
        return source
    lazy = options.pop("lazy", False)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        pyfile, name = split_pyref(text)
        if pyfile is not None:
            if lazy:
                obj, example, extra = load_python_lazily(pyfile, name)
                options.update(extra)
            else:
                obj, example = load_python_object(pyfile, name)
            if example is not None:
                options.setdefault("example_input", example)
            try:
                return read_live(obj, origin=text, **options)
            except WeightmapError as exc:     # e.g. example_input failing: name the file
                raise exc.located(text)
        return read_path(Path(text), **options)
    return read_live(source, **options)


def split_pyref(text: str) -> tuple[Path | None, str]:
    """``model.py`` → (model.py, "model"); ``model.py:net`` → (model.py, "net"); else (None, "")."""
    base, sep, name = text.rpartition(":")
    if sep and base.endswith(".py") and name.isidentifier():
        return Path(base), name
    if text.endswith(".py"):
        return Path(text), "model"
    return None, ""


def detect(path: Path) -> tuple[Any, str]:
    """The adapter and format name that read ``path``."""
    if not path.exists():
        raise UsageError("no such file or folder", path=path)
    head = b""
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    for adapter in registry.adapters().values():
        sniff = getattr(adapter, "sniff", None)
        fmt = sniff(path, head) if sniff else None
        if fmt:
            return adapter, fmt
    kind = "folder" if path.is_dir() else f"file starting with {head[:8]!r}"
    raise UnknownFormatError(
        f"not a checkpoint format weightmap reads ({kind})",
        path=path, hint="expected PyTorch .pt/.pth/.bin/.ckpt, safetensors, Keras .h5/"
                        ".weights.h5/.keras, ONNX .onnx, or a model .py file")


def read_path(path: Path, **options: Any) -> ParamGraph:
    left = abandoned(path)
    if left is not None:
        raise FormatError(f"this is inside {left.name}, what a weightmap port that was killed "
                          f"left unfinished and unchecked", path=path,
                          hint="remove that folder (the next port into its folder does)")
    adapter, fmt = detect(path)
    try:
        return adapter.read(path, fmt, **options)
    except WeightmapError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError) as exc:
        # A reader met something its format library could not parse: corrupt or truncated.
        raise FormatError(f"cannot read {fmt} file: {type(exc).__name__}: {exc}",
                          path=path, hint="the file is corrupt, truncated or not what its "
                                          "name says") from exc


def reader_limits() -> dict[str, tuple[int, str]]:
    """The caps readers take as read options (``read(path, max_header_bytes=...)``), gathered
    from the adapters' ``limits``: name -> (default, what it caps). A name two adapters
    declare is an error, like a name two adapters register."""
    table: dict[str, tuple[int, str]] = {}
    owner: dict[str, str] = {}
    for adapter in registry.adapters().values():
        for name, spec in getattr(adapter, "limits", {}).items():
            if name in table:
                raise AdapterRegistryError(f"reader limit {name!r} is declared by the "
                                           f"{owner[name]} and {adapter.name} adapters")
            table[name], owner[name] = spec, adapter.name
    return table


def reader_options() -> dict[str, str]:
    """The read options other than caps the adapters declare (``read_options``): name ->
    what it does (``container=``, ``config=`` ...)."""
    out: dict[str, str] = {}
    for adapter in registry.adapters().values():
        out.update(getattr(adapter, "read_options", {}))
    return out


def check_read_options(call: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Read options given as keywords to ``call`` (``weightmap.read(path, container=...,
    max_header_bytes=...)``): a name no adapter declares is a UsageError naming the valid
    keywords; a cap that is not a positive integer one naming the cap."""
    from .options import check_keywords
    if not options:
        return {}
    limits = reader_limits()
    check_keywords(call, options, allowed=[*reader_options(), *limits])
    caps = parse_limits([f"{k}={v}" for k, v in options.items() if k in limits])
    return {**{k: v for k, v in options.items() if k not in limits}, **caps}


def parse_limits(items: Any) -> dict[str, int]:
    """``["max_header_bytes=1000000", ...]`` (the CLI's ``--limit NAME=VALUE``) -> read options.
    A name no reader declares, or a value that is not a positive integer, is a UsageError
    listing the valid names."""
    if not items:
        return {}
    known = reader_limits()
    valid = ", ".join(f"{name} (default {default})" for name, (default, _) in
                      sorted(known.items()))
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if name not in known:
            raise UsageError(f"unknown reader limit {name!r}" if sep else
                             f"a limit is written NAME=VALUE, found {str(item)!r}",
                             hint=f"valid names: {valid}")
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if number <= 0:
            raise UsageError(f"reader limit {name} must be a positive integer, found "
                             f"{value.strip()!r}", hint=f"valid names: {valid}")
        out[name] = number
    return out


def read_checkpoint(source: str, limits: dict[str, int]) -> Any:
    """``source`` read with the reader ``limits`` when it is a checkpoint (a graph, which
    ``read`` and ``api.port`` take as it is); a model file or no limits: ``source`` unchanged
    (a model built by its own code has no file to cap)."""
    if not limits or split_pyref(source)[0] is not None:
        return source
    return read(source, **limits)


def read_live(obj: Any, *, origin: str | None = None, **options: Any) -> ParamGraph:
    for adapter in registry.adapters().values():
        accepts = getattr(adapter, "accepts", None)
        if accepts and accepts(obj):
            graph = adapter.read_live(obj, origin=origin, **options)
            return graph if graph.live is not None else dataclasses.replace(graph, live=obj)
    if isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        return graph_from_arrays(obj, origin=origin or "dict of arrays")
    raise UsageError(f"cannot read a live object of type {type(obj).__module__}."
                     f"{type(obj).__qualname__}",
                     hint="pass a checkpoint path, a torch nn.Module, a Keras model or a dict "
                          "of arrays")


def graph_from_arrays(arrays: dict[str, np.ndarray], *, origin: str,
                      framework: str = "torch") -> ParamGraph:
    """A graph for a plain dict of numpy arrays, named in torch's convention."""
    entries = [Entry(k, tuple(v.shape), from_numpy(v.dtype), ArrayData(v))
               for k, v in arrays.items()]
    return ParamGraph(format="arrays", framework=framework, source=origin,
                      layers=tuple(group(entries, framework)), order="stored")


def load_python_object(path: Path, name: str = "model") -> tuple[Any, Any]:
    """Import a model definition file; return its ``name`` (called if it is a factory) and its
    ``example_input`` (called if callable; None when the file defines none).

    This runs the file: it is the user's own model definition, exactly as ``python model.py``
    would. Checkpoints are never executed; only ``.py`` files named as models are.
    """
    if not path.is_file():
        raise UsageError("no such model file", path=path)
    with running_model_file(path):
        return _run_model_file(path, name)


@contextlib.contextmanager
def running_model_file(path: Path) -> Iterator[None]:
    """While a model file runs: its folder is importable (first on ``sys.path``, as with
    ``python model.py``, so it can import the modules beside it), and every adapter's
    ``model_file_context(path)`` is entered (Keras: TensorFlow's start-up logs stay off
    stderr)."""
    folder = str(path.resolve().parent)
    with contextlib.ExitStack() as stack:
        for adapter in registry.adapters().values():
            hook = getattr(adapter, "model_file_context", None)
            if hook is not None:
                stack.enter_context(hook(path))
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)        # the entry added (the first equal one)


def _run_model_file(path: Path, name: str) -> tuple[Any, Any]:
    mod_name = f"weightmap_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError("cannot import this file as Python", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    with _user_code(path, "running the model file"):
        spec.loader.exec_module(module)
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise UsageError(f"the file defines no {name!r}", path=path,
                         hint=f"name the object as FILE.py:NAME; it defines {', '.join(public[:12])}")
    obj = getattr(module, name)
    if _is_factory(obj):
        with _user_code(path, f"calling {name}()"):
            obj = obj()
    example = getattr(module, "example_input", None)
    if callable(example):
        with _user_code(path, "example_input()"):
            example = example()
    return obj, example


@contextlib.contextmanager
def _user_code(path: Path, what: str) -> Iterator[None]:
    """The user's code failed: say where, not a traceback. ``sys.exit(N)`` in it (a script's
    own argument parsing, say) is a failure too, not weightmap's exit N with nothing said."""
    try:
        yield
    except WeightmapError:
        raise
    except SystemExit as exc:
        raise UsageError(f"{what} ended in sys.exit({exc.code!r}): a model file must define the "
                         f"model, not run a program", path=path,
                         hint="put the script part under if __name__ == '__main__':") from None
    except Exception as exc:
        raise UsageError(f"{what} failed: {type(exc).__name__}: {exc}", path=path) from exc


def load_python_lazily(path: Path, name: str = "model") -> tuple[Any, Any, dict[str, Any]]:
    """``load_python_object`` inside the first adapter's ``lazy_construction(path)`` context, if
    one offers it (torch: the model is built on the meta device, no weights allocated). Returns
    (object, example_input, options for ``read_live``: ``construction=`` what the context
    recorded and ``rebuild=`` a function building the model normally, for the adapter to use
    when it needs real values). Without such an adapter, or when the file fails to run lazily,
    the model is built normally."""
    for adapter in registry.adapters().values():
        hook = getattr(adapter, "lazy_construction", None)
        context = hook(path) if hook is not None else None
        if context is None:
            continue
        try:
            with context as record:
                obj, example = load_python_object(path, name)
        except WeightmapError as exc:   # cannot run lazily: build it normally, and say why
            obj, example = load_python_object(path, name)
            return obj, example, {"construction_failed": exc.message}
        return obj, example, {"construction": record,
                              "rebuild": lambda: load_python_object(path, name)}
    obj, example = load_python_object(path, name)
    return obj, example, {}


def _is_factory(obj: Any) -> bool:
    """A class or a plain function to be called with no arguments, not a model instance."""
    return inspect.isclass(obj) or inspect.isfunction(obj)
