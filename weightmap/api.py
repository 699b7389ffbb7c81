"""The pipeline, top to bottom: read → match → plan → check → execute/emit → manifest + report."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Mapping

from . import emit, manifest as manifest_mod, report as report_mod
from .errors import UsageError
from .conversions import prepare_graphs
from .conversions.adapt import option as adapt_option
from .execute import TensorStream, produce, tensor_nbytes
from .graph import ParamGraph
from .conversions.order import paired, registration_variant
from .match import Matching, Rules, load_rules, match
from .match.assemble import check_expect
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
    src = read(source)
    return src, read(target, lazy=True, **({"new_values": new_values,
                                            "input_hint": input_hint(src)} if is_file else {}))


def input_hint(source: ParamGraph) -> Any:
    """What the source says about its input (per-sample shape), for tracing a target that has
    no ``example_input`` (docs/matching.md)."""
    return source.meta.get("input_shape")


def plan(source: Any, target: Any, *, rules: Any = None, adapt: Any = (),
         **options: Any) -> Plan:
    """Match ``source`` to ``target`` and return the checked plan (nothing is written).
    ``adapt``: adaptations to make (``"pos_embed"``, ``"in_chans"``; conversions/adapt.py)."""
    options = {**options, **adapt_option(adapt)}
    src, tgt = _graphs(source, target)
    return _plan(src, tgt, rules=rules, options=options)


def _plan(src: ParamGraph, tgt: ParamGraph, *, rules: Any, options: Mapping[str, Any]) -> Plan:
    src, tgt = prepare_graphs(src, tgt, options)    # facts readers cannot know alone (layouts)
    src, tgt, matching = _match(src, tgt, _rules(rules) or Rules())
    p = build_plan(src, tgt, matching, options)
    p.check(src, tgt)
    return p


def _match(src: ParamGraph, tgt: ParamGraph, rules: Rules
           ) -> tuple[ParamGraph, ParamGraph, Matching]:
    """The matching; against a state dict, a traced module in whichever of its two orders
    pairs more (``conversions/order.py``)."""
    variant = registration_variant(src, tgt)
    if variant is None:
        return src, tgt, match(src, tgt, rules)
    matching, other = match(src, tgt, rules, check=False), match(*variant, rules, check=False)
    if paired(other) > paired(matching):
        (src, tgt), matching = variant, other
    check_expect(matching, rules)
    return src, tgt, matching


def port(source: Any, target: Any, out: str | Path | None = None, *,
         manifest: str | Path | None = None, rules: Any = None, freeze: str = "none",
         lr_scale: Any = None, plan: str | Path | Plan | None = None, dry_run: bool = False,
         force: bool = False, shard_size: Any = None, progress: bool | None = None,
         new_values: str = "construct", fail_on_nonfinite: bool = False,
         direct_io: bool | None = None, adapt: Any = (), **options: Any
         ) -> report_mod.PortReport:
    """Port ``source`` weights into ``target`` and write the target's weights to ``out``.

    Returns the report (``.transferred``, ``.new``, ``.unused``, ``.mismatched``, ``.manifest``).
    With ``dry_run`` nothing is written. ``plan`` applies a saved (possibly edited) plan.
    ``shard_size`` (e.g. ``"2GB"``) shards a larger safetensors output with an index file.
    ``direct_io``: a big safetensors output is written past the page cache and read back from
    the disk (None: from 64 MB on, where the file system allows it; False: never; True: any
    size). See docs/performance.md.
    ``progress``: None shows it when stderr is a terminal, False never, True always.
    ``adapt``: target tensors of another size made to fit, as timm does (``"pos_embed"``:
    position embeddings resampled to the target's grid; ``"in_chans"``: the stem kernel for
    another number of input channels); status ``adapted`` in the manifest.
    The written file is read back and checked against the plan before success is reported; each
    tensor's SHA-256 and non-finite count go into the manifest (``fail_on_nonfinite`` refuses
    NaN/Inf values, leaving no output).
    A target ``model.py`` is built without weights where it can (torch: the meta device); the
    tensors that stay new then take the values of a normal construction of the file
    (``new_values="construct"``, built only if some tensor stays new) or of their own module
    reset alone, seeded (``"reset"``: the model is never built in full).
    """
    options = {**options, **adapt_option(adapt)}
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
    if dry_run:
        return report_mod.make(the_plan, man)
    inputs = [Path(p) for p in (src.source, tgt.source) if Path(p.split(":")[0]).exists()]
    bar = _progress(the_plan, progress)
    try:
        emit.write(kind, out_path, the_plan, tgt, TensorStream(the_plan, src, tgt, bar),
                   force=force, inputs=inputs, manifest=man, manifest_path=man_path,
                   options=writer_options, fail_on_nonfinite=fail_on_nonfinite)
    finally:
        if bar is not None:
            bar.close()
    return report_mod.make(the_plan, man, output=str(out_path), manifest_path=str(man_path))


def load_partial(model: Any, checkpoint: Any, *, rules: Any = None, freeze: str = "none",
                 lr_scale: Any = None, **options: Any) -> report_mod.PortReport:
    """Load every weight of ``checkpoint`` that fits into the live ``model``, in place.

    All of the matching applies (wrapper prefixes, nested Lightning checkpoints, renamed layers,
    other frameworks). Parameters without a counterpart keep their current values.
    """
    src = read(checkpoint)
    tgt = read(model, input_hint=input_hint(src))
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
