"""What a port did, as data first (PortReport) and text second (``render``).

The text puts the summary first — counts (parameters and buffers apart), coverage, the
verification's verdict (``port --verify``), then what to look at (decisions, tensors left new
and why, unused source tensors) — then the notes, each note once with the layers it concerns
("53 BatchNorm layers (...): eps ..."; a decision said of several layers in the same words is
one ``check:`` line too). One line per layer only with ``verbose`` (``-v``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import printable
from ..graph import ParamGraph
from ..planning.plan import Plan, Reason

SHOWN = 8          # names shown in one line before "... and N more"
GROUPS = 12        # groups of new tensors / notes shown before "-v lists every layer"
# op kinds as the report names them (others as they are)
OP_NAMES = {"batchnorm": "BatchNorm", "layernorm": "LayerNorm", "groupnorm": "GroupNorm",
            "instancenorm": "InstanceNorm", "rmsnorm": "RMSNorm", "prelu": "PReLU",
            "lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


@dataclass(frozen=True, repr=False)
class PortReport:
    """``print(report)`` shows what the command line prints; ``summary(verbose=True)`` adds a
    line per layer; ``to_dict()`` is the ``--json`` form; the manifest is ``.manifest``."""

    transferred: tuple[str, ...]      # carried over (copied, transformed, synthetic, adapted)
    new: tuple[str, ...]              # keep the target's own values
    unused: tuple[str, ...]           # source tensors no target tensor uses
    mismatched: tuple[str, ...]       # target tensors whose counterpart had another shape
    manifest: Mapping[str, Any] = field(hash=False)
    plan: Plan = field(compare=False, hash=False)
    output: str | None = None
    manifest_path: str | None = None
    # target layer -> op kind, to name groups of layers ("53 BatchNorm layers")
    layer_ops: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    verify: Any = field(default=None, compare=False, hash=False)   # a VerifyResult, or None

    @property
    def decisions(self) -> tuple[str, ...]:
        return self.plan.decisions

    def summary(self, verbose: bool = False) -> str:
        """The report as the command line prints it (``verbose``: as ``-v`` does)."""
        return render(self, verbose=verbose)

    def __str__(self) -> str:
        return render(self)

    def __repr__(self) -> str:
        s = self.manifest["summary"]
        return (f"<PortReport carried over {s['carried_over']} of {s['params']} tensors, new "
                f"{s['new']}, unused {s['unused_source']}"
                + (f", output {self.output!r}" if self.output else "") + ">")

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "manifest": self.manifest_path,
                "summary": self.manifest["summary"], "decisions": list(self.decisions),
                "suggestions": [dict(s) for s in self.plan.suggestions],
                "transferred": list(self.transferred), "new": list(self.new),
                "mismatched": list(self.mismatched), "unused": list(self.unused),
                "verify": self.verify.to_dict() if self.verify is not None else None}


def make(plan: Plan, manifest: Mapping[str, Any], output: str | None = None,
         manifest_path: str | None = None, target: ParamGraph | None = None,
         verify: Any = None) -> PortReport:
    carried = tuple(t.target for t in plan.tensors if t.status != "new")
    new = tuple(t.target for t in plan.tensors if t.status == "new")
    mismatched = tuple(t.target for t in plan.tensors if t.status == "new" and t.reason in (
        Reason.SHAPE_MISMATCH, Reason.CONVERSION_FAILED))
    ops = {l.name: l.op for l in target.layers} if target is not None else {}
    return PortReport(transferred=carried, new=new,
                      unused=tuple(u["name"] for u in plan.unused), mismatched=mismatched,
                      manifest=manifest, plan=plan, output=output, manifest_path=manifest_path,
                      layer_ops=ops, verify=verify)


def render(report: PortReport, *, verbose: bool = False) -> str:
    lines = _written(report)
    lines += _counts(report.manifest["summary"])
    if report.verify is not None:                 # the verdict, beside the counts
        lines.append(report.verify.summary())
    lines += [f"check: {d}" for d in _decisions(report, verbose)]
    lines += _left_new(report, verbose)
    if report.unused:
        lines.append(f"unused: {len(report.unused)} source tensor(s): "
                     + _names([f"{u['name']} {tuple(u['shape'])}" if "shape" in u else u["name"]
                               for u in report.plan.unused], verbose))
    if verbose:
        lines += _per_layer(report)
    else:
        notes = _grouped(report, (t for t in report.plan.tensors if t.status != "new"))
        if notes:
            lines.append("notes (-v: one line per layer):")
            lines += [f"  {n}" for n in _capped(notes, verbose)]
    return "\n".join(printable(line) for line in lines)     # names come from the files


def render_convert(report: PortReport) -> str:
    """The report of ``weightmap convert``: tensors written and left out, renames, casts."""
    s = report.manifest["summary"]
    renamed = sum(1 for t in report.plan.tensors if t.reason is Reason.RENAMED)
    lines = _written(report)
    lines.append(f"tensors written: {s['params']}  left out: {s['unused_source']}  "
                 f"renamed: {renamed}")
    cast = s.get("cast")
    if cast:
        to = report.plan.options.get("convert", {}).get("cast")
        lines.append(f"cast to {to}: {cast['tensors']} tensors (round to nearest even); "
                     f"overflowed to inf: {cast['overflow']} values, became subnormal: "
                     f"{cast['subnormal']}, became zero: {cast['zero']}")
    lines += _checked(s)
    if report.unused:
        lines.append(f"left out: {_names(list(report.unused), False)}")
    lines += [f"check: {d}" for d in report.decisions]
    return "\n".join(lines)


def _written(report: PortReport) -> list[str]:
    lines = []
    if report.output:
        lines.append(f"wrote {report.output}")
    if report.manifest_path:
        lines.append(f"manifest {report.manifest_path}")
    return lines


def _checked(s: Mapping[str, Any]) -> list[str]:
    if not s.get("verified"):
        return []
    from .readback import ALGORITHM_NAMES
    digest = ALGORITHM_NAMES[s.get("digest", "sha256")]    # older manifests: SHA-256
    return [f"output re-read and checked: {s['params']} tensors ({digest} in the manifest)"
            + (f"; {s['nonfinite_tensors']} hold NaN/Inf values"
               if s.get("nonfinite_tensors") else "")]


def _counts(s: Mapping[str, Any]) -> list[str]:
    kinds = ""
    if "parameters" in s:
        kinds = f" (parameters {s['parameters']}, buffers {s['buffers']})"
    how = [f"{s['transferred']} as stored", f"{s['transformed']} transformed"]
    how += [f"{s[k]} {k}" for k in ("synthetic", "partial", "adapted") if s.get(k)]
    lines = [f"target: {s['params']} tensors{kinds}; frozen {s['frozen']}",
             f"carried over: {s['carried_over']} of {s['params']} tensors "
             f"({100 * s['coverage']:.1f}%), {100 * s['element_coverage']:.1f}% of elements: "
             f"{', '.join(how)}; new {s['new']}",
             f"source tensors unused: {s['unused_source']}"]
    return lines + _checked(s)


def _decisions(report: PortReport, verbose: bool) -> list[str]:
    """The decisions, those that say the same of several layers ("LAYER: text") as one."""
    layers = {t.layer for t in report.plan.tensors}
    by_text: dict[str, list[str]] = {}
    for d in report.decisions:
        layer, sep, text = d.partition(": ")
        if sep and layer in layers:
            by_text.setdefault(text, []).append(layer)
        else:
            by_text.setdefault(d, [])
    return [f"{_layers(report, names, verbose) if len(names) > 1 else names[0]}: {text}"
            if names else text for text, names in by_text.items()]


def _left_new(report: PortReport, verbose: bool) -> list[str]:
    """Tensors left new, grouped by why: a rule, another shape, no counterpart ..."""
    new = [t for t in report.plan.tensors if t.status == "new"]
    groups = _grouped(report, (t for t in new if not t.not_weight), new=True)
    kept = _grouped(report, (t for t in new if t.not_weight), new=True)
    return [f"new: {g}" for g in _capped(groups, verbose)] + [f"kept: {g}" for g in kept]


def _grouped(report: PortReport, tensors: Iterable[Any], new: bool = False) -> list[str]:
    """Each distinct note once, with the layers it concerns, in plan order. A new tensor
    counts under its first note (why it is new); a group holding only part of a layer's
    tensors names tensors instead of layers."""
    by_note: dict[str, list[Any]] = {}
    for t in tensors:
        notes = t.remarks
        for note in (notes[:1] or ["no reason recorded"]) if new else notes:
            by_note.setdefault(note, []).append(t)
    size = Counter(t.layer for t in report.plan.tensors)
    lines = []
    for note, ts in by_note.items():
        mine = Counter(t.layer for t in ts)
        whole = not new or all(n == size[l] for l, n in mine.items())
        who = _layers(report, list(mine)) if whole else _tensors([t.target for t in ts])
        lines.append(f"{who}: {note}")
    return lines


def _layers(report: PortReport, names: list[str], verbose: bool = False) -> str:
    ops = {report.layer_ops.get(n, "") for n in names}
    kind = OP_NAMES.get(next(iter(ops)), next(iter(ops))) if len(ops) == 1 and "" not in ops \
        else ""
    if len(names) == 1:
        return names[0] + (f" ({kind})" if kind and kind != names[0] else "")
    return (f"{len(names)} {kind + ' ' if kind else ''}layers "
            f"({_names(names, verbose, shown=3)})")


def _tensors(names: list[str]) -> str:
    return names[0] if len(names) == 1 else \
        f"{len(names)} tensors ({_names(names, False, shown=3)})"


def _names(names: list[str], verbose: bool, shown: int = SHOWN) -> str:
    if verbose or len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f" ... and {len(names) - shown} more"


def _capped(lines: list[str], verbose: bool) -> list[str]:
    if verbose or len(lines) <= GROUPS:
        return lines
    return lines[:GROUPS] + [f"... and {len(lines) - GROUPS} more (-v lists every layer)"]


def _per_layer(report: PortReport) -> list[str]:
    by_layer: dict[str, list] = {}
    for t in report.plan.tensors:
        by_layer.setdefault(t.layer, []).append(t)
    lines = []
    for layer, ts in by_layer.items():
        status = sorted({t.status for t in ts})
        src = ts[0].match.get("source_layer") if ts[0].match else None
        notes = sorted({n for t in ts for n in t.remarks})
        head = f"  {layer}: {'/'.join(status)}" + (f" <- {src}" if src else "")
        if ts[0].match:
            head += f" [{ts[0].match.get('strategy')}]"
        lines.append(head + (f"  ({'; '.join(notes)})" if notes else ""))
    return lines

