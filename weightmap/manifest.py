"""The freeze manifest: for every target parameter, where it came from, how it was transformed,
whether to freeze it and its learning-rate scale.

Policies follow the three usual recipes:

* ``none`` — train everything (default);
* ``transferred`` — feature extraction: everything carried over is frozen, new parts train;
* ``until:NAME`` / ``first:N`` — fine-tuning: carried-over layers up to and including target layer
  NAME (or the first N carried-over layers) are frozen.

A layer with no weights (a Keras pooling layer the reader recorded) can be the ``until:``
boundary: everything carried over before it is frozen.

Learning-rate scales (``lr_scale``) per group: ``transferred=0.1`` (every carried-over parameter),
``new=1`` and ``decay=0.8`` (layer-wise: the last carried-over block keeps its scale, each block
before it is multiplied by 0.8 once more). A block is a module path up to its first numeric
part (``layer1.0.conv1`` and ``layer1.0.bn1`` are block ``layer1.0``, ``blocks.3.attn.qkv`` is
``blocks.3``); a layer without one is a block of its own (``conv1``, ``fc``).
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import UsageError
from .graph import ParamGraph
from .plans import Plan

MANIFEST_VERSION = 1
CARRIED = ("transferred", "transformed", "synthetic", "partial", "adapted")


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
    if isinstance(items, str):          # one "GROUP=F", as the command line writes it
        items = [items]
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


def _frozen_layers(plan: Plan, policy: FreezePolicy,
                   weightless_after: Mapping[str, str] | None = None) -> set[str]:
    carried_layers = list(dict.fromkeys(t.layer for t in plan.tensors if t.status in CARRIED))
    if policy.kind == "none":
        return set()
    if policy.kind == "transferred":
        return set(carried_layers)
    if policy.kind == "first":
        return set(carried_layers[:policy.first])
    all_layers = list(dict.fromkeys(t.layer for t in plan.tensors))
    names = [l for l in all_layers if l == policy.until or l.startswith(policy.until + ".")]
    weightless = dict(weightless_after or {})
    if not names and policy.until in weightless:     # a layer without weights: what precedes it
        before = weightless[policy.until]
        stop = all_layers.index(before) if before in all_layers else -1
        return {l for l in carried_layers if all_layers.index(l) <= stop}
    if not names:
        known = all_layers[:6] + [n for n in weightless][:3]
        raise UsageError(f"freeze until:{policy.until}: the target has no layer of that name",
                         hint=f"target layers include {', '.join(known)} ...")
    stop = max(all_layers.index(n) for n in names)
    return {l for l in carried_layers if all_layers.index(l) <= stop}


def block_of(layer: str) -> str:
    """The block a layer belongs to for layer-wise decay: its path up to and including the
    first numeric part (``layer1.0.conv1`` -> ``layer1.0``; Keras nesting ``outer/3/x`` too);
    a path without one is its own block."""
    m = re.match(r"^(.*?(?:^|[./])\d+)(?:[./]|$)", layer)
    return m.group(1) if m else layer


def _scale_text(scale: float) -> float:
    """The scale as recorded: 12 significant digits, so a deep decay never rounds to 0."""
    return float(f"{scale:.12g}")


def layer_listing(source: ParamGraph, target: ParamGraph) -> dict[str, list[dict[str, Any]]]:
    """Both models' layer sequences (execution order where the format knows it), each layer
    with its op kind and tensors: what a reader of the manifest needs to see the mapping whole
    (the HTML report draws it) without the two model files at hand."""
    def listing(graph: ParamGraph) -> list[dict[str, Any]]:
        return [{"name": layer.name, "op": layer.op,
                 "tensors": [{"name": p.name, "role": p.role, "shape": list(p.shape),
                              "dtype": p.dtype} for p in layer.params]}
                for layer in graph.layers]
    return {"source": listing(source), "target": listing(target)}


def build(plan: Plan, *, freeze: str | FreezePolicy | None = "none",
          lr_scale: Iterable[str] | Mapping[str, float] | None = None,
          output: str | None = None, options: Mapping[str, Any] | None = None,
          target: ParamGraph | None = None,
          layers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``plan``. With the ``target`` graph each entry says whether it is a
    ``parameter`` or a ``buffer`` (running statistics ...), the summary counts both, and a
    weightless target layer can be the ``until:`` boundary; ``layers`` (``layer_listing``)
    adds both layer sequences."""
    policy = parse_freeze(freeze)
    scales = parse_lr_scales(lr_scale)
    frozen_layers = _frozen_layers(plan, policy, target.meta.get("weightless_after")
                                   if target is not None else None)
    carried_blocks = list(dict.fromkeys(block_of(t.layer) for t in plan.tensors
                                        if t.status in CARRIED))
    depth = {b: len(carried_blocks) - 1 - i for i, b in enumerate(carried_blocks)}
    params: dict[str, Any] = {}
    for t in plan.tensors:
        carried = t.status in CARRIED
        scale = scales.get("transferred", 1.0) if carried else scales.get("new", 1.0)
        if carried and "decay" in scales:
            scale *= scales["decay"] ** depth[block_of(t.layer)]
        entry = {"layer": t.layer, "status": t.status, "source": list(t.sources),
                 "shape": list(t.shape), "dtype": t.dtype,
                 "transforms": [s.to_dict() for s in t.steps],
                 "frozen": carried and t.layer in frozen_layers,
                 "lr_scale": _scale_text(scale)}
        if target is not None:
            entry["kind"] = "buffer" if target.param(t.target).is_buffer else "parameter"
        if t.notes:
            entry["notes"] = list(t.notes)
        if t.match:
            entry["match"] = dict(t.match)
        params[t.target] = entry
    return {
        "weightmap_manifest": MANIFEST_VERSION,
        "source": dict(plan.source), "target": dict(plan.target), "output": output,
        "policy": {"freeze": str(policy), "lr_scale": scales,
                   "options": dict(options or plan.options)},
        "summary": _summary(plan, params),
        "decisions": list(plan.decisions),
        "params": params,
        "unused": [dict(u) for u in plan.unused],
        **({"layers": dict(layers)} if layers is not None else {}),
    }


