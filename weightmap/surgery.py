"""Checkpoint surgery (``weightmap convert``): one checkpoint rewritten, same architecture.

Renames (wrapper prefixes stripped, a rules file's ``rename``), tensors kept or dropped by
pattern, floating tensors cast to another dtype. There is no target model: the target is the
source graph itself as it will be written (an identity target), and the plan says per tensor
where it comes from and which steps it takes. From there on it is ``port``'s path (plan →
execute → emit): streamed, atomic, read back, with a manifest.

The reader already leaves out what is not weights: a Lightning ``.ckpt``'s optimizer states
and learning-rate schedulers (only its ``state_dict`` is read), and non-tensor entries (epoch,
hyper-parameters). The plan's decisions say what was left out.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .emit import dispatch as emit
from .api import write_plan
from .dtypes import FLOAT_DTYPES
from . import registry
from .errors import UsageError
from .graph import Param, ParamGraph
from .match import load_rules
from .match.normalise import common_prefixes
from .match.rules import Rules
from .options import check_flags, check_keywords
from .planning.build import describe_graph
from .planning.plan import Plan, Reason, TensorPlan
from .emit.report import PortReport
from .reading.read import read
from .reading.statedict import Entry, group
from .spelling import option
from .transform import Step

# what --cast accepts -> the dtype written
CASTS = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
         "bf16": "bfloat16", "bfloat16": "bfloat16"}


def convert(source: Any, out: str | Path, *, rules: Any = None,
            strip_prefix: bool | str | Sequence[str | bool] | None = None,
            keep: str | Iterable[str] = (), drop: str | Iterable[str] = (),
            cast: str | None = None,
            container: str | None = None, manifest: str | Path | None = None,
            force: bool = False, shard_size: Any = None, progress: bool | None = None,
            fail_on_nonfinite: bool = False, direct_io: bool | None = None,
            read_back: str = "written", digest: str = "sha256", dry_run: bool = False, source_digest: bool = False, job: Any = None,
            read_options: Mapping[str, Any] | None = None, **options: Any) -> PortReport:
    """Rewrite the checkpoint ``source`` into ``out`` (``.safetensors`` or ``.pt``).

    ``strip_prefix``: True strips the wrapper prefixes every name carries (``module.``,
    ``_orig_mod.``, ``model.``); a prefix (or a list; True among them for the wrapper ones)
    is stripped from every name that starts with it. ``rules``: a rules file (or ``Rules``)
    whose ``rename`` entries rename tensors and whose ``ignore.source`` patterns drop them.
    ``keep`` / ``drop``: glob patterns (``fnmatch``), tried on the stored name and on the name
    written; with ``keep`` only matching tensors are written, then ``drop`` removes matches.
    ``cast``: ``fp32``, ``fp16`` or ``bf16``: every floating tensor is written in that dtype,
    rounded to nearest even, and the manifest counts values that overflowed to ±inf or became
    subnormal or zero. ``container``: the key of the checkpoint holding the weights (default:
    what the reader picks, e.g. a Lightning checkpoint's ``state_dict``). ``read_options``: the
    reader's caps (``max_header_bytes=`` ...). The rest as ``port``.
    """
    check_keywords(convert, options)      # convert takes no plan options
    check_flags(convert, force=force, progress=progress, fail_on_nonfinite=fail_on_nonfinite,
                direct_io=direct_io, dry_run=dry_run, source_digest=source_digest)
    out = Path(out)
    kind = emit.kind_of_name(out)
    if emit.kind_named(kind).state_dict is None:
        names = [k.suffixes[0] for k in emit.state_dict_kinds()]
        raise UsageError(f"convert writes {' or '.join(names)} files, not {out.name!r}",
                         hint=f"a {kind} file needs a model to hold the weights: use "
                              f"weightmap port SRC --to MODEL")
    src = read(source, **dict(read_options or {}), **({"container": container} if container
                                                       else {}))
    the_rules = _rules(rules)
    dtype = _cast_dtype(cast)
    the_plan, tgt = plan_convert(src, out, kind, rules=the_rules,
                                 prefixes=_prefix_items(strip_prefix), keep=_globs(keep),
                                 drop=_globs(drop), dtype=dtype)
    return write_plan(the_plan, src, tgt, out, manifest=manifest, dry_run=dry_run,
                      force=force, shard_size=shard_size, progress=progress,
                      fail_on_nonfinite=fail_on_nonfinite, direct_io=direct_io,
                      read_back=read_back, digest=digest, source_digest=source_digest,
                      job=job)


def plan_convert(src: ParamGraph, out: Path, kind: str, *, rules: Rules | None = None,
                 prefixes: tuple[str | bool, ...] = (), keep: tuple[str, ...] = (),
                 drop: tuple[str, ...] = (), dtype: str | None = None
                 ) -> tuple[Plan, ParamGraph]:
    """The checked plan of a conversion and its identity target graph."""
    params = list(src.params())
    strip = _prefixes_to_strip(prefixes, [p.name for p in params], src)
    names = {p.name: _renamed(p.name, strip, rules) for p in params}
    kept, unused = [], []
    for p in params:
        why = _left_out(p.name, names[p.name], rules, keep, drop)
        if why:
            unused.append({"name": p.name, "reason": why})
        else:
            kept.append(p)
    if not kept:
        raise UsageError("no tensor is left to write", path=src.source,
                         hint=f"check the {option('keep')}/{option('drop')} patterns against "
                              "the names weightmap inspect lists")
    _refuse_collisions(kept, names, src.source)
    tgt = _identity_target(kept, names, dtype, src, kind)
    layer_of = {q.name: layer.name for layer in tgt.layers for q in layer.params}
    tensors = tuple(_tensor_plan(p, tgt.param(names[p.name]), layer_of) for p in kept)
    options = {"convert": {"strip_prefix": list(strip), "keep": list(keep), "drop": list(drop),
                           "cast": dtype, "rules": getattr(rules, "origin", None)}}
    the_plan = Plan(source=describe_graph(src), target={**describe_graph(tgt), "path": str(out)},
                    tensors=tensors, unused=tuple(unused),
                    decisions=tuple(_left_out_by_reader(src)), options=options)
    the_plan.check(src, tgt)
    return the_plan, tgt


def _rules(rules: Any) -> Rules | None:
    if rules is None or isinstance(rules, Rules):
        found = rules
    else:
        found = load_rules(Path(rules))
    if found is not None and (found.pair or found.ignores("target") or
                              found.expect.matched is not None or
                              found.expect.min_matched is not None):
        raise UsageError("convert uses a rules file's rename and ignore.source only; this one "
                         "also has pair, ignore.target or expect", path=found.origin,
                         hint="those steer matching to a target model (weightmap port)")
    return found


def _globs(patterns: str | Iterable[str]) -> tuple[str, ...]:
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def _cast_dtype(cast: str | None) -> str | None:
    if cast is None:
        return None
    try:
        return CASTS[str(cast).lower()]
    except KeyError:
        raise UsageError(f"unknown cast {cast!r}", hint="use fp32, fp16 or bf16") from None


def _prefix_items(strip_prefix: Any) -> tuple[str | bool, ...]:
    if strip_prefix is None or strip_prefix is False:
        return ()
    items = [strip_prefix] if isinstance(strip_prefix, (bool, str)) else list(strip_prefix)
    for item in items:
        if item is not True and not (isinstance(item, str) and item):
            raise UsageError(f"strip_prefix {item!r}: expected True (the wrapper prefixes) or "
                             f"a non-empty prefix such as 'module.'")
    return tuple(items)


def _prefixes_to_strip(items: tuple[str | bool, ...], names: list[str],
                       src: ParamGraph) -> tuple[str, ...]:
    """True becomes the wrapper prefixes every name carries (none: nothing to strip)."""
    out: list[str] = []
    for item in items:
        if item is True:
            out += common_prefixes(names, src.meta.get("prefixes", ()))
        else:
            out.append(item)
    return tuple(dict.fromkeys(out))


def _renamed(name: str, strip: tuple[str, ...], rules: Rules | None) -> str:
    for prefix in strip:
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix):]
    return rules.renamed(name) if rules is not None else name


def _left_out(stored: str, written: str, rules: Rules | None, keep: tuple[str, ...],
              drop: tuple[str, ...]) -> str | None:
    """Why a tensor is not written, or None."""
    def hit(pattern: str) -> bool:
        return fnmatch.fnmatchcase(stored, pattern) or fnmatch.fnmatchcase(written, pattern)
    for rule in (rules.ignores("source") if rules is not None else ()):
        if rule.matches(stored) or rule.matches(written):
            return f"ignored by rule {rule.key} {rule.pattern!r}"
    if keep and not any(hit(k) for k in keep):
        return f"not kept (--keep {' '.join(repr(k) for k in keep)})"
    dropped = next((d for d in drop if hit(d)), None)
    return None if dropped is None else f"dropped by --drop {dropped!r}"


def _refuse_collisions(kept: list[Param], names: dict[str, str], where: str) -> None:
    seen: dict[str, str] = {}
    for p in kept:
        new = names[p.name]
        if new in seen:
            raise UsageError(f"{seen[new]!r} and {p.name!r} would both be written as {new!r}",
                             path=where, hint="change the renames or drop one of them")
        seen[new] = p.name


def _identity_target(kept: list[Param], names: dict[str, str], dtype: str | None,
                     src: ParamGraph, kind: str) -> ParamGraph:
    """The graph of what will be written: the kept tensors, renamed and cast; two names of one
    tensor stay tied when both are kept (a ``.pt`` output then stores it once)."""
    kept_names = {p.name for p in kept}
    entries = [Entry(names[p.name], p.shape, _written_dtype(p, dtype), None,
                     tied_to=names[p.tied_to] if p.tied_to in kept_names else None)
               for p in kept]
    # its source is the checkpoint it is made from (the output is no input of the write)
    return ParamGraph(format=emit.kind_named(kind).state_dict, framework=src.framework,
                      source=src.source, layers=tuple(group(entries, registry.convention(src.framework))),
                      order=src.order)


def _written_dtype(p: Param, dtype: str | None) -> str:
    return dtype if dtype is not None and p.dtype in FLOAT_DTYPES else p.dtype


def _tensor_plan(p: Param, written: Param, layer_of: dict[str, str]) -> TensorPlan:
    """A copy of ``p`` (cast if asked). A name tied to another kept one reads that one's
    tensor (the same bytes), so that a ``.pt`` output stores it once, as torch.save does."""
    steps, notes, reason = (), [], None
    if written.dtype != p.dtype:
        steps = (Step("cast", {"dtype": written.dtype}),)
        notes.append(f"cast {p.dtype} -> {written.dtype} (round to nearest even)")
    if written.name != p.name:
        notes.append(f"renamed from {p.name}")
        reason = Reason.RENAMED
    source = p.tied_to if written.tied_to else p.name
    if written.tied_to:
        notes.append(f"tied to {written.tied_to}")
    return TensorPlan(target=written.name, layer=layer_of[written.name], shape=p.shape,
                      dtype=written.dtype, status="transferred", sources=(source,),
                      steps=steps, notes=tuple(notes), reason=reason)


def _left_out_by_reader(src: ParamGraph) -> list[str]:
    """What the reader did not take from the checkpoint (optimizer states, non-tensors)."""
    out = []
    others = src.meta.get("other_containers") or ()
    if others:
        out.append(f"left out the checkpoint's other containers: {', '.join(others)} (only "
                   f"{src.meta.get('container') or 'the root'!r} is weights; choose another "
                   f"with {option('container', 'KEY')})")
    skipped = list(src.meta.get("other_keys") or ()) + list(src.meta.get("skipped_non_tensors")
                                                           or ())
    if skipped:
        shown = ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        out.append(f"left out {len(skipped)} non-tensor entries: {shown}")
    return out
