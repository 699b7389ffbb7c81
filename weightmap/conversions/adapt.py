"""Adaptations on request (``--adapt NAME``, plan option ``adapt``): target tensors left new
because their size differs from the source's, made to fit the way timm does it, with status
``adapted`` in the plan and the manifest. A plan pass, after every other.

* ``pos_embed`` — a 2-D absolute position embedding (``arch.POSITION_GRIDS``: ``pos_embed``,
  ``position_embeddings`` ... shaped ``(1, prefix + h·w, d)``) at another grid size: the prefix
  tokens are kept and the grid resampled, bicubic with antialiasing (``resample_grid``,
  ``timm.layers.resample_abs_pos_embed``). The grids are square; the number of prefix tokens is
  the one that leaves a square grid on both sides, the count of the source's class,
  distillation and register tokens deciding between several.
* ``in_chans`` — the stem (the first convolution of each graph) for another number of input
  channels: the kernel summed over RGB for one channel, repeated and scaled by 3/C for C
  (``adapt_in_channels``, ``timm.models._manipulate.adapt_input_conv``); the stem's other tensors
  are copied.

Without the option, a tensor one of them would fit is reported with the option that would fit
it; nothing is changed silently.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

from .. import arch
from ..errors import ConversionError, UsageError
from ..graph import Layer, Param, ParamGraph
from ..layouts import spatial_rank
from ..plans import TensorPlan
from ..spelling import option
from ..transforms import Step
from .base import PlanContext, register_pass
from .generic import cast_steps, layout_steps
from .transformer_layout import leaf

ADAPTATIONS = ("pos_embed", "in_chans")
MAX_PREFIX = 16


def requested(value: Any) -> tuple[str, ...]:
    """The adaptations an ``adapt`` option names (a name, a comma-separated string or a list);
    UsageError for one that does not exist."""
    if not value:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    for name in names:
        if name not in ADAPTATIONS:
            raise UsageError(f"unknown adaptation {name!r}",
                             hint=f"{option('adapt')} takes {', '.join(ADAPTATIONS)}")
    return tuple(dict.fromkeys(names))


def _grid(param: Param) -> bool:
    return leaf(param.name) in arch.POSITION_GRIDS and len(param.shape) == 3 \
        and param.shape[0] == 1


def _square(n: int) -> int | None:
    side = math.isqrt(n) if n > 0 else 0
    return side if side and side * side == n else None


def prefix_tokens(source: ParamGraph, tokens_s: int, tokens_t: int) -> int | None:
    """How many tokens precede the grid: the one count that leaves a square grid on both
    sides, or, among several, the count of the source's class/distillation/register tokens."""
    fits = [p for p in range(MAX_PREFIX + 1)
            if _square(tokens_s - p) and _square(tokens_t - p)]
    counted = sum(p.shape[-2] for p in source.params()
                  if leaf(p.name) in arch.PREFIX_TOKENS and len(p.shape) == 3)
    if counted in fits:
        return counted
    return fits[0] if len(fits) == 1 else None


def _pos_embed(ctx: PlanContext, target: Param, used: set[str]
               ) -> tuple[list[TensorPlan], str] | None:
    if not _grid(target):
        return None
    found = [p for p in ctx.source_graph.params() if _grid(p) and p.name not in used
             and not p.tied_to and p.shape[2] == target.shape[2] and p.shape != target.shape]
    if len(found) != 1:
        return None
    (source,) = found
    prefix = prefix_tokens(ctx.source_graph, source.shape[1], target.shape[1])
    what = f"position embeddings {source.name} {source.shape} -> {target.shape}"
    if prefix is None:
        raise ConversionError(f"{what}: no square grid (with the same number of prefix tokens) "
                              f"on both sides", tensor=target.name)
    g_s, g_t = _square(source.shape[1] - prefix), _square(target.shape[1] - prefix)
    step = Step("resample_grid", {"prefix": prefix, "grid": [g_s, g_s], "size": [g_t, g_t]})
    note = (f"resampled the {g_s}x{g_s} grid to {g_t}x{g_t} (bicubic, antialiased; {prefix} "
            f"prefix token(s) kept), as timm's resample_abs_pos_embed")
    plan = _plan(ctx, target, source, [step] + cast_steps(source, target), note)
    return [plan], what


