"""weightmap's ONNX output: a copy of the target model with its initializers replaced.

The graph, node order, opsets and dtypes stay the target's. Each initializer keeps where it was
stored: inline in the model, or (when the target keeps it in external data) in one data file
beside the output named ``<output name>.data``; the model and its data file are staged, read back
and published together (``weightmap.io.atomic``).

Ties (see ``docs/formats/onnx.md``): a tensor the target shares between several uses (``Identity``
aliases of a deduplicated initializer, or one initializer read by several nodes) stays shared
when the port gives every use equal values. When a use gets a different value it gets its own
initializer: an alias becomes a real initializer of its own name (its ``Identity`` node is
removed); a second use ``<name>@<layer>`` gets an initializer of that name and its node reads it.

Tensors are streamed: one is in memory at a time, except that tied tensors are parked in an
anonymous spool file until all of their group has been seen and compared. The model proto itself
is held in memory, so an output whose proto would pass protobuf's 2 GiB limit is refused (use a
target saved with external data). Nothing from the model is executed.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from weightmap.dtypes import from_numpy, itemsize
from weightmap.errors import FormatError, PlanError, UsageError
from weightmap.graph import ParamGraph
from weightmap.io.paths import resolve_inside

from .adapter import load_model
from .datafile import (EXTERNAL, DataFile, Spool, digest, fsync, le_bytes, set_external,
                       set_inline)
from .targetmap import TargetMap, Use, map_target
from .tensors import dtype_name

PROTO_LIMIT = 2**31 - 1   # protobuf cannot serialise a message of 2 GiB or more


def data_path_for(out: Path) -> Path:
    """The external data file written beside ``out``."""
    return out.with_name(out.name + ".data")


def side_outputs(out: Path, target: ParamGraph) -> list[Path]:
    """Files written beside ``out`` (checked by the caller like ``out`` itself)."""
    return [data_path_for(Path(out))] if target.meta.get("external_data") else []


def write_output(path: Path, *, kind: str, plan: Any, target: ParamGraph,
                 tensors: Callable[[], Iterator[tuple[Any, np.ndarray]]],
                 final_path: Path | None = None) -> None:
    """Write the model to ``path`` and its external data file (named after ``final_path``, the
    model's published name) beside it: the caller stages both and publishes them together."""
    path = Path(path)
    final = Path(final_path) if final_path is not None else path
    model, folder = _target_model(target)
    tmap = map_target(model, target, where=target.source)
    if not _has_external(model):
        _Writer(model, tmap, target, spool_dir=path.parent).run(tensors)
        _save(model, path)
        return
    data_final = data_path_for(final)
    _refuse_overwriting_target_data(data_final, model, folder)
    with open(path.with_name(data_final.name), "wb") as fh:
        data = DataFile(fh)
        _Writer(model, tmap, target, spool_dir=path.parent, data=data,
                location=data_final.name).run(tensors)
        _copy_other_external(model, folder, data, data_final.name, where=target.source)
        fsync(fh)
    _save(model, path)


class _Writer:
    """Streams the port's tensors into the initializers, then settles tied groups."""

    def __init__(self, model: Any, tmap: TargetMap, target: ParamGraph, *, spool_dir: Path,
                 data: DataFile | None = None, location: str | None = None) -> None:
        self.graph = model.graph
        self.tmap = tmap
        self.params = {p.name: p for p in target.params()}
        self.inits = {t.name: t for t in self.graph.initializer}
        self.was_external = {n: t.data_location == EXTERNAL for n, t in self.inits.items()}
        self.data, self.location = data, location
        self.spool_dir = spool_dir
        self.spool: Spool | None = None
        self.parked: dict[str, tuple[tuple[int, int], bytes]] = {}   # param -> (where, digest)
        self.seen: set[str] = set()
        self.drop_nodes: set[int] = set()
        self.names: set[str] | None = None
        self.read_before = {n for node in self.graph.node for n in node.input}

    def run(self, tensors: Callable[[], Iterator[tuple[Any, np.ndarray]]]) -> None:
        if self.tmap.groups:
            self.spool = Spool(self.spool_dir)
        try:
            for tplan, arr in tensors():
                self._take(tplan.target, arr)
                del arr   # let the producer's array go before the next one is made
            missing = [n for n in self.tmap.uses if n not in self.seen]
            if missing:
                raise PlanError(f"no value was given for {len(missing)} target tensor(s), e.g. "
                                f"{', '.join(missing[:3])}", hint="the plan must cover every "
                                "target tensor")
            for root, params in self.tmap.groups.items():
                self._settle(root, params)
            self._drop_dead_aliases()
            for index in sorted(self.drop_nodes, reverse=True):
                del self.graph.node[index]
        finally:
            if self.spool is not None:
                self.spool.close()

    def _take(self, name: str, arr: np.ndarray) -> None:
        use = self.tmap.uses.get(name)
        if use is None:
            raise PlanError("the plan gives a tensor the target model does not have", tensor=name)
        if name in self.seen:
            raise PlanError("the plan gives this tensor twice", tensor=name)
        self.seen.add(name)
        want = self.params[name]
        if tuple(arr.shape) != tuple(want.shape):
            raise PlanError(f"the value has shape {tuple(arr.shape)}, the target model's "
                            f"initializer {want.shape}", tensor=name)
        if from_numpy(arr.dtype) != want.dtype:
            raise PlanError(f"the value is {from_numpy(arr.dtype)}, the target model's "
                            f"initializer {want.dtype}", tensor=name,
                            hint="an ONNX output keeps the target's dtypes; add a cast step")
        raw = le_bytes(arr)
        if use.root in self.tmap.groups:
            self.parked[name] = (self.spool.put(raw), digest(raw))
        else:
            self._store(self.inits[use.root], raw, like=use.root)

    def _store(self, tensor: Any, raw: Any, *, like: str) -> None:
        """Bytes into ``tensor``, stored where the target stored initializer ``like``."""
        if self.was_external[like] and self.data is not None:
            offset, length = self.data.append(raw)
            set_external(tensor, self.location, offset, length)
        else:
            set_inline(tensor, raw)

    def _settle(self, root: str, params: list[str]) -> None:
        """One shared initializer: keep it shared where the values agree, split where not."""
        uses = {p: self.tmap.uses[p] for p in params}
        own = {u.value: p for p, u in uses.items() if p == u.value}   # value name -> its param
        resolved = {root: own.get(root) or self._primary(params)}
        self._store(self.inits[root], self._bytes(resolved[root]), like=root)
        for alias in (a for a in self.tmap.aliases if a.root == root):
            base = resolved.get(alias.source)
            if base is None:
                raise FormatError("an Identity alias comes before its source", path=None,
                                  tensor=alias.name)
            mine = own.get(alias.name)
            if mine is not None and self._digest(mine) != self._digest(base):
                self._new_initializer(alias.name, root, mine)
                self.drop_nodes.add(alias.node)
                resolved[alias.name] = mine
            else:
                resolved[alias.name] = base
        for param, use in uses.items():
            if param != use.value and self._digest(param) != self._digest(resolved[use.value]):
                self._split_use(use, root)

    def _drop_dead_aliases(self) -> None:
        """An alias whose readers all got initializers of their own (split uses, replaced
        Identity links of a chain) is read by nothing now: its node goes too. Aliases that were
        already unread in the target stay, as the target had them."""
        readers: dict[str, set[int]] = {}
        for index, node in enumerate(self.graph.node):
            for name in node.input:
                readers.setdefault(name, set()).add(index)
        kept = {o.name for o in self.graph.output}
        for graph in _graphs(self.graph):   # subgraphs may read outer names
            if graph is not self.graph:
                kept.update(n for node in graph.node for n in node.input)
        for alias in reversed(self.tmap.aliases):   # a chain's later links first
            mine = readers.get(alias.name, set())
            if alias.name in self.read_before and mine <= self.drop_nodes \
                    and alias.name not in kept:
                self.drop_nodes.add(alias.node)

    def _primary(self, params: list[str]) -> str:
        return next((p for p in params if not self.params[p].tied_to), params[0])

    def _split_use(self, use: Use, root: str) -> None:
        name = self._fresh_name(use.param)
        self._new_initializer(name, root, use.param)
        self.graph.node[use.node].input[use.pos] = name

    def _new_initializer(self, name: str, like: str, param: str) -> None:
        model_init = self.inits[like]
        tensor = self.graph.initializer.add()
        tensor.name = name
        tensor.data_type = model_init.data_type
        tensor.dims.extend(model_init.dims)
        self._store(tensor, self._bytes(param), like=like)
        # IR < 4 models list every initializer among the graph inputs too; keep that style
        for value in list(self.graph.input):
            if value.name == like:
                extra = self.graph.input.add()
                extra.CopyFrom(value)
                extra.name = name
                break

    def _fresh_name(self, wanted: str) -> str:
        if self.names is None:
            self.names = _all_names(self.graph)
        name, k = wanted, 2
        while name in self.names:
            name, k = f"{wanted}#{k}", k + 1
        self.names.add(name)
        return name

    def _bytes(self, param: str) -> bytes:
        return self.spool.get(self.parked[param][0])

    def _digest(self, param: str) -> bytes:
        return self.parked[param][1]


def _target_model(target: ParamGraph) -> tuple[Any, Path | None]:
    """A fresh ModelProto of the target (never the caller's own object) and its folder."""
    if target.format != "onnx":
        raise UsageError(f"an ONNX output needs an ONNX target model, not {target.format}",
                         hint="name the output after the target's format")
    live = target.live
    if live is not None and type(live).__name__ == "ModelProto":
        copy = type(live)()
        copy.CopyFrom(live)
        return copy, None
    path = Path(target.source)
    if not path.is_file():
        raise UsageError("the target ONNX model file is no longer there", path=path)
    return load_model(path), Path(os.path.abspath(path)).parent


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph nested in its nodes' attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            subs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subs:
                yield from _graphs(sub)


def _other_tensors(model: Any) -> Iterator[Any]:
    """Tensors that are not top-level initializers: subgraph initializers, attribute tensors of
    the graph, its subgraphs and the model-local functions (whose bodies are nodes too, and may
    hold subgraphs)."""
    bodies = list(_graphs(model.graph))
    for function in model.functions:
        bodies.append(function)
        for node in function.node:
            for attr in node.attribute:
                for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                    bodies.extend(_graphs(sub))
    for graph in bodies:
        if graph is not model.graph and hasattr(graph, "initializer"):
            yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _has_external(model: Any) -> bool:
    return any(t.data_location == EXTERNAL for t in model.graph.initializer) or \
        any(t.data_location == EXTERNAL for t in _other_tensors(model))


def _all_names(graph: Any) -> set[str]:
    names: set[str] = set()
    for g in _graphs(graph):
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in [*g.input, *g.output, *g.value_info])
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
    return names


