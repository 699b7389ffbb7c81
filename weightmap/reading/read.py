"""The read stage: whatever the user names (a file, a folder, ``model.py:NAME``, a live object)
becomes a graph, through the adapter that reads it."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..io.atomic import abandoned
from ..dtypes import from_numpy
from ..errors import FormatError, UnknownFormatError, UsageError, WeightmapError
from ..graph import ArrayData, ParamGraph
from .modelfile import load_python_lazily, load_python_object, split_pyref
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
    readable = [a.describes for a in registry.adapters().values() if getattr(a, "describes", "")]
    raise UnknownFormatError(
        f"not a checkpoint format weightmap reads ({kind})",
        path=path, hint=f"expected {', '.join(readable)}, or a model .py file")


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
                     hint=f"pass a checkpoint path, {', '.join(live_kinds())} or a dict of "
                          f"arrays")


def live_kinds(can: str = "read_live") -> list[str]:
    """What the adapters take live (their ``live`` words), those that ``can`` do something."""
    return [a.live for a in registry.adapters().values()
            if getattr(a, "live", "") and callable(getattr(a, can, None))]


def graph_from_arrays(arrays: dict[str, np.ndarray], *, origin: str,
                      framework: str | None = None) -> ParamGraph:
    """A graph for a plain dict of numpy arrays, named as ``framework``'s convention names
    tensors (default: as state dicts are, ``registry.state_dict_convention``)."""
    conv = registry.convention(framework) if framework else registry.state_dict_convention()
    entries = [Entry(k, tuple(v.shape), from_numpy(v.dtype), ArrayData(v))
               for k, v in arrays.items()]
    return ParamGraph(format="arrays", framework=conv.name, source=origin,
                      layers=tuple(group(entries, conv)), order="stored")
