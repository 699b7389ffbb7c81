"""Matching → Plan: each matched layer pair goes through its registered conversion; every other
target parameter stays new, with the matcher's reason attached."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .conversions import PASSES, LayerPair, PlanContext, convert
from .errors import ConversionError, UndecidableError
from .graph import ParamGraph
from .match.signature import canonical_shape
from .plans import NOT_WEIGHT, SHAPE_MISMATCH, Plan, TensorPlan


def describe_graph(graph: ParamGraph) -> dict[str, Any]:
    out = {"path": graph.source, "format": graph.format, "framework": graph.framework}
    if graph.meta.get("described_by"):     # a weights-only source described by its model file
        out["model"] = str(graph.meta["described_by"])
    return out


def build_plan(source: ParamGraph, target: ParamGraph, matching: Any,
               options: Mapping[str, Any] | None = None) -> Plan:
    options = dict(options or {})
    by_target = {m.target: m for m in matching.layers}
    src_layers = {l.name: l for l in source.layers}
    reasons = _unmatched_reasons(matching)
    tensors: list[TensorPlan] = []
    decisions: list[str] = []
    for layer in target.layers:
        m = by_target.get(layer.name)
        if m is None:
            tensors += [_new(layer.name, p, NOT_WEIGHT if layer.attrs.get("not_weights")
                             else _target_reason(reasons, layer.name, p.name))
                        for p in layer.params]
            continue
        pair = LayerPair(source=src_layers[m.source], target=layer, source_graph=source,
                         target_graph=target,
                         pairs=tuple((pp.target, tuple(pp.sources), pp.note) for pp in m.params),
                         match={"source_layer": m.source, "strategy": m.strategy,
                                "score": round(float(m.score), 3)},
                         options=options)
        try:
            planned = convert(pair)
        except UndecidableError:
            raise                       # not a layer to leave new: the port cannot be planned
        except ConversionError as exc:
            decisions.append(f"{layer.name}: not converted: {exc.message}")
            tensors += [_new(layer.name, p, f"conversion failed: {exc.message}")
                        for p in layer.params]
            continue
        for t in planned:
            decisions += [n[len("decision: "):] for n in t.notes if n.startswith("decision: ")]
        tensors += planned
    ctx = PlanContext(tensors, source, target, matching, options, decisions)
    for _name, plan_pass in PASSES:
        plan_pass(ctx)
    tensors = _follow_ties(target, _mark_ignored(ctx.tensors, matching))
    decisions += [f"{u.layer}: ambiguous between {', '.join(u.candidates)}"
                  for u in matching.unmatched if u.kind == "ambiguous"]
    decisions += _role_decision(matching)
    decisions += list(matching.checks)
    the_plan = Plan(source=describe_graph(source), target=describe_graph(target),
                    tensors=tuple(tensors), decisions=tuple(dict.fromkeys(decisions)),
                    options=options)
    return refresh(the_plan, source, target, reasons)


def refresh(plan: Plan, source: ParamGraph, target: ParamGraph,
            reasons: Mapping[tuple[str, str], Any] | None = None) -> Plan:
    """``plan`` with its unused source tensors and its pairing suggestions computed from its
    tensors (an edited plan's lists are stale): each unused tensor with its shape and why (the
    matcher's ``reasons``, else what the plan said, else "not used by the plan"), and for each
    target layer left new an unused source layer of the same canonical shapes, as data
    (``suggestions``) and as a decision."""
    said = {u["name"]: u for u in plan.unused}
    used = {s for t in plan.tensors for s in t.sources}
    unused = []
    for layer in source.layers:
        for p in layer.params:
            if p.name in used or p.tied_to:
                continue
            why = _source_reason(reasons, layer.name, p.name) if reasons is not None else None
            entry = {"name": p.name, "shape": list(p.shape),
                     "reason": why[0] if why else said.get(p.name, {}).get(
                         "reason", "not used by the plan")}
            kind = why[1] if why else said.get(p.name, {}).get("kind")
            if kind:
                entry["kind"] = kind
            unused.append(entry)
    suggestions = pairable(source, target, plan.tensors, unused)
    stale = {s["text"] for s in plan.suggestions}
    decisions = [d for d in plan.decisions if d not in stale] + [s["text"] for s in suggestions]
    return replace(plan, unused=tuple(unused), suggestions=tuple(suggestions),
                   decisions=tuple(dict.fromkeys(decisions)))


def pairable(source: ParamGraph, target: ParamGraph, tensors, unused) -> list[dict[str, Any]]:
    """Target layers left new (not ignored by a rule) whose tensors have the canonical shapes
    of an unused source layer's tensors: likely the same layer, which names and structure did
    not pair. One suggestion per target layer, naming up to three such source layers."""
    free = {u["name"] for u in unused if u.get("kind") != "ignored"}
    by_shapes: dict[tuple, list[str]] = {}
    for layer in source.layers:
        params = [p for p in layer.params if not p.tied_to]
        if params and all(p.name in free for p in params) and _shapes(params):
            by_shapes.setdefault(_shapes(params), []).append(layer.name)
    layers: dict[str, list[TensorPlan]] = {}
    for t in tensors:
        layers.setdefault(t.layer, []).append(t)
    out = []
    for name, planned in layers.items():
        if any(t.status != "new" or t.ignored for t in planned):
            continue
        params = [target.param(t.target) for t in planned]
        params = [p for p in params if not p.tied_to]
        shapes = _shapes(params)
        candidates = by_shapes.get(shapes, []) if shapes else []
        if not candidates:
            continue
        shown = ", ".join(candidates[:3]) + (f" and {len(candidates) - 3} more"
                                             if len(candidates) > 3 else "")
        big = max(params, key=lambda p: p.numel)
        out.append({"kind": "unused_same_shape", "target": name, "sources": candidates,
                    "shape": list(big.shape),
                    "text": f"{name}: left new; {shown} (same shape{'s' if len(params) > 1 else ''}"
                            f", e.g. {big.name} {tuple(big.shape)}) is unused — pair them with a "
                            f"rule?"})
    return out


def _shapes(params) -> tuple:
    """The sorted canonical shapes of a layer's tensors (stored shapes where the layout is
    unknown), scalars (a BatchNorm's batch counter) left out: equal for the same layer in two
    frameworks."""
    return tuple(sorted(canonical_shape(p) or tuple(p.shape) for p in params if p.shape))


def _source_reason(reasons, layer: str, name: str) -> tuple[str, str | None]:
    u = reasons.get(("source", name), reasons.get(("source-layer", layer)))
    return ("no counterpart in the target", None) if u is None else (tensor_reason(u), u.kind)


def _target_reason(reasons, layer: str, name: str) -> str:
    u = reasons.get(("target", name), reasons.get(("target", layer)))
    return "no counterpart in the source" if u is None else tensor_reason(u)


def _role_decision(matching: Any) -> list[str]:
    """One line for the layer pairs the name vocabulary decided (matching strategy ``role``)."""
    by_role = [m for m in matching.layers if m.strategy == "role"]
    if not by_role:
        return []
    moved = sum(any("(position gave" in e for e in m.evidence) for m in by_role)
    shown = "; ".join(f"{m.target} <- {m.source}" for m in by_role[:4])
    return [f"paired by role name: {len(by_role)} same-shape layers that shape and order cannot "
            f"tell apart (q, k, v, o, gate, up ...) were paired by the usual names of their "
            f"roles, {moved} of them against their position: {shown}"
            + (" ..." if len(by_role) > 4 else "")]


def _new(layer: str, p, why: str) -> TensorPlan:
    return TensorPlan(target=p.name, layer=layer, shape=p.shape, dtype=p.dtype, status="new",
                      notes=(why,))


def _unmatched_reasons(matching: Any) -> dict[tuple[str, str], Any]:
    """(side, tensor name) and ("source-layer", layer) -> the matcher's Unmatched record."""
    out: dict[tuple[str, str], Any] = {}
    for u in matching.unmatched:
        if u.side == "target":
            out.setdefault(("target", u.layer), u)
        else:
            out.setdefault(("source-layer", u.layer), u)
        for p in u.params:
            out.setdefault((u.side, p), u)
    return out


def tensor_reason(u: Any) -> str:
    """The matcher's reason for a tensor it left over, naming whose shape a shape mismatch
    quotes (the matcher words it per layer: ``shape A vs B`` is the layers' kernels, which
    the layer's bias would otherwise seem to claim)."""
    if u.kind == "shape" and u.candidates:
        what = f"kernel {u.reason}" if u.reason.startswith("shape ") else u.reason
        return f"{SHAPE_MISMATCH} {u.candidates[0]}: {what}"
    return u.reason


def _mark_ignored(tensors: list[TensorPlan], matching: Any) -> list[TensorPlan]:
    """A target tensor a rule ignores says so, even when its layer's conversion planned it
    new with a note of its own (the strict check and the report read it)."""
    ignored = {p: u.reason for u in matching.unmatched
               if u.side == "target" and u.kind == "ignored" for p in u.params}
    return [replace(t, notes=(ignored[t.target],) + t.notes)
            if t.target in ignored and t.status == "new" and not t.ignored else t
            for t in tensors]


def _follow_ties(target: ParamGraph, tensors: list[TensorPlan]) -> list[TensorPlan]:
    """A target parameter tied to another (one tensor, two names) gets the same plan, unless it
    was planned from a source of its own."""
    by_name = {t.target: t for t in tensors}
    out = []
    for t in tensors:
        tied = target.param(t.target).tied_to
        if tied and t.status == "new" and tied in by_name and by_name[tied].status != "new":
            base = by_name[tied]
            t = replace(base, target=t.target, layer=t.layer,
                        notes=base.notes + (f"tied to {tied}",))
        out.append(t)
    return out
