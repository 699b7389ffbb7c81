"""What the matcher hands to the planner: layer pairs with their evidence, and everything left over.

All frozen dataclasses; ``Matching.to_dict()`` is the JSON form (tuples become lists).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

STRATEGIES = ("rule", "name", "structure", "role")
KINDS = ("missing", "shape", "ambiguous", "ignored")
SIDES = ("source", "target")


@dataclass(frozen=True)
class ParamPair:
    """One target parameter fed by one or more source parameters.

    ``note`` says how several sources combine (see docs/matching.md, "Parameter notes"):
    "" (one source, moved by its axis labels), "sum", "stack", "row:0", "row:1", "zeros".
    """

    target: str
    sources: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class LayerMatch:
    """A target layer and the source layer that feeds it."""

    target: str
    source: str
    strategy: str                         # "rule" | "name" | "structure" | "role"
    score: float                          # 0..1 confidence
    evidence: tuple[str, ...]             # human-readable reasons
    params: tuple[ParamPair, ...]


@dataclass(frozen=True)
class Unmatched:
    """A layer (or some parameters of a matched layer) left without a counterpart, and why."""

    side: str                             # "source" | "target"
    layer: str
    params: tuple[str, ...]
    reason: str
    kind: str                             # "missing" | "shape" | "ambiguous" | "ignored"
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matching:
    """The matcher's answer: layer matches in target order, then every leftover."""

    layers: tuple[LayerMatch, ...]
    unmatched: tuple[Unmatched, ...]
    notes: tuple[str, ...] = ()           # graph-wide facts: prefixes stripped, DP fallbacks ...
    # what a user should check (the report's check: lines): names the data flow overrode,
    # names that won against the order both graphs know
    checks: tuple[str, ...] = ()

    def by_target(self) -> dict[str, LayerMatch]:
        return {m.target: m for m in self.layers}

    def param_sources(self) -> dict[str, ParamPair]:
        """Target parameter name → its ParamPair, over all matched layers."""
        return {pp.target: pp for m in self.layers for pp in m.params}

    def summary(self) -> dict[str, Any]:
        strategies = {s: sum(m.strategy == s for m in self.layers) for s in STRATEGIES}
        unmatched: dict[str, dict[str, int]] = {side: {} for side in SIDES}
        for u in self.unmatched:
            unmatched[u.side][u.kind] = unmatched[u.side].get(u.kind, 0) + 1
        return {"matched": len(self.layers), "strategies": strategies, "unmatched": unmatched}

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [_plain(m) for m in self.layers],
                "unmatched": [_plain(u) for u in self.unmatched],
                "notes": list(self.notes), "checks": list(self.checks),
                "summary": self.summary()}


def _plain(obj: Any) -> Any:
    """A dataclass (nested, with tuples) as dicts and lists."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj
