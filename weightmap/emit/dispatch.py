"""Write the target's weights in its own format, atomically, plus the manifest beside them.

Which formats exist is the adapters' to say: each declares the ``OutputKind`` s it writes and
writes them (``write(request)``); this module picks the kind, checks its options, stages the
files, reads them back and publishes them (``weightmap.io.atomic``). Loading in place into a live
model goes to the adapter that takes the model (``load_into``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .. import registry
from ..io.atomic import background_fsync, check_distinct, check_output, staged
from .output import OutputKind, WriteRequest
from .readback import ReadBack, check_written
from ..errors import PlanError, UsageError
from ..graph import ParamGraph
from ..planning.plan import Plan, TensorPlan
from ..spelling import option


def kinds() -> dict[str, tuple[OutputKind, Any]]:
    """Every output kind the adapters declare, by name: (kind, the adapter that writes it)."""
    return registry.output_kinds()


def kind_named(name: str) -> OutputKind:
    return kinds()[name][0]


def state_dict_kinds() -> list[OutputKind]:
    """The kinds that hold a bare state dict (``convert`` writes them; the first is a
    convert's default)."""
    return [k for k, _ in kinds().values() if k.state_dict]


def _suffixes() -> list[tuple[str, str]]:
    """(suffix, kind) of every output kind, longest first: ``.weights.h5`` before ``.h5``."""
    pairs = [(sfx, k.name) for k, _ in kinds().values() for sfx in k.suffixes]
    return sorted(pairs, key=lambda p: -len(p[0]))


def output_kind(target: ParamGraph, out: Path | None) -> str:
    if out is not None:
        return kind_of_name(out)
    for adapter in registry.adapters().values():
        default = getattr(adapter, "default_output", None)
        found = default(target) if default is not None else None
        if found:
            return found
    raise UsageError(f"no default output format for a {target.format} target",
                     hint=f"name the output with {option('out')}")


def kind_of_name(out: Path) -> str:
    """The output kind an output's name asks for (its suffix)."""
    name = out.name.lower()
    for suffix, kind_name in _suffixes():
        if name.endswith(suffix):
            return kind_name
    own = [k.suffixes[0] for k, _ in kinds().values()]
    raise UsageError(f"cannot tell the output format from the name {out.name!r}",
                     hint=f"end it in {', '.join(own[:-1])} or {own[-1]}")


def stem_of(text: str) -> str:
    """A source's name without its format suffix (``vgg16.weights.h5`` -> ``vgg16``)."""
    name = Path(text.split(":")[0]).name
    read = [(sfx, "") for a in registry.adapters().values()
            for sfx in getattr(a, "name_suffixes", ())]
    for suffix, _ in sorted(_suffixes() + read + [(".py", ""), (".index.json", "")],
                            key=lambda p: -len(p[0])):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def default_output(source: ParamGraph, target: ParamGraph, kind_name: str) -> Path:
    return Path(f"{stem_of(source.source)}_to_{stem_of(target.source)}"
                f"{kind_named(kind_name).suffixes[0]}")


def manifest_path_for(out: Path) -> Path:
    name = out.name
    for suffix, _ in _suffixes():
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".manifest.json")
    return out.with_name(name + ".manifest.json")


def _writer(kind_name: str) -> Any:
    return kinds()[kind_name][1]


def side_outputs(kind_name: str, out: Path, target: ParamGraph, plan: Plan | None = None,
                 options: Mapping[str, Any] | None = None) -> list[Path]:
    """Files the writer of ``kind`` puts beside ``out`` (an ONNX model's external data file,
    safetensors shards), from its adapter's optional ``side_outputs(kind, out, target, plan,
    options)``."""
    find = getattr(_writer(kind_name), "side_outputs", None)
    if find is None:
        return []
    return [Path(p) for p in find(kind_name, out, target, plan, dict(options or {}))]


