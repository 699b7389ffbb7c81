"""The freeze manifest: for every target parameter, where it came from, how it was transformed,
whether to freeze it and its learning-rate scale.

Policies follow the three usual recipes:

* ``none`` — train everything (default);
* ``transferred`` — feature extraction: everything carried over is frozen, new parts train;
* ``until:NAME`` / ``first:N`` — fine-tuning: carried-over layers up to and including target layer
  NAME (or the first N carried-over layers) are frozen.

Learning-rate scales (``lr_scale``) per group: ``transferred=0.1`` (every carried-over parameter),
``new=1`` and ``decay=0.8`` (layer-wise: the last carried-over layer keeps its scale, each layer
before it is multiplied by 0.8 once more).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import UsageError
from .plans import Plan

MANIFEST_VERSION = 1
CARRIED = ("transferred", "transformed", "synthetic", "partial")


@dataclass(frozen=True)
class FreezePolicy:
    kind: str                 # none | transferred | until | first
    until: str | None = None
    first: int | None = None

    def __str__(self) -> str:
        return {"until": f"until:{self.until}", "first": f"first:{self.first}"}.get(self.kind,
                                                                                    self.kind)


def parse_freeze(text: str | FreezePolicy | None) -> FreezePolicy:
    if isinstance(text, FreezePolicy):
        return text
    text = (text or "none").strip()
    if text in ("none", "transferred"):
        return FreezePolicy(text)
    kind, _, arg = text.partition(":")
    if kind == "until" and arg:
        return FreezePolicy("until", until=arg)
    if kind == "first" and arg.isdecimal():
        return FreezePolicy("first", first=int(arg))
    raise UsageError(f"unknown freeze policy {text!r}",
                     hint="use none, transferred, until:LAYER or first:N")


def parse_lr_scales(items: Iterable[str] | Mapping[str, float] | None) -> dict[str, float]:
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else (
        (i.partition("=")[0], i.partition("=")[2]) for i in items)
    out: dict[str, float] = {}
    for key, value in pairs:
        key = key.strip()
        if key not in ("transferred", "new", "decay"):
            raise UsageError(f"unknown learning-rate group {key!r}",
                             hint="use transferred=F, new=F or decay=F")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"learning-rate scale for {key!r} is not a number: {value!r}") from None
        if out[key] < 0:
            raise UsageError(f"learning-rate scale for {key!r} is negative: {value}")
    return out


def _frozen_layers(plan: Plan, policy: FreezePolicy) -> set[str]:
    carried_layers = list(dict.fromkeys(t.layer for t in plan.tensors if t.status in CARRIED))
    if policy.kind == "none":
        return set()
    if policy.kind == "transferred":
        return set(carried_layers)
    if policy.kind == "first":
        return set(carried_layers[:policy.first])
    all_layers = list(dict.fromkeys(t.layer for t in plan.tensors))
    names = [l for l in all_layers if l == policy.until or l.startswith(policy.until + ".")]
    if not names:
        raise UsageError(f"freeze until:{policy.until}: the target has no layer of that name",
                         hint=f"target layers include {', '.join(all_layers[:6])} ...")
    stop = max(all_layers.index(n) for n in names)
    return {l for l in carried_layers if all_layers.index(l) <= stop}


def build(plan: Plan, *, freeze: str | FreezePolicy | None = "none",
          lr_scale: Iterable[str] | Mapping[str, float] | None = None,
          output: str | None = None, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    policy = parse_freeze(freeze)
    scales = parse_lr_scales(lr_scale)
    frozen_layers = _frozen_layers(plan, policy)
    carried_layers = list(dict.fromkeys(t.layer for t in plan.tensors if t.status in CARRIED))
    depth = {l: len(carried_layers) - 1 - i for i, l in enumerate(carried_layers)}
    params: dict[str, Any] = {}
    for t in plan.tensors:
        carried = t.status in CARRIED
        scale = scales.get("transferred", 1.0) if carried else scales.get("new", 1.0)
        if carried and "decay" in scales:
            scale *= scales["decay"] ** depth[t.layer]
        entry = {"layer": t.layer, "status": t.status, "source": list(t.sources),
                 "transforms": [s.to_dict() for s in t.steps],
                 "frozen": carried and t.layer in frozen_layers,
                 "lr_scale": round(scale, 10)}
        if t.notes:
            entry["notes"] = list(t.notes)
        params[t.target] = entry
    counts = plan.counts()
    total = len(plan.tensors)
    carried_n = sum(counts[s] for s in CARRIED)
    elements = sum(math.prod(t.shape) for t in plan.tensors)
    carried_elements = sum(math.prod(t.shape) for t in plan.tensors if t.status in CARRIED)
    return {
        "weightmap_manifest": MANIFEST_VERSION,
        "source": dict(plan.source), "target": dict(plan.target), "output": output,
        "policy": {"freeze": str(policy), "lr_scale": scales,
                   "options": dict(options or plan.options)},
        "summary": {"params": total, **counts, "carried_over": carried_n,
                    "coverage": round(carried_n / total, 6) if total else 0.0,
                    "elements": elements, "carried_elements": carried_elements,
                    "element_coverage": round(carried_elements / elements, 6) if elements else 0.0,
                    "frozen": sum(1 for e in params.values() if e["frozen"]),
                    "unused_source": len(plan.unused)},
        "decisions": list(plan.decisions),
        "params": params,
        "unused": [dict(u) for u in plan.unused],
    }


def check(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(manifest, Mapping) or manifest.get("weightmap_manifest") != MANIFEST_VERSION:
        raise UsageError(f"not a weightmap manifest of version {MANIFEST_VERSION}")
    return manifest["params"]
