"""Matching → Plan: each matched layer pair goes through its registered conversion; every other
target parameter stays new, with the matcher's reason attached."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .conversions import PASSES, LayerPair, PlanContext, convert
from .errors import ConversionError, UndecidableError
from .graph import ParamGraph
from .plans import Plan, TensorPlan


def describe_graph(graph: ParamGraph) -> dict[str, Any]:
    return {"path": graph.source, "format": graph.format, "framework": graph.framework}


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
            why = reasons.get(("target", layer.name), "no counterpart in the source")
            tensors += [_new(layer.name, p, why) for p in layer.params]
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
    tensors = _follow_ties(target, ctx.tensors)
    used = {s for t in tensors for s in t.sources}
    unused = [{"name": p.name, "reason": reasons.get(("source", p.name),
                                                      reasons.get(("source-layer", l.name),
                                                                  "no counterpart in the target"))}
              for l in source.layers for p in l.params if p.name not in used and not p.tied_to]
    decisions += [f"{u.layer}: ambiguous between {', '.join(u.candidates)}"
                  for u in matching.unmatched if u.kind == "ambiguous"]
    return Plan(source=describe_graph(source), target=describe_graph(target),
                tensors=tuple(tensors), unused=tuple(unused),
                decisions=tuple(dict.fromkeys(decisions)), options=options)


def _new(layer: str, p, why: str) -> TensorPlan:
    return TensorPlan(target=p.name, layer=layer, shape=p.shape, dtype=p.dtype, status="new",
                      notes=(why,))


def _unmatched_reasons(matching: Any) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for u in matching.unmatched:
        if u.side == "target":
            out.setdefault(("target", u.layer), u.reason)
        else:
            out.setdefault(("source-layer", u.layer), u.reason)
        for p in u.params:
            out.setdefault((u.side, p), u.reason)
    return out


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