def writer_options(kind_name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The output options that are set (e.g. ``shard_size``), checked against what the kind
    takes (``OutputKind.options``): an option it does not know is a usage error, not silently
    dropped."""
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    takes = kind_named(kind_name).options
    for key in given:
        if key not in takes:
            others = [k.name for k, _ in kinds().values() if key in k.options]
            raise UsageError(f"the {kind_name} output takes no option {option(key)}",
                             hint=f"{option(key)} is for {' or '.join(others)} output" if others
                             else None)
    return given


def output_path(kind_name: str, out: Path, plan: Plan,
                options: Mapping[str, Any] | None) -> Path:
    """The path the output is known by: ``out``, or what its adapter's optional
    ``output_path(kind, out, plan, options)`` makes of it (a sharded safetensors output is
    known by its index file)."""
    find = getattr(_writer(kind_name), "output_path", None)
    return Path(find(kind_name, out, plan, dict(options))) if find is not None and options \
        else out


def load_into(target: ParamGraph, tensors: Iterable[tuple[str, np.ndarray]]) -> list[str]:
    """Copy tensors into the live model behind ``target`` in place, through the adapter that
    takes it (``load_into(graph, tensors)``); returns the names set."""
    for adapter in registry.adapters().values():
        accepts, load = getattr(adapter, "accepts", None), getattr(adapter, "load_into", None)
        if accepts is not None and load is not None and accepts(target.live):
            return load(target, tensors)
    raise UsageError(f"cannot load in place into a {target.format} target")


def write(kind: str, out: Path, plan: Plan, target: ParamGraph,
          tensors: Callable[[], Iterator[tuple[TensorPlan, np.ndarray]]], *,
          force: bool = False, inputs: Iterable[Path] = (),
          manifest: dict[str, Any] | None = None, manifest_path: Path | None = None,
          save_plan: Path | None = None, options: Mapping[str, Any] | None = None,
          read_back_check: bool = True, read_back: str = "written", digest: str = "sha256",
          fail_on_nonfinite: bool = False,
          before_publish: Callable[[dict[Path, Path]], None] | None = None) -> list[Path]:
    """Write the output (its side files, the manifest and the plan) so that it appears whole
    or not at all (``weightmap.io.atomic``): every path is checked first (never an input, a
    symlink, a device; an existing file only with ``force``), every file is written under its
    final name into a hidden staging folder beside its place, read back and checked against
    the plan (``read_back_check``; a sharded output through its index; ``read_back``, a
    ``readback.MODES``: what a writer past the page cache digests; ``digest``, a
    ``readback.ALGORITHMS``: each tensor's digest in the manifest), handed to
    ``before_publish`` if given, and only then published, side files first and the manifest
    last. On any failure nothing of the port remains and an output it was to replace is as it
    was. Returns the published paths.

    ``before_publish(files)`` gets ``{final path: staged path}`` of the output and its side
    files, verified and not yet published; the manifest is written after it returns (the hook
    may still add to ``manifest``); an error it raises refuses the port. The adapter's writer
    gets a ``WriteRequest`` (the staged path, the final one, ``options`` as checked by
    ``writer_options``) and puts its side files beside the path it is given."""
    options = writer_options(kind, options)
    inputs = list(inputs)
    sides = side_outputs(kind, out, target, plan, options)
    extras = [p for p in (manifest_path if manifest is not None else None, save_plan)
              if p is not None]
    written = [out, *sides, *extras]
    check_distinct(written)
    for path in written:
        check_output(path, force=force, inputs=inputs)
    check = read_back_check and manifest is not None
    taken = ReadBack(read_back, digest) if check and kind_named(kind).reads_back else None
    with staged(out) as stage:
        tmp = stage.path(out)
        _writer(kind).write(WriteRequest(kind, tmp, out, plan, target, tensors, options,
                                         taken))
        files = stage.files()
        # the disk writes the files back while the CPU finishes the read-back check (what
        # the writer did not already read back as it wrote, and the re-parsed header)
        with background_fsync(files.values()):
            if check:
                _record_check(manifest, check_written(tmp, plan, where=str(out),
                                                      read_back=taken, algorithm=digest),
                              fail_on_nonfinite, read_back, digest)
        for path in files:      # a side file the writer added (checked like the others)
            if path not in written:
                check_output(path, force=force, inputs=inputs)
        if before_publish is not None:
            before_publish(dict(sorted(files.items(), key=lambda kv: kv[0] != out)))
        if manifest_path is not None and manifest is not None:
            stage.path(manifest_path).write_text(json.dumps(manifest, indent=1) + "\n",
                                                 encoding="utf-8")
        if save_plan is not None:
            stage.path(save_plan).write_text(plan.to_json(), encoding="utf-8")
        return stage.publish([out, *extras], force=force, inputs=inputs,
                             obsolete=previous_parts(kind, out) if force else ())


def previous_parts(kind: str, out: Path) -> list[Path]:
    """Files of the output already at ``out`` that replacing it makes obsolete (the shards an
    old index lists), from its adapter's optional ``previous_parts(kind, out)``."""
    find = getattr(_writer(kind), "previous_parts", None)
    return [] if find is None or not out.is_file() else [Path(p) for p in find(kind, out)]


def _record_check(manifest: dict[str, Any], checked: dict[str, dict[str, Any]],
                  fail_on_nonfinite: bool, read_back: str, digest: str) -> None:
    """Put each tensor's digest and non-finite count into the manifest; refuse non-finite
    values when asked to (the output is then not kept)."""
    bad = {name: e["nonfinite"] for name, e in checked.items() if e.get("nonfinite")}
    if bad and fail_on_nonfinite:
        name, count = next(iter(bad.items()))
        raise PlanError(f"{count} non-finite value(s) (NaN/Inf) in the output, and "
                        f"{len(bad)} tensor(s) in all", tensor=name,
                        hint=f"the source holds them; drop {option('fail_on_nonfinite')} to "
                             "keep them")
    params = manifest.get("params", {})
    for name, entry in checked.items():
        params.setdefault(name, {}).update(entry)
    manifest.setdefault("summary", {}).update(nonfinite_tensors=len(bad), verified=True,
                                              read_back=read_back, digest=digest)
