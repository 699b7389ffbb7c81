"""The pipeline, top to bottom: read → match → plan → check → execute/emit → manifest + report.

The public functions take their own arguments as keyword-only parameters; every other keyword
is a plan option of ``options.PlanOptions``, and a keyword that is neither is a UsageError
naming the valid ones (docs/api.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .io import atomic
from .planning import coverage
from .emit import dispatch as emit, manifest as manifest_mod, readback, report as report_mod
from . import equivalence, registry
from .planning.passes import prepare_graphs
from .described import described, weights_only
from .errors import CoverageError, UsageError
from .transform.execute import TensorStream, produce, tensor_nbytes
from .io.fingerprint import fingerprint
from .graph import MappedData, ParamGraph
from .match.order import paired, registration_variant
from .match import Matching, load_rules, match
from .match.assemble import check_expect
from .match.rules import Rules
from .options import PlanOptions, check_flags
from .planning.plan import Plan
from .planning.build import build_plan, refresh
from .reading.read import live_kinds, read
from .reading.modelfile import split_pyref
from .spelling import option

PathLike = str | os.PathLike


def plan(source: Any, target: Any, *, rules: PathLike | Rules | Mapping | None = None,
         source_model: Any = None, **options: Any) -> Plan:
    """Match ``source`` to ``target`` and return the checked plan; nothing is written.

    ``source``: a checkpoint path, ``model.py[:NAME]`` or a live model; ``target``: the same,
    or an ``.onnx`` file. ``rules``: a rules file (YAML/TOML), a ``Rules`` or a dict of the
    same keys (docs/rules.md). ``source_model``: the ``model.py[:NAME]`` (or live model) that
    builds a source given as weights only; its layers' facts and order describe the source
    (``source_graph``). ``**options``: plan options (``options.PlanOptions``, e.g.
    ``conv1d_layout="in,out"``); any other keyword is a UsageError.
    """
    opts = PlanOptions.of_call(plan, options)
    src, tgt = _graphs(source, target, source_model=source_model)
    return _plan(src, tgt, rules=rules, options=opts)


def port(source: Any, target: Any, out: PathLike | None = None, *,
         manifest: PathLike | None = None, rules: PathLike | Rules | Mapping | None = None,
         freeze: str = "none", lr_scale: Iterable[str] | Mapping[str, float] | None = None,
         plan: PathLike | Plan | None = None, dry_run: bool = False, force: bool = False,
         shard_size: str | int | None = None, progress: bool | None = None,
         new_values: str = "construct", fail_on_nonfinite: bool = False,
         direct_io: bool | None = None, read_back: str = "written", digest: str = "sha256",
         min_coverage: float | None = None,
         strict: bool = False, save_plan: PathLike | None = None,
         before_publish: Callable[[dict[Path, Path]], None] | None = None,
         verify: bool | str = False, source_model: Any = None,
         verify_tol: float | None = None, source_digest: bool = False,
         job: Mapping[str, Any] | None = None, **options: Any) -> report_mod.PortReport:
    """Port ``source``'s weights into ``target`` and write the target's weights to ``out``.

    Returns the report: ``print(report)`` shows the command line's summary;
    ``.transferred``, ``.new``, ``.unused``, ``.mismatched``, ``.manifest``, ``.to_dict()``.

    ``out``: the output file; its suffix picks the format (default: SOURCE_to_TARGET with the
    target's suffix, in the current folder). ``manifest``: its path (default beside ``out``).
    ``rules``: a rules file, ``Rules`` or dict (docs/rules.md). ``freeze``: ``none``,
    ``transferred``, ``until:LAYER`` or ``first:N``; ``lr_scale``: ``["transferred=0.1",
    "decay=0.8"]`` or a dict (docs/manifest.md). ``plan``: apply a saved (possibly edited) plan
    instead of matching. ``dry_run``: plan, check and report; write nothing. ``force``:
    replace an existing output. ``shard_size`` (``"2GB"``): shard a larger safetensors output
    with an index file. ``progress``: None shows it when stderr is a terminal, False never,
    True always. ``new_values``: the values of tensors that stay new in a ``model.py`` target
    built without weights — ``"construct"`` (a normal construction of the file, built only if
    some tensor stays new) or ``"reset"`` (each owning module reset alone, seeded).
    ``fail_on_nonfinite``: refuse NaN/Inf in the output (nothing is kept). ``direct_io``: a
    big safetensors output is written past the page cache (None: from 64 MB on, where the file
    system allows it; False: never; True: any size). ``read_back``: what the check of such an
    output digests — ``"written"`` (default: each window as the disk was given it, then the
    fsynced file's header re-parsed) or ``"device"`` (every byte also re-read from the disk, a
    second pass over it); recorded in the manifest (docs/performance.md, "The read-back").
    ``digest``: each written tensor's digest in the manifest — ``"sha256"`` (default) or
    ``"blake3"`` (2.4x faster on one core; needs the ``blake3`` package, ``weightmap[fast]``);
    recorded as the manifest's ``summary.digest``.
    ``min_coverage``: fail (CoverageError) when less than this share (0..1) of the target's
    elements is carried over; ``strict``: fail unless every target tensor is carried over or
    ignored by a rule and every source tensor used or ignored. A port that carries nothing
    over always fails. These checks run before anything is written.
    ``**options``: plan options (``options.PlanOptions``); any other keyword is a UsageError.

    ``save_plan``: write the plan as JSON too (published with the output, or alone on a dry
    run). ``before_publish(files)``: called with ``{final path: temporary path}`` once the
    output is written and read back, before anything is published; an error it raises leaves
    nothing and keeps an existing output (``weightmap.emit.dispatch.write``).
    ``source_digest``: record the source's SHA-256 in the manifest (its size and modification
    time are always recorded); ``job``: JSON data recorded as the manifest's ``job`` entry (a
    migration records each job's options there, docs/migrate.md).

    ``source_model``: the ``model.py[:NAME]`` (or live model) that builds a source given as
    weights only (a state dict, safetensors): the plan uses its layers' facts (epsilons,
    norm kinds, activations) and execution order (``source_graph``), and verification runs it
    with the source's tensors. ``verify``: run the source and the written target on one probe
    and compare their outputs and paired layers before the output is published
    (docs/verify.md): True refuses a port that does not pass (VerifyError, nothing kept),
    ``"warn"`` keeps it; the result is ``report.verify`` and the manifest's ``verify``.
    ``verify_tol``: the relative tolerance (default 1e-4). Verification runs before
    ``before_publish``.

    The written file is read back and checked against the plan before success is reported;
    each tensor's SHA-256 and non-finite count go into the manifest. Every written path is
    checked first against every file the port reads (``input_files``), with ``force`` too; the
    output appears whole with its manifest, or not at all (docs/security.md, "Outputs").
    """
    opts = PlanOptions.of_call(port, options)
    check_flags(port, dry_run=dry_run, force=force, progress=progress, direct_io=direct_io,
                fail_on_nonfinite=fail_on_nonfinite, strict=strict, source_digest=source_digest)
    min_coverage = coverage.check_min_coverage(min_coverage)
    if before_publish is not None and not callable(before_publish):
        raise UsageError(f"before_publish= is a {type(before_publish).__name__}",
                         hint="give a function taking {final path: temporary path}")
    check_mode = equivalence.port_mode(verify, dry_run, verify_tol=verify_tol)
    src, tgt = _graphs(source, target, new_values, source_model)
    if plan is None:
        the_plan = _plan(src, tgt, rules=rules, options=opts)
    else:
        dropped = ["rules"] * (rules is not None) + list(opts.as_dict())
        if dropped:
            raise UsageError(f"a saved plan is applied as it is: "
                             f"{', '.join(option(d) for d in dropped)} would not apply",
                             hint=f"drop them, or plan again with them ({option('dry_run', True)}"
                                  f" {option('save_plan', 'F')}) and edit that plan")
        the_plan = plan if isinstance(plan, Plan) else Plan.load(Path(plan))
        the_plan.check(src, tgt)
        the_plan = refresh(the_plan, src, tgt)      # unused sources of the plan as edited
    check = None
    if check_mode:
        def check(man: dict, out_path: Path) -> equivalence.PortCheck:
            return equivalence.PortCheck(check_mode, source, target, src, tgt, the_plan, man,
                                         out_path, source_model=source_model, tol=verify_tol,
                                         then=before_publish)
    return write_plan(the_plan, src, tgt, out, manifest=manifest, freeze=freeze,
                      lr_scale=lr_scale, dry_run=dry_run, force=force, shard_size=shard_size,
                      progress=progress, fail_on_nonfinite=fail_on_nonfinite,
                      direct_io=direct_io, read_back=read_back, digest=digest,
                      min_coverage=min_coverage,
                      strict=strict, save_plan=save_plan, before_publish=before_publish,
                      check=check,
                      source_digest=source_digest, job=job)


def write_plan(the_plan: Plan, src: ParamGraph, tgt: ParamGraph, out: PathLike | None = None,
               *, manifest: PathLike | None = None, freeze: str = "none",
               lr_scale: Iterable[str] | Mapping[str, float] | None = None,
               dry_run: bool = False, force: bool = False, shard_size: str | int | None = None,
               progress: bool | None = None, fail_on_nonfinite: bool = False,
               direct_io: bool | None = None, read_back: str = "written",
               digest: str = "sha256", min_coverage: float | None = None,
               strict: bool = False, save_plan: PathLike | None = None,
               before_publish: Callable[[dict[Path, Path]], None] | None = None,
               check: Callable[[dict, Path], Any] | None = None,
               source_digest: bool = False, job: Mapping[str, Any] | None = None
               ) -> report_mod.PortReport:
    """Check a plan's coverage and execute it into ``out`` in ``tgt``'s format (the emit stage
    of ``port``, shared with ``convert``): streamed, atomic, read back, with the manifest.
    ``check(manifest, out_path)``: the hook that verifies the staged output before it is
    published (``port``'s ``equivalence.PortCheck``, which calls ``before_publish`` itself);
    its ``.result`` becomes ``report.verify``."""
    readback.check_mode(read_back)
    readback.check_algorithm(digest)
    kind = emit.output_kind(tgt, Path(out) if out else None)
    out_path = Path(out) if out else emit.default_output(src, tgt, kind)
    writer_options = emit.writer_options(kind, {"shard_size": shard_size,
                                                "direct_io": direct_io})
    out_path = emit.output_path(kind, out_path, the_plan, writer_options)
    man_path = Path(manifest) if manifest else emit.manifest_path_for(out_path)
    man = manifest_mod.build(the_plan, freeze=freeze, lr_scale=lr_scale, output=str(out_path),
                             target=tgt, layers=manifest_mod.layer_listing(src, tgt))
    report = report_mod.make(the_plan, man, target=tgt)
    inputs = input_files(src, tgt)
    plan_path = Path(save_plan) if save_plan else None
    if dry_run and plan_path is not None:     # saved even when the coverage check fails
        atomic.write_texts({plan_path: the_plan.to_json()}, force=force, inputs=inputs)
    _check_coverage(report, min_coverage, strict)
    if dry_run:
        return report
    man["source"].update(fingerprint(src.source, digest=source_digest))
    if job is not None:
        man["job"] = dict(job)
    bar = _progress(the_plan, progress)
    proof = check(man, out_path) if check is not None else None
    try:
        emit.write(kind, out_path, the_plan, tgt,
                   TensorStream(the_plan, src, tgt, bar, census=manifest_mod.Census(man)),
                   force=force, inputs=inputs, manifest=man, manifest_path=man_path,
                   save_plan=plan_path, options=writer_options, read_back=read_back,
                   digest=digest,
                   fail_on_nonfinite=fail_on_nonfinite, before_publish=proof or before_publish)
    finally:
        if bar is not None:
            bar.close()
    return report_mod.make(the_plan, man, output=str(out_path), manifest_path=str(man_path),
                           target=tgt, verify=proof.result if proof else None)


def load_partial(model: Any, checkpoint: Any, *,
                 rules: PathLike | Rules | Mapping | None = None, freeze: str = "none",
                 lr_scale: Iterable[str] | Mapping[str, float] | None = None,
                 min_coverage: float | None = None, strict: bool = False,
                 **options: Any) -> report_mod.PortReport:
    """Load every weight of ``checkpoint`` that fits into the live torch or Keras ``model``,
    in place, and return the report (its manifest describes the model as loaded).

    All of the matching applies (wrapper prefixes, nested Lightning checkpoints, renamed
    layers, other frameworks); tensors without a counterpart keep their current values.
    ``rules``, ``freeze``, ``lr_scale``, ``min_coverage``, ``strict`` and ``**options`` as for
    ``port``; a failed check (nothing carried over, ``min_coverage``, ``strict``) leaves the
    model untouched.
    """
    opts = PlanOptions.of_call(load_partial, options)
    check_flags(load_partial, strict=strict)
    min_coverage = coverage.check_min_coverage(min_coverage)
    if isinstance(model, (str, os.PathLike, ParamGraph, Mapping)):
        raise _not_a_model(model)
    src = read(checkpoint)
    tgt = read(model, input_hint=input_hint(src))
    if tgt.live is None:
        raise _not_a_model(model)
    holding_tensors(tgt)
    the_plan = _plan(src, tgt, rules=rules, options=opts)
    man = manifest_mod.build(the_plan, freeze=freeze, lr_scale=lr_scale, target=tgt,
                             layers=manifest_mod.layer_listing(src, tgt))
    report = report_mod.make(the_plan, man, target=tgt)
    _check_coverage(report, min_coverage, strict)
    carried = ((t.target, arr) for t, arr in produce(the_plan, src, tgt, skip_new=True))
    emit.load_into(tgt, carried)
    return report


def _not_a_model(model: Any) -> UsageError:
    found = f"{type(model).__name__} {os.fspath(model)!r}" if isinstance(
        model, (str, os.PathLike)) else f"a {type(model).__name__}"
    return UsageError(f"load_partial loads into a live model: its first argument must be "
                      f"{' or '.join(live_kinds('load_into'))}, found {found}",
                      hint="build the model first, then load_partial(model, checkpoint); to "
                           "write a file instead, use port(checkpoint, target, out)")


def _rules(rules: Any) -> Rules | None:
    if rules is None or isinstance(rules, Rules):
        return rules
    if isinstance(rules, (str, os.PathLike)):
        return load_rules(Path(rules))
    if isinstance(rules, Mapping):
        return Rules.from_dict(rules, origin="rules=")
    raise UsageError(f"rules= is a {type(rules).__name__}",
                     hint="give a rules file path, a weightmap.match.Rules or a dict with "
                          "rename / ignore / pair / expect (docs/rules.md)")


def _graphs(source: Any, target: Any, new_values: str = "construct", source_model: Any = None
            ) -> tuple[ParamGraph, ParamGraph]:
    _check_new_values(new_values)
    src = source_graph(source, source_model)
    return src, target_graph(target, new_values, input_hint(src))


def source_graph(source: Any, source_model: Any = None) -> ParamGraph:
    """The source's graph; a source given as weights only (a state dict, safetensors) with
    ``source_model`` (``model.py[:NAME]`` or a live model) takes that model's layers, facts
    and order, read as a target file is (torch: on the meta device), keeping its own names
    and bytes (``described.py``). A source that describes itself is read as it is."""
    src = read(source)
    if source_model is None or not weights_only(src):
        return src
    model = target_graph(source_model, hint=input_hint(src))
    origin = os.fspath(source_model) if isinstance(source_model, (str, os.PathLike)) \
        else model.source
    return described(src, model, origin)


def _check_new_values(new_values: str) -> None:
    if new_values not in ("construct", "reset"):
        raise UsageError(f"new_values={new_values!r}; one of construct, reset")


def target_graph(target: Any, new_values: str = "construct", hint: Any = None) -> ParamGraph:
    """The target's graph, built without weights where it can be (a torch model.py on meta);
    ``hint``: what the source says about its input (``input_hint``), for tracing a model file
    that has no ``example_input``. A graph may serve several ports (a migration builds each
    target once per hint)."""
    _check_new_values(new_values)
    is_file = isinstance(target, (str, os.PathLike)) and split_pyref(os.fspath(target))[0]
    return holding_tensors(read(target, lazy=True, **({"new_values": new_values,
                                                       "input_hint": hint} if is_file else {})))


def holding_tensors(target: ParamGraph) -> ParamGraph:
    """``target``, refused (UsageError) when it holds no tensor at all: an output with nothing
    in it is never a port (a Keras subclassed model not built yet, an empty module)."""
    if any(True for _ in target.params()):
        return target
    raise UsageError("the target holds no tensors: there is nothing to port into",
                     path=target.source,
                     hint=registry.convention(target.framework).hint(
                         "no_tensors", "a model without parameters or buffers is not a target"))


def input_hint(source: ParamGraph) -> Any:
    """What the source says about its input (per-sample shape), for tracing a target that has
    no ``example_input`` (docs/matching.md)."""
    return source.meta.get("input_shape")


def _plan(src: ParamGraph, tgt: ParamGraph, *, rules: Any, options: PlanOptions) -> Plan:
    given = options.as_dict()
    src, tgt = prepare_graphs(src, tgt, given)    # facts readers cannot know alone (layouts)
    src, tgt, matching = _match(src, tgt, _rules(rules) or Rules())
    p = build_plan(src, tgt, matching, given)
    p.check(src, tgt)
    return p


def _match(src: ParamGraph, tgt: ParamGraph, rules: Rules
           ) -> tuple[ParamGraph, ParamGraph, Matching]:
    """The matching; against a state dict, a traced module in whichever of its two orders
    pairs more (``match/order.py``)."""
    variant = registration_variant(src, tgt)
    if variant is None:
        return src, tgt, match(src, tgt, rules)
    matching, other = match(src, tgt, rules, check=False), match(*variant, rules, check=False)
    if paired(other) > paired(matching):
        (src, tgt), matching = variant, other
    check_expect(matching, rules)
    return src, tgt, matching


def _check_coverage(report: report_mod.PortReport, min_coverage: float | None,
                    strict: bool) -> None:
    """coverage.check, with the report attached to the error (``error.report``): the command
    line still shows a dry run's plan and report, and a caller can see what was planned."""
    try:
        coverage.check(report.plan, min_coverage=min_coverage, strict=strict)
    except CoverageError as exc:
        exc.report = report
        raise


def input_files(*graphs: ParamGraph) -> list[Path]:
    """Every file the port reads: each graph's source file (a model ``.py``, a checkpoint, a
    shard index; for a folder its index), and every file tensor data is read from (all shards of
    a sharded checkpoint, an ONNX model's external data files)."""
    files: dict[str, Path] = {}
    for graph in graphs:
        source = Path(graph.source.split(":")[0] if split_pyref(graph.source)[0] is not None
                      else graph.source)
        named = [source]
        if graph.meta.get("described_by"):          # the --source-model file
            named.append(Path(split_pyref(str(graph.meta["described_by"]))[0] or ""))
        if source.is_dir() and graph.meta.get("index"):
            named.append(source / str(graph.meta["index"]))
        for p in graph.params():
            if isinstance(p.data, MappedData):
                named.append(Path(p.data.path))
        for path in named:
            if path.is_file():
                files.setdefault(os.path.realpath(path), path)
    return list(files.values())


def _progress(the_plan: Plan, show: bool | None):
    from .emit import progress as progress_mod
    if show is False:
        return None
    tensors, nbytes = len(the_plan.tensors), sum(tensor_nbytes(t) for t in the_plan.tensors)
    if show:
        return progress_mod.Progress(tensors, nbytes)
    return progress_mod.start(tensors, nbytes)