def _first_conv(graph: ParamGraph) -> Layer | None:
    return next((l for l in graph.layers if spatial_rank(l.op) and not
                 l.op.startswith("conv_transpose") and l.param("kernel") is not None), None)


def _in_chans(ctx: PlanContext, target: Param, used: set[str]
              ) -> tuple[list[TensorPlan], str] | None:
    stem_t, stem_s = _first_conv(ctx.target_graph), _first_conv(ctx.source_graph)
    if stem_t is None or stem_s is None or stem_t.param("kernel") != target:
        return None
    kernel = stem_s.param("kernel")
    if kernel.name in used or target.axes is None or kernel.axes is None \
            or sorted(kernel.axes) != sorted(target.axes) or "in" not in target.axes:
        return None
    dims_s, dims_t = dict(zip(kernel.axes, kernel.shape)), dict(zip(target.axes, target.shape))
    if dims_s["in"] == dims_t["in"] or any(dims_s[a] != dims_t[a] for a in dims_t if a != "in"):
        return None
    what = f"stem {stem_t.name}: {dims_s['in']} input channels -> {dims_t['in']}"
    laid = replace(target, shape=tuple(dims_s[a] for a in target.axes))
    steps, notes = layout_steps(kernel, laid)
    steps.append(Step("adapt_in_channels", {"axis": target.axes.index("in"),
                                            "channels": dims_t["in"]}))
    how = "summed over the input channels" if dims_t["in"] == 1 else \
        f"repeated over {dims_t['in']} input channels and scaled by 3/{dims_t['in']}"
    plans = [_plan(ctx, target, kernel, steps, "; ".join(notes + [
        f"{how}, as timm's adapt_input_conv"]))]
    for p in stem_t.params:
        twin = stem_s.param(p.role)
        if p is not target and twin is not None and twin.name not in used:
            more_steps, more_notes = layout_steps(twin, p)
            status = "transformed" if any(s.op != "cast" for s in more_steps) else "transferred"
            plans.append(replace(_plan(ctx, p, twin, more_steps, "; ".join(more_notes) or
                                       "the stem's, copied"), status=status))
    return plans, what


def _plan(ctx: PlanContext, target: Param, source: Param, steps: list[Step],
          note: str) -> TensorPlan:
    layer = next(l.name for l in ctx.target_graph.layers if target in l.params)
    source_layer = next(l.name for l in ctx.source_graph.layers if source in l.params)
    return TensorPlan(target=target.name, layer=layer, shape=target.shape, dtype=target.dtype,
                      status="adapted", sources=(source.name,), steps=tuple(steps),
                      notes=(note,), match={"source_layer": source_layer, "strategy": "adapt",
                                            "score": 1.0})


FINDERS: dict[str, Callable] = {"pos_embed": _pos_embed, "in_chans": _in_chans}


@register_pass("adapt")
def adapt(ctx: PlanContext) -> None:
    wanted = requested(ctx.options.get("adapt"))
    for name, finder in FINDERS.items():
        index = ctx.index()
        used = {s for t in ctx.tensors for s in t.sources}
        for t in list(ctx.tensors):
            current = ctx.tensors[index[t.target]]
            if current.status != "new" or current.sources:
                continue
            try:
                found = finder(ctx, ctx.target_graph.param(t.target), used)
            except ConversionError as exc:
                if name in wanted:
                    ctx.decisions.append(f"{t.target}: {option('adapt', name)} cannot: "
                                         f"{exc.message}")
                continue
            if found is None:
                continue
            plans, what = found
            if name not in wanted:
                ctx.decisions.append(f"{t.layer}: left new: {what}; {option('adapt', name)} "
                                     f"would adapt it as timm does")
                continue
            for plan in plans:
                if ctx.tensors[index[plan.target]].status == "new":
                    ctx.tensors[index[plan.target]] = plan
                    used.update(plan.sources)


def check_option(value: Any) -> list[str]:
    """The ``adapt`` plan option (``options.PlanOptions``) as the plan records it."""
    return list(requested(value))