def _external_files(model: Any, folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    locations = {e.value for t in [*model.graph.initializer, *_other_tensors(model)]
                 if t.data_location == EXTERNAL for e in t.external_data if e.key == "location"}
    return [folder / loc for loc in sorted(locations)]


def _refuse_overwriting_target_data(data_final: Path, model: Any, folder: Path | None) -> None:
    for source in _external_files(model, folder):
        try:
            same = data_final.exists() and source.exists() and os.path.samefile(data_final, source)
        except OSError:
            same = False
        if same:
            raise UsageError("the output's external data file would overwrite the target's own "
                             "external data", path=data_final, hint="choose another --out")


def _copy_other_external(model: Any, folder: Path | None, data: DataFile, location: str, *,
                         where: object) -> None:
    """Tensors the port does not touch (Constant values, subgraph initializers) that the target
    keeps externally are copied into the output's data file: the target's file is not ours."""
    for tensor in _other_tensors(model):
        if tensor.data_location != EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        if folder is None:
            raise UsageError("the target keeps non-initializer tensors in external data and no "
                             "folder to read them from is known", tensor=tensor.name,
                             hint="port into the target's .onnx file instead of a live model")
        file = resolve_inside(folder, info.get("location"), what="external data file",
                              referrer=Path(str(where)))
        need = math.prod(tensor.dims) * itemsize(dtype_name(tensor.data_type, name=tensor.name,
                                                            path=Path(str(where))))
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", need))
        except ValueError:
            raise FormatError("external tensor with a non-integer offset/length", path=where,
                              tensor=tensor.name) from None
        if offset < 0 or length != need:
            raise FormatError(f"external tensor at offset {offset} with {length} bytes, its "
                              f"shape and dtype need {need}", path=where, tensor=tensor.name)
        with open(file, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(length)
        if len(raw) != length:
            raise FormatError(f"external bytes {offset}..{offset + length} are not all in "
                              f"{file.name}", path=where, tensor=tensor.name)
        set_external(tensor, location, *data.append(raw))


def _save(model: Any, path: Path) -> None:
    size = model.ByteSize()
    if size > PROTO_LIMIT:
        raise UsageError(f"the output ONNX model would be {size} bytes; one protobuf file holds "
                         f"less than 2 GiB", path=path,
                         hint="save the target with external data (onnx.save_model(model, path, "
                         "save_as_external_data=True)) and port into that")
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
