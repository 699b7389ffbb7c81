"""The pipeline, top to bottom: read → match → plan → check → execute/emit → manifest + report."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Mapping

from . import emit, manifest as manifest_mod, report as report_mod
from .errors import UsageError
from .conversions import prepare_graphs
from .execute import TensorStream, produce, tensor_nbytes
from .graph import ParamGraph
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
         direct_io: bool | None = None, verify: bool | str = False, source_model: Any = None,
         verify_tol: float | None = None, **options: Any) -> report_mod.PortReport:
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
    NaN/Inf values, leaving no output).
    A target ``model.py`` is built without weights where it can (torch: the meta device); the
    tensors that stay new then take the values of a normal construction of the file
    (``new_values="construct"``, built only if some tensor stays new) or of their own module
    reset alone, seeded (``"reset"``: the model is never built in full).
    ``verify``: run the source and the written target on one probe and compare them before the
    output is put in place (docs/verify.md); True refuses a port that fails (VerifyError, no
    output), ``"warn"`` keeps it and reports. ``source_model`` builds a source given as weights
    only; ``verify_tol`` is the relative tolerance. The result is ``report.verify`` and the
    manifest's ``verify``.
    """
    check_mode = _verify_mode(verify, dry_run)
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
    proof = _Proof(check_mode, source, target, src, tgt, the_plan, man, source_model,
                   verify_tol, out_path.name) if check_mode else None
    try:
        emit.write(kind, out_path, the_plan, tgt, TensorStream(the_plan, src, tgt, bar),
                   force=force, inputs=inputs, manifest=man, manifest_path=man_path,
                   options=writer_options, fail_on_nonfinite=fail_on_nonfinite,
                   before_commit=proof)
    finally:
        if bar is not None:
            bar.close()
    return report_mod.make(the_plan, man, output=str(out_path), manifest_path=str(man_path),
                           verify=proof.result if proof else None)


_VERIFY_MODES = {False: None, True: "fail", "warn": "warn"}


def _verify_mode(verify: Any, dry_run: bool) -> str | None:
    """None (no verification), "fail" or "warn"."""
    if verify is None:
        return None
    if not isinstance(verify, (bool, str)) or verify not in _VERIFY_MODES:
        raise UsageError(f"verify={verify!r}; one of False, True, 'warn'")
    mode = _VERIFY_MODES[verify]
    if mode and dry_run:
        raise UsageError("verification runs the written model; a dry run writes none",
                         hint="drop --dry-run, or --verify")
    return mode


class _Proof:
    """The port's verification, run on the written file before it is put in place."""

    def __init__(self, mode, source, target, src, tgt, the_plan, man, source_model, tol,
                 out_name):
        self.mode, self.source, self.target, self.src, self.tgt = mode, source, target, src, tgt
        self.plan, self.manifest, self.source_model = the_plan, man, source_model
        self.tol, self.out_name = tol, out_name
        self.result = None

    def __call__(self, written: Path) -> None:
        from . import equivalence
        from .errors import VerifyError
        tol = equivalence.DEFAULT_TOL if self.tol is None else self.tol
        self.result = equivalence.check(
            self.source, self.target, written, self.src, self.tgt,
            equivalence.entries_from_plan(self.plan), source_model=self.source_model, tol=tol,
            weights_name=self.out_name)
        self.manifest["verify"] = self.result.to_dict()
        if not self.result.passed and self.mode == "fail":
            raise VerifyError(self.result.summary(), hint="nothing was written; rerun with "
                              "--verify=warn (Python: verify='warn') to keep the output and "
                              "see every layer")


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
