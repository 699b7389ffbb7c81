"""What a port did, as data first (PortReport) and text second (``render``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .plans import Plan


@dataclass(frozen=True)
class PortReport:
    transferred: tuple[str, ...]      # carried over (copied, transformed or synthetic)
    new: tuple[str, ...]              # keep the target's own values
    unused: tuple[str, ...]           # source tensors no target tensor uses
    mismatched: tuple[str, ...]       # target tensors whose counterpart had another shape
    manifest: Mapping[str, Any] = field(hash=False)
    plan: Plan = field(compare=False, repr=False, hash=False)
    output: str | None = None
    manifest_path: str | None = None
    verify: Any = field(default=None, compare=False, hash=False)   # VerifyResult, or None

    @property
    def decisions(self) -> tuple[str, ...]:
        return self.plan.decisions

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "manifest": self.manifest_path,
                "summary": self.manifest["summary"], "decisions": list(self.decisions),
                "transferred": list(self.transferred), "new": list(self.new),
                "mismatched": list(self.mismatched), "unused": list(self.unused),
                "verify": self.verify.to_dict() if self.verify is not None else None}


def make(plan: Plan, manifest: Mapping[str, Any], output: str | None = None,
         manifest_path: str | None = None, verify: Any = None) -> PortReport:
    carried = tuple(t.target for t in plan.tensors if t.status != "new")
    new = tuple(t.target for t in plan.tensors if t.status == "new")
    mismatched = tuple(t.target for t in plan.tensors if t.status == "new" and any(
        n.startswith(("shape", "conversion failed")) for n in t.notes))
    return PortReport(transferred=carried, new=new,
                      unused=tuple(u["name"] for u in plan.unused), mismatched=mismatched,
                      manifest=manifest, plan=plan, output=output, manifest_path=manifest_path,
                      verify=verify)


def render(report: PortReport, *, verbose: bool = False) -> str:
    s = report.manifest["summary"]
    lines = []
    if report.output:
        lines.append(f"wrote {report.output}")
    if report.manifest_path:
        lines.append(f"manifest {report.manifest_path}")
    lines.append(f"target parameters: {s['params']}  carried over: {s['carried_over']} "
                 f"({100 * s['coverage']:.1f}% of tensors, {100 * s['element_coverage']:.1f}% "
                 f"of elements)  [transferred {s['transferred']}, transformed {s['transformed']}, "
                 f"synthetic {s['synthetic']}]  new: {s['new']}  frozen: {s['frozen']}")
    lines.append(f"source tensors unused: {s['unused_source']}")
    if s.get("verified"):
        lines.append(f"output re-read and checked: {s['params']} tensors (SHA-256 in the "
                     f"manifest)" + (f"; {s['nonfinite_tensors']} hold NaN/Inf values"
                                     if s.get("nonfinite_tensors") else ""))
    by_layer: dict[str, list] = {}
    for t in report.plan.tensors:
        by_layer.setdefault(t.layer, []).append(t)
    for layer, ts in by_layer.items():
        status = sorted({t.status for t in ts})
        src = ts[0].match.get("source_layer") if ts[0].match else None
        notes = sorted({n for t in ts for n in t.notes if not n.startswith("decision: ")})
        if not verbose and status == ["transferred"] and not notes:
            continue
        head = f"  {layer}: {'/'.join(status)}" + (f" <- {src}" if src else "")
        if ts[0].match:
            head += f" [{ts[0].match.get('strategy')}]"
        lines.append(head + (f"  ({'; '.join(notes)})" if notes else ""))
    if report.unused:
        shown = ", ".join(report.unused[:8]) + (" ..." if len(report.unused) > 8 else "")
        lines.append(f"unused: {shown}")
    for d in report.decisions:
        lines.append(f"check: {d}")
    if report.verify is not None:
        lines.append(report.verify.summary())
    return "\n".join(lines)
