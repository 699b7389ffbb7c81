"""The ``recurrent_stacks`` plan pass: recurrent levels paired across layers.

One layer on one side can hold what several layers hold on the other: torch
``nn.LSTM(num_layers=2)`` is one layer, Keras needs two ``LSTM`` layers, and the torch ONNX
exporter writes one ``LSTM`` node per level. An ONNX ``W (directions, 4H, in)`` never compares
equal to a torch ``weight_ih_l0 (4H, in)`` either. The matcher pairs whole layers, so it leaves
these unmatched (or matches one layer of the stack); this pass pairs them level by level.

Each graph is read as a sequence of items: every recurrent layer contributes one item per level
(``recurrent_levels.levels``), every other layer one item. Items already carried over by the
per-layer conversions are *anchors*. Between two consecutive anchors, the target's recurrent
levels that are still new (*open*) and the source's recurrent levels no tensor uses (*free*) are
paired in order — only when they are equally many and each pair agrees on op, directions, units
and input size; otherwise nothing is guessed and the report says why. Each pair then goes
through the same level conversion as a matched layer pair (so a non-equivalent GRU variant is
refused the same way), its tensors carry ``strategy: "stack"`` and a decision names the pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...errors import ConversionError
from ...graph import Layer, ParamGraph
from ..plan import CONVERSION_FAILED, Reason, TensorPlan
from .base import PlanContext
from .recurrent import STACKS, convert_level
from .recurrent_levels import Level, levels


@dataclass(frozen=True)
class Item:
    layer: Layer
    level: Level | None
    params: tuple[str, ...]

    def label(self) -> str:
        return self.level.label() if self.level is not None else self.layer.name


def items(graph: ParamGraph) -> list[Item]:
    out: list[Item] = []
    for layer in graph.layers:
        try:
            lv = levels(layer, graph)
        except ConversionError:
            lv = []
        if not lv:
            out.append(Item(layer, None, tuple(p.name for p in layer.params)))
            continue
        owned = {p.name for level in lv for p in level.params()}
        rest = tuple(p.name for p in layer.params if p.name not in owned)
        for i, level in enumerate(lv):
            names = tuple(p.name for p in level.params())
            out.append(Item(layer, level, names + (rest if i == 0 else ())))
    return out


def _positions(seq: list[Item]) -> dict[str, int]:
    return {name: i for i, item in enumerate(seq) for name in item.params}


def _fits(s: Level, t: Level) -> bool:
    return (s.op, s.directions, s.units, s.input_size) == \
        (t.op, t.directions, t.units, t.input_size)


def pair_stacked_levels(ctx: PlanContext) -> None:
    src, tgt = items(ctx.source_graph), items(ctx.target_graph)
    if not any(i.level for i in src) or not any(i.level for i in tgt):
        return
    spos, tpos = _positions(src), _positions(tgt)
    index = ctx.index()
    plans = {t.target: t for t in ctx.tensors}
    used = {s for t in ctx.tensors for s in t.sources}
    anchors = {(spos[s], tpos[t.target]) for t in ctx.tensors if t.status != "new"
               for s in t.sources if s in spos and t.target in tpos}
    refused_t, refused_s = _refused(ctx, src, tgt, plans, anchors)
    open_t = [i for i, it in enumerate(tgt) if it.level is not None and i not in refused_t
              and all(plans[n].status == "new" for n in it.params if n in plans)]
    free_s = {i for i, it in enumerate(src) if it.level is not None and i not in refused_s
              and not any(n in used for n in it.params)}
    for run in _runs(open_t, {t for _, t in anchors}):
        lo = max((s for s, t in anchors if t < run[0]), default=-1)
        hi = min((s for s, t in anchors if t > run[-1]), default=len(src))
        cands = sorted(i for i in free_s if lo < i < hi)
        if not cands:
            continue
        where = _between(src, lo, hi)
        levels_t = [tgt[i].level for i in run]
        levels_s = [src[i].level for i in cands]
        if len(cands) != len(run) or not all(map(_fits, levels_s, levels_t)):
            ctx.decisions.append(
                f"{', '.join(tgt[i].label() for i in run)}: not paired with the unused source "
                f"recurrent level(s) {', '.join(src[i].label() for i in cands)} {where}: "
                f"{len(run)} vs {len(cands)} levels, or their ops, directions or sizes differ")
            continue
        _pair_run(ctx, index, [tgt[i] for i in run], [src[i] for i in cands], where)
    _explain_deferred(ctx, index)


def _refused(ctx: PlanContext, src: list[Item], tgt: list[Item], plans, anchors):
    """Items of layer pairs whose conversion was refused: they stay as they are, and still fix
    the order (they are anchors)."""
    refused_t, refused_s = set(), set()
    by_target = {m.target: m.source for m in getattr(ctx.matching, "layers", ())}
    for ti, it in enumerate(tgt):
        if any(plans[p].reason is Reason.CONVERSION_FAILED for p in it.params if p in plans):
            refused_t.add(ti)
            source_layer = by_target.get(it.layer.name)
            for si, sit in enumerate(src):
                if sit.layer.name == source_layer:
                    refused_s.add(si)
                    anchors.add((si, ti))
    return refused_t, refused_s


def _runs(open_t: list[int], anchored: set[int]) -> list[list[int]]:
    """Open target levels grouped by the anchors between them."""
    runs: list[list[int]] = []
    for i in open_t:
        if runs and not any(runs[-1][-1] < a < i for a in anchored):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _between(src: list[Item], lo: int, hi: int) -> str:
    start = f"after {src[lo].label()}" if lo >= 0 else "from the start"
    end = f"before {src[hi].label()}" if hi < len(src) else "to the end"
    return f"({start}, {end} of the source)"


def _pair_run(ctx: PlanContext, index: dict[str, int], tgt: list[Item], src: list[Item],
              where: str) -> None:
    pairs = []
    for t, s in zip(tgt, src):
        tl, sl = t.level, s.level

        def make(tparam, status, sources, steps, notes, value, tl=tl, sl=sl):
            return TensorPlan(target=tparam.name, layer=tl.layer.name, shape=tparam.shape,
                              dtype=tparam.dtype, status=status,
                              sources=tuple(p.name for p in sources), steps=tuple(steps),
                              notes=tuple(notes),
                              match={"source_layer": sl.layer.name, "strategy": "stack",
                                     "score": 0.7}, value=value)
        try:
            planned = convert_level(sl, tl, make)
        except ConversionError as exc:
            ctx.decisions.append(f"{tl.label()}: not converted: {exc.message}")
            for name in t.params:
                if name in index:
                    old = ctx.tensors[index[name]]
                    ctx.tensors[index[name]] = replace(
                        old, notes=(f"{CONVERSION_FAILED}: {exc.message}",), match={},
                        reason=Reason.CONVERSION_FAILED, pending=None)
            continue
        for plan in planned:
            ctx.tensors[index[plan.target]] = plan
        pairs.append(f"{tl.label()} <- {sl.label()}")
    if pairs:
        ctx.decisions.append(f"recurrent levels paired in order {where}: {'; '.join(pairs)}")


def _explain_deferred(ctx: PlanContext, index: dict[str, int]) -> None:
    """Tensors a matched pair left to this pass and it could not pair say so."""
    for i, t in enumerate(ctx.tensors):
        if t.status == "new" and t.pending == STACKS:
            ctx.tensors[i] = replace(t, notes=(
                "no counterpart: the stacked recurrent levels could not be paired in order "
                "(see the decisions)",), match={}, pending=None)