def _summary(plan: Plan, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    counts = plan.counts()
    total = len(plan.tensors)
    carried_n = sum(counts[s] for s in CARRIED)
    elements = sum(math.prod(t.shape) for t in plan.tensors)
    carried_elements = sum(math.prod(t.shape) for t in plan.tensors if t.status in CARRIED)
    kinds = [e.get("kind") for e in params.values()]
    out = {"params": total, **counts, "carried_over": carried_n,
           "coverage": round(carried_n / total, 6) if total else 0.0,
           "elements": elements, "carried_elements": carried_elements,
           "element_coverage": round(carried_elements / elements, 6) if elements else 0.0,
           # frozen parameters (a buffer is not trained; its entry follows its layer)
           "frozen": sum(1 for e in params.values() if e["frozen"]
                         and e.get("kind") != "buffer"),
           "unused_source": len(plan.unused)}
    if None not in kinds:
        out["parameters"] = kinds.count("parameter")
        out["buffers"] = kinds.count("buffer")
    return out


def check(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(manifest, Mapping) or manifest.get("weightmap_manifest") != MANIFEST_VERSION \
            or not isinstance(manifest.get("params"), Mapping):
        raise UsageError(f"not a weightmap manifest of version {MANIFEST_VERSION}")
    return manifest["params"]


class Census:
    """What transforms report while the output is written (a cast's overflows, values become
    subnormal or zero: ``weightmap.transforms.precision``), put into ``manifest``: the counts
    under ``params[NAME][op]`` and their totals over all tensors under ``summary[op]`` (with
    ``tensors``, how many reported). Writers compute tensors on several threads: thread-safe."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        self.lock = threading.Lock()

    def __call__(self, target: str, step: Any, counts: Mapping[str, Any]) -> None:
        with self.lock:
            self.manifest["params"].setdefault(target, {})[step.op] = dict(counts)
            totals = self.manifest["summary"].setdefault(step.op, {"tensors": 0})
            totals["tensors"] += 1
            for key, value in counts.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
