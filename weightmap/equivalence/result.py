"""What a verification found, as data (``VerifyResult.to_dict()``, the manifest's ``verify``
object; schema in docs/manifest.md) and as text (``summary()``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

STATUSES = ("ok", "diverged", "skipped")


def _num(value: float | None) -> float | None:
    """JSON-friendly: None stays None, inf becomes None (JSON has no infinity), else float."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return "inf"
    if value == 0:
        return "0"
    return f"{value:.2g}" if value >= 0.01 else f"{value:.1e}"


@dataclass(frozen=True)
class OutputFigure:
    name: str
    shape: tuple[int, ...]
    max_abs: float | None
    rel: float | None
    status: str                         # ok | diverged | skipped
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "max_abs": _num(self.max_abs),
                "rel": _num(self.rel), "status": self.status, "note": self.note}


@dataclass(frozen=True)
class LayerFigure:
    source: str
    target: str
    depth: int                          # 0.. in target execution order
    max_abs: float | None
    rel: float | None
    status: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "depth": self.depth,
                "max_abs": _num(self.max_abs), "rel": _num(self.rel), "status": self.status,
                "note": self.note}

    def label(self) -> str:
        return f"{self.target} <- {self.source}"


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    tol: float
    probe: Mapping[str, Any] | None = None
    outputs: tuple[OutputFigure, ...] = ()
    layers: tuple[LayerFigure, ...] = ()
    first_divergence: Mapping[str, Any] | None = None
    compared_up_to: Mapping[str, str] | None = None
    synthetic: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    ran: Mapping[str, str] = field(default_factory=dict)    # side -> what ran
    # why nothing can be compared by design (an adaptation that changes the function)
    unverifiable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict(), "tol": self.tol,
                "probe": dict(self.probe) if self.probe is not None else None,
                "ran": dict(self.ran),
                "outputs": [o.to_dict() for o in self.outputs],
                "layers": [l.to_dict() for l in self.layers],
                "first_divergence": dict(self.first_divergence)
                if self.first_divergence else None,
                "compared_up_to": dict(self.compared_up_to) if self.compared_up_to else None,
                "synthetic": list(self.synthetic), "notes": list(self.notes),
                "unverifiable": self.unverifiable}

    def verdict(self) -> str:
        """passed | FAILED | INCOMPLETE (no pair diverged, but ported pairs lie past where
        the models compute the same thing, unchecked; or nothing can be compared by design)."""
        if self.passed:
            return "passed"
        if self.unverifiable:
            return "INCOMPLETE"
        up = self.compared_up_to or {}
        return "INCOMPLETE" if up.get("unchecked") and not self.first_divergence else "FAILED"

    def extent(self) -> str:
        """How much a comparison that stopped early compared, and why it stopped:
        ``on 1 of 5 paired layers (up to features.0 <- block1_conv1; ...)``."""
        up = self.compared_up_to or {}
        if not up:
            return ""
        reason = up.get("reason", "see the layers")
        what = "the rest compute another function by design" if up.get("unchecked") else \
            "the outputs differ by design"
        counted = f"on {up['compared']} of {up['paired']} paired layers " \
            if "paired" in up else ""          # a manifest written before these counts
        return f"{counted}(up to {up['target']} <- {up['source']}; {reason}, so {what})"

    def _stop(self) -> int:
        """The depth from which pairs were not compared (the layers' count when none)."""
        up = self.compared_up_to or {}
        return len(self.layers) - int(up.get("unchecked") or 0)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for l in self.layers:
            out[l.status] += 1
        return out

    def summary(self) -> str:
        """One paragraph: the verdict, what was compared, where it diverged, what was not."""
        parts = [f"verify {self.verdict()}"]
        if self.unverifiable:
            parts[0] += f": nothing can be compared: {self.unverifiable}"
        compared = [o for o in self.outputs if o.status != "skipped"]
        if compared:
            worst = max(compared, key=lambda o: (o.rel is None, o.rel or 0.0))
            agree = all(o.status == "ok" for o in compared)
            parts.append(f"outputs {'agree' if agree else 'differ'} to rel {_fmt(worst.rel)} "
                         f"(max abs {_fmt(worst.max_abs)}, tol {_fmt(self.tol)})")
            parts += [o.note for o in compared if o.note]
        elif self.compared_up_to:
            parts[0] += " " + self.extent()
            unchecked = [l for l in self.layers if l.depth >= self._stop()]
            if unchecked:
                shown = ", ".join(l.label() for l in unchecked[:3])
                many = len(unchecked) > 1
                parts.append(f"{len(unchecked)} paired layer{'s' if many else ''} past it "
                             f"{'are' if many else 'is'} not checked "
                             f"({shown}{' ...' if len(unchecked) > 3 else ''})")
        if self.first_divergence:
            d = self.first_divergence
            inputs = f"; inputs agree to {_fmt(d['inputs_rel'])}" \
                if d.get("inputs_rel") is not None else ""
            parts.append(f"first divergence: {d['target']} <- {d['source']} "
                         f"(rel {_fmt(d['rel'])}{inputs})")
            if d.get("decided"):
                parts.append(f"the plan decided there: {'; '.join(d['decided'])}")
        c = self.counts()
        if self.layers:
            parts.append(f"paired layers: {c['ok']} agree, {c['diverged']} diverge, "
                         f"{c['skipped']} skipped")
        if self.probe:
            parts.append(f"probe {tuple(self.probe['shape'])} {self.probe['dtype']} from "
                         f"{self.probe['origin']}")
        if self.synthetic:
            shown = ", ".join(self.synthetic[:3]) + (" ..." if len(self.synthetic) > 3 else "")
            parts.append(f"{len(self.synthetic)} synthetic tensor(s) ({shown})")
        parts += list(self.notes)
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()


def render(result: VerifyResult) -> str:
    """The summary, then each output and each paired layer on a line (``weightmap verify``)."""
    lines = [result.summary()]
    for side, what in result.ran.items():
        lines.append(f"  {side}: {what}")
    for o in result.outputs:
        lines.append(f"  output {o.name} {tuple(o.shape)}: {o.status}"
                     + (f", rel {_fmt(o.rel)}, max abs {_fmt(o.max_abs)}"
                        if o.rel is not None else "") + (f"  ({o.note})" if o.note else ""))
    width = max((len(l.label()) for l in result.layers), default=0)
    for l in result.layers:
        figures = f"rel {_fmt(l.rel):>8}  max abs {_fmt(l.max_abs):>8}" \
            if l.rel is not None else " " * 31
        lines.append(f"  {l.depth:>3} {l.label():<{width}}  {l.status:<8} {figures}"
                     + (f"  ({l.note})" if l.note else ""))
    return "\n".join(lines)
