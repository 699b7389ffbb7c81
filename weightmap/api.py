"""The pipeline, top to bottom: read → match → plan → check → execute/emit → manifest + report."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Mapping

from . import atomic, emit, manifest as manifest_mod, report as report_mod
from .errors import UsageError
from .conversions import prepare_graphs
from .execute import TensorStream, produce, tensor_nbytes
from .graph import MappedData, ParamGraph
from .match import load_rules, match
from .plans import Plan
from .planner import build_plan
from .sources import read, split_pyref


def _rules(rules: Any):
    if rules is None or not isinstance(rules, (str, Path)):
        return rules
    return load_rules(Path(rules))


def _graphs(source: Any, target: Any, new_values: str = "construct"
            ) -> tuple[ParamGraph, ParamGraph]:
    """The target is built without weights where it can be (a torch model.py on meta)."""
    if new_values not in ("construct", "reset"):
        raise UsageError(f"new_values={new_values!r}; one of construct, reset")
    is_file = isinstance(target, (str, os.PathLike)) and split_pyref(os.fspath(target))[0]
    return read(source), read(target, lazy=True,
                              **({"new_values": new_values} if is_file else {}))


def plan(source: Any, target: Any, *, rules: Any = None, **options: Any) -> Plan:
    """Match ``source`` to ``target`` and return the checked plan (nothing is written)."""
    src, tgt = _graphs(source, target)
    return _plan(src, tgt, rules=rules, options=options)


def _plan(src: ParamGraph, tgt: ParamGraph, *, rules: Any, options: Mapping[str, Any]) -> Plan:
    src, tgt = prepare_graphs(src, tgt, options)    # facts readers cannot know alone (layouts)
    p = build_plan(src, tgt, match(src, tgt, _rules(rules)), options)
    p.check(src, tgt)
    return p


def port(source: Any, target: Any, out: str | Path | None = None, *,
         manifest: str | Path | None = None, rules: Any = None, freeze: str = "none",
         lr_scale: Any = None, plan: str | Path | Plan | None = None, dry_run: bool = False,
         force: bool = False, shard_size: Any = None, progress: bool | None = None,
         new_values: str = "construct", fail_on_nonfinite: bool = False,
         direct_io: bool | None = None, save_plan: str | Path | None = None,
         before_publish: Any = None, **options: Any) -> report_mod.PortReport:
    """Port ``source`` weights into ``target`` and write the target's weights to ``out``.

    Returns the report (``.transferred``, ``.new``, ``.unused``, ``.mismatched``, ``.manifest``).
    With ``dry_run`` nothing is written. ``plan`` applies a saved (possibly edited) plan.
    ``shard_size`` (e.g. ``"2GB"``) shards a larger safetensors output with an index file.
    ``direct_io``: a big safetensors output is written past the page cache and read back from
    the disk (None: from 64 MB on, where the file system allows it; False: never; True: any
    size). See docs/performance.md.
    ``progress``: None shows it when stderr is a terminal, False never, True always.
    The written file is read back and checked against the plan before success is reported; each
    tensor's SHA-256 and non-finite count go into the manifest (``fail_on_nonfinite`` refuses
    NaN/Inf values, leaving no output). ``save_plan`` writes the plan as JSON too (with the
    output, or alone on a dry run). ``before_publish(files)`` is called with ``{final path:
    temporary path}`` once the output is written and read back, before anything is published;
    an error it raises leaves nothing (``weightmap.emit.write``). Every written path is checked
    against every file the port reads (``input_files``), with ``force`` too.
    A target ``model.py`` is built without weights where it can (torch: the meta device); the
    tensors that stay new then take the values of a normal construction of the file
    (``new_values="construct"``, built only if some tensor stays new) or of their own module
    reset alone, seeded (``"reset"``: the model is never built in full).
    """
    src, tgt = _graphs(source, target, new_values)
    if plan is None:
        the_plan = _plan(src, tgt, rules=rules, options=options)
    else:
        the_plan = plan if isinstance(plan, Plan) else Plan.load(Path(plan))
        the_plan.check(src, tgt)
    kind = emit.output_kind(tgt, Path(out) if out else None)
    out_path = Path(out) if out else emit.default_output(src, tgt, kind)
    writer_options = emit.writer_options(kind, {"shard_size": shard_size,
                                                "direct_io": direct_io})
    out_path = emit.output_path(kind, out_path, the_plan, writer_options)
    man_path = Path(manifest) if manifest else emit.manifest_path_for(out_path)
    man = manifest_mod.build(the_plan, freeze=freeze, lr_scale=lr_scale, output=str(out_path))
    inputs = input_files(src, tgt)
    plan_path = Path(save_plan) if save_plan else None
    if dry_run:
        if plan_path is not None:
            atomic.write_texts({plan_path: the_plan.to_json()}, force=force, inputs=inputs)
        return report_mod.make(the_plan, man)
    bar = _progress(the_plan, progress)
    try:
        emit.write(kind, out_path, the_plan, tgt, TensorStream(the_plan, src, tgt, bar),
                   force=force, inputs=inputs, manifest=man, manifest_path=man_path,
                   save_plan=plan_path, options=writer_options,
                   fail_on_nonfinite=fail_on_nonfinite, before_publish=before_publish)
    finally:
        if bar is not None:
            bar.close()
    return report_mod.make(the_plan, man, output=str(out_path), manifest_path=str(man_path))


def input_files(*graphs: ParamGraph) -> list[Path]:
    """Every file the port reads: each graph's source file (a model ``.py``, a checkpoint, a
    shard index; for a folder its index), and every file tensor data is read from (all shards of
    a sharded checkpoint, an ONNX model's external data files)."""
    files: dict[str, Path] = {}
    for graph in graphs:
        source = Path(graph.source.split(":")[0] if split_pyref(graph.source)[0] is not None
                      else graph.source)
        named = [source]
        if source.is_dir() and graph.meta.get("index"):
            named.append(source / str(graph.meta["index"]))
        for p in graph.params():
            if isinstance(p.data, MappedData):
                named.append(Path(p.data.path))
        for path in named:
            if path.is_file():
                files.setdefault(os.path.realpath(path), path)
    return list(files.values())


def load_partial(model: Any, checkpoint: Any, *, rules: Any = None, freeze: str = "none",
                 lr_scale: Any = None, **options: Any) -> report_mod.PortReport:
    """Load every weight of ``checkpoint`` that fits into the live ``model``, in place.

    All of the matching applies (wrapper prefixes, nested Lightning checkpoints, renamed layers,
    other frameworks). Parameters without a counterpart keep their current values.
    """
    src, tgt = read(checkpoint), read(model)
    if tgt.live is None:
        raise UsageError("load_partial needs a live torch or Keras model as its first argument")
    the_plan = _plan(src, tgt, rules=rules, options=options)
    man = manifest_mod.build(the_plan, freeze=freeze, lr_scale=lr_scale)
    carried = ((t.target, arr) for t, arr in produce(the_plan, src, tgt, skip_new=True))
    _loader(tgt)(tgt, carried)
    return report_mod.make(the_plan, man)


def _progress(the_plan: Plan, show: bool | None):
    from . import progress as progress_mod
    if show is False:
        return None
    tensors, nbytes = len(the_plan.tensors), sum(tensor_nbytes(t) for t in the_plan.tensors)
    if show:
        return progress_mod.Progress(tensors, nbytes)
    return progress_mod.start(tensors, nbytes)


def _loader(target: ParamGraph):
    module = {"torch": "weightmap_torch.writer", "keras": "weightmap_keras.emit"}.get(
        target.framework)
    if module is None:
        raise UsageError(f"cannot load in place into a {target.format} target")
    return importlib.import_module(module).load_into
