"""Write the target's weights in its own format, atomically, plus the manifest beside them."""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .atomic import background_fsync, check_distinct, check_output, staged
from .readback import ReadBack, check_written
from .errors import PlanError, UsageError
from .graph import ParamGraph
from .plans import Plan, TensorPlan
from .spelling import option

# output kind -> (file suffix, writer "module:function")
KINDS: dict[str, tuple[str, str]] = {
    "safetensors": (".safetensors", "weightmap_safetensors.emit:write_output"),
    "pt": (".pt", "weightmap_torch.emit:write_output"),
    "keras-weights": (".weights.h5", "weightmap_keras.emit:write_output"),
    "keras-h5": (".h5", "weightmap_keras.emit:write_output"),
    "onnx": (".onnx", "weightmap_onnx.emit:write_output"),
}
_SUFFIX_KIND = [(".weights.h5", "keras-weights"), (".safetensors", "safetensors"),
                (".safetensors.index.json", "safetensors"),
                (".pt", "pt"), (".pth", "pt"), (".bin", "pt"), (".ckpt", "pt"),
                (".h5", "keras-h5"), (".hdf5", "keras-h5"), (".onnx", "onnx")]
_FORMAT_KIND = {"torch-live": "safetensors", "arrays": "safetensors", "safetensors": "safetensors",
                "safetensors-sharded": "safetensors", "torch-zip": "pt", "torch-legacy": "pt",
                "keras3-weights-h5": "keras-weights", "keras-zip": "keras-weights",
                "keras2-h5": "keras-h5", "keras2-h5-weights": "keras-h5", "onnx": "onnx"}


def output_kind(target: ParamGraph, out: Path | None) -> str:
    if out is not None:
        return kind_of_name(out)
    if target.format == "keras-live":
        return "keras-h5" if target.meta.get("keras_version", "3").startswith("2") \
            else "keras-weights"
    try:
        return _FORMAT_KIND[target.format]
    except KeyError:
        raise UsageError(f"no default output format for a {target.format} target",
                         hint=f"name the output with {option('out')}") from None


def kind_of_name(out: Path) -> str:
    """The output kind an output's name asks for (its suffix)."""
    name = out.name.lower()
    for suffix, kind in _SUFFIX_KIND:
        if name.endswith(suffix):
            return kind
    raise UsageError(f"cannot tell the output format from the name {out.name!r}",
                     hint="end it in .safetensors, .pt, .weights.h5, .h5 or .onnx")


def stem_of(text: str) -> str:
    """A source's name without its format suffix (``vgg16.weights.h5`` -> ``vgg16``)."""
    name = Path(text.split(":")[0]).name
    for suffix, _ in _SUFFIX_KIND + [(".keras", ""), (".py", ""), (".index.json", "")]:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def default_output(source: ParamGraph, target: ParamGraph, kind: str) -> Path:
    return Path(f"{stem_of(source.source)}_to_{stem_of(target.source)}{KINDS[kind][0]}")


def manifest_path_for(out: Path) -> Path:
    name = out.name
    for suffix, _ in _SUFFIX_KIND:
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".manifest.json")
    return out.with_name(name + ".manifest.json")


def _writer(kind: str) -> Callable[..., None]:
    module, _, fn = KINDS[kind][1].partition(":")
    return getattr(importlib.import_module(module), fn)


def side_outputs(kind: str, out: Path, target: ParamGraph, plan: Plan | None = None,
                 options: Mapping[str, Any] | None = None) -> list[Path]:
    """Files the writer of ``kind`` puts beside ``out`` (an ONNX model's external data file,
    safetensors shards), from the writer module's optional ``side_outputs(out, target)`` (given
    ``plan=`` and the writer options too when it takes them)."""
    module = importlib.import_module(KINDS[kind][1].partition(":")[0])
    find = getattr(module, "side_outputs", None)
    if find is None:
        return []
    extra = {"plan": plan, **dict(options or {})} if _takes(find, "plan") else {}
    return [Path(p) for p in find(out, target, **extra)]


def writer_options(kind: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The output options that are set (e.g. ``shard_size``), checked against what the writer
    of ``kind`` takes: an option it does not know is a usage error, not silently dropped."""
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    writer = _writer(kind)
    for key in given:
        if not _takes(writer, key):
            raise UsageError(f"the {kind} output takes no option {option(key)}",
                             hint=f"{option(key)} is for safetensors output")
    return given


def output_path(kind: str, out: Path, plan: Plan, options: Mapping[str, Any] | None) -> Path:
    """The path the output is known by: ``out``, or what the writer module's optional
    ``output_path(out, plan, **options)`` makes of it (a sharded safetensors output is known by
    its index file)."""
    module = importlib.import_module(KINDS[kind][1].partition(":")[0])
    find = getattr(module, "output_path", None)
    return Path(find(out, plan, **dict(options or {}))) if find is not None and options else out


def _takes(fn: Callable[..., Any], keyword: str) -> bool:
    return keyword in inspect.signature(fn).parameters


def write(kind: str, out: Path, plan: Plan, target: ParamGraph,
          tensors: Callable[[], Iterator[tuple[TensorPlan, np.ndarray]]], *,
          force: bool = False, inputs: Iterable[Path] = (),
          manifest: dict[str, Any] | None = None, manifest_path: Path | None = None,
          save_plan: Path | None = None, options: Mapping[str, Any] | None = None,
          read_back_check: bool = True, read_back: str = "written", digest: str = "sha256",
          fail_on_nonfinite: bool = False,
          before_publish: Callable[[dict[Path, Path]], None] | None = None) -> list[Path]:
    """Write the output (its side files, the manifest and the plan) so that it appears whole
    or not at all (``weightmap.atomic``): every path is checked first (never an input, a
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
    may still add to ``manifest``); an error it raises refuses the port. A writer that takes
    ``final_path`` is told the output's final name (an ONNX model names its external data file
    after it); writers put their side files beside the path they are given. ``options``
    (``writer_options``) go to the writer as keywords."""
    options = writer_options(kind, options)
    inputs = list(inputs)
    sides = side_outputs(kind, out, target, plan, options)
    extras = [p for p in (manifest_path if manifest is not None else None, save_plan)
              if p is not None]
    written = [out, *sides, *extras]
    check_distinct(written)
    for path in written:
        check_output(path, force=force, inputs=inputs)
    writer = _writer(kind)
    extra = {"final_path": out} if _takes(writer, "final_path") else {}
    extra.update(options)
    taken = None
    if read_back_check and manifest is not None and _takes(writer, "read_back"):
        taken = extra["read_back"] = ReadBack(read_back, digest)
    with staged(out) as stage:
        tmp = stage.path(out)
        writer(tmp, kind=kind, plan=plan, target=target, tensors=tensors, **extra)
        files = stage.files()
        # the disk writes the files back while the CPU finishes the read-back check (what
        # the writer did not already read back as it wrote, and the re-parsed header)
        with background_fsync(files.values()):
            if read_back_check and manifest is not None:
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
    old index lists), from the writer module's optional ``previous_parts(out)``."""
    module = importlib.import_module(KINDS[kind][1].partition(":")[0])
    find = getattr(module, "previous_parts", None)
    return [] if find is None or not out.is_file() else [Path(p) for p in find(out)]


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
