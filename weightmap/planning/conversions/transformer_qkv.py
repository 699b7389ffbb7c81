"""Fused projections ⇄ the separate ones they stack (qkv ⇄ q/k/v, gate_up ⇄ gate/up), as a
plan pass over what the matcher left.

A fused projection stacks its parts along its out axis: ``(3E, E)`` for an ``nn.Linear`` qkv,
``(E, 3E)`` for GPT-2's ``Conv1D`` ``c_attn`` (split on its last axis), ``(2F, E)`` for a
Llama-style ``gate_up``; biases likewise. The matcher pairs one layer with one layer, so a fused
layer and its separate counterparts stay unmatched (shape mismatch or no counterpart). This pass
pairs them. Which layer is which comes from the name vocabulary (``weightmap.arch``: roles ``q``,
``k``, ``v``, ``qkv``, ``gate``, ``up``, ``gate_up``; ``arch.FUSED`` gives each fused role's
parts in stacking order):

* **split**: a target group of separate siblings (``q/k/v``, ``query/key/value``,
  ``q_proj/k_proj/v_proj``, ``gate_proj/up_proj``, ``w1/w3`` ...), all new, gets the one unused
  fused source layer of that kind (``c_attn``, ``qkv``, ``qkv_proj``, ``wqkv``, ``in_proj``,
  ``gate_up_proj`` ...) that lies between the source counterparts of the target layers around
  the group; each target takes a ``slice`` of the out axis (sizes from the targets, so
  grouped-query k/v work too).
* **merge**: the reverse: a new fused target takes the ``concat`` of an unused source group.

Position, not names alone, ties them: the fused layer must sit where the group sits. Fused names
of schemes that interleave heads (GPT-NeoX ``query_key_value``) are not in the vocabulary on
purpose.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ... import arch
from ...errors import ConversionError
from ...graph import Layer, Param, ParamGraph
from ..plan import TensorPlan
from ...transform import Step
from .base import PlanContext
from .generic import cast_steps, stacked
from .transformer_layout import (IN_OUT, OUT_IN, Pending, fit_note, kernel_undecided, leaf,
                                 orient, text)


def parts_of(fused_role: str) -> tuple[str, ...]:
    """``qkv`` → (q, k, v); ``cross_qkv`` → (cross_q, cross_k, cross_v); ``gate_up`` → ..."""
    prefix = "cross_" if fused_role.startswith("cross_") else ""
    return tuple(prefix + p for p in arch.FUSED[arch.fused_kind(fused_role)])


FUSED_ROLES = tuple(r for r in arch.BLOCK_ROLES if arch.fused_kind(r))


@dataclass(frozen=True)
class Parts:
    """Sibling layers holding separately what one fused layer of role ``kind`` stacks."""

    parent: str
    kind: str                                   # the fused role: qkv, gate_up, cross_qkv
    layers: tuple[Layer, ...]                   # in stacking order (q, k, v / gate, up)

    @property
    def names(self) -> str:
        return ",".join(leaf(l.name) for l in self.layers)

    @property
    def label(self) -> str:
        return f"{self.parent}.{{{self.names}}}"


def _dense(layer: Layer) -> bool:
    return layer.op == "dense" and layer.param("kernel") is not None


def part_groups(graph: ParamGraph, usable) -> list[Parts]:
    """Sibling dense layers with the parts of a fused role, each passing ``usable``."""
    by_parent: dict[str, dict[str, Layer]] = {}
    for layer in graph.layers:
        role = arch.block_role(layer.name)
        if role and _dense(layer) and usable(layer):
            by_parent.setdefault(layer.name.rpartition(".")[0], {})[role] = layer
    return [Parts(parent, kind, tuple(kids[p] for p in parts_of(kind)))
            for parent, kids in by_parent.items() for kind in FUSED_ROLES
            if all(p in kids for p in parts_of(kind))]


def fused_layers(graph: ParamGraph, usable, kind: str | None = None) -> list[Layer]:
    """Dense layers with a fused role (of ``kind`` if given), each passing ``usable``."""
    return [l for l in graph.layers if _dense(l) and usable(l)
            and arch.block_role(l.name) in ((kind,) if kind else FUSED_ROLES)]


# ---- before matching: keep the one-to-several pairs away from the layer matcher --------------

HELD = ("held out of layer matching (fused {kind} on one side, separate {parts} on the other); "
        "the fused_qkv pass pairs them by position")


def _hold(graph: ParamGraph, layers: Sequence[Layer], why: str) -> ParamGraph:
    names = {l.name for l in layers}
    return replace(graph, layers=tuple(
        replace(l, attrs={**l.attrs, "match_held": why}) if l.name in names else l
        for l in graph.layers))


def hold_qkv(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
             ) -> tuple[ParamGraph, ParamGraph]:
    """For each fused kind: where one side has fused projections and the other the separate
    parts (and not both kinds), both are held out of layer matching: a part would otherwise
    pair with a same-shape neighbour (a ``k_proj`` with the source's ``c_proj``) and shift
    everything after it."""
    def every(_layer: Layer) -> bool:
        return True

    graphs = {"source": source, "target": target}
    for kind in FUSED_ROLES:
        for fused_side, parts_side in (("source", "target"), ("target", "source")):
            fused = fused_layers(graphs[fused_side], every, kind)
            found = [g for g in part_groups(graphs[parts_side], every) if g.kind == kind]
            if fused and found and not fused_layers(graphs[parts_side], every, kind) \
                    and not any(g.kind == kind for g in part_groups(graphs[fused_side], every)):
                why = HELD.format(kind=kind, parts="/".join(parts_of(kind)))
                graphs[fused_side] = _hold(graphs[fused_side], fused, why)
                graphs[parts_side] = _hold(graphs[parts_side],
                                           [l for g in found for l in g.layers], why)
                break
    return graphs["source"], graphs["target"]


# ---- where a target layer sits in the source ------------------------------------------------

def bounds(at: dict[int, int], count: int, end: int) -> tuple[list[int], list[int]]:
    """For each of ``count`` target positions, the largest source position ``at`` gives a
    target position before it (-1 if none) and the smallest after it (``end`` if none) — once,
    so that every interval is a lookup: the pass asks for one per candidate pair, and a scan
    each made it cubic in the depth (1.5 s of a 56-block Llama port into fused qkv)."""
    before, after = [-1] * count, [end] * count
    for i in range(1, count):
        before[i] = max(before[i - 1], at.get(i - 1, -1))
    for i in range(count - 2, -1, -1):
        after[i] = min(after[i + 1], at.get(i + 1, end))
    return before, after


class Anchors:
    """Source positions of matched layers, to bound where a target layer's counterpart lies."""

    def __init__(self, ctx: PlanContext) -> None:
        self.src_pos = {l.name: i for i, l in enumerate(ctx.source_graph.layers)}
        self.tgt_names = [l.name for l in ctx.target_graph.layers]
        matched = {t.layer: t.match.get("source_layer") for t in ctx.tensors
                   if t.status != "new" and t.match.get("source_layer")}
        self.at = {i: self.src_pos[matched[n]] for i, n in enumerate(self.tgt_names)
                   if matched.get(n) in self.src_pos}
        self.tgt_pos: dict[str, int] = {}
        for i, n in enumerate(self.tgt_names):
            self.tgt_pos.setdefault(n, i)
        self.before, self.after = bounds(self.at, len(self.tgt_names), len(self.src_pos))

    def interval(self, target_layers: Sequence[str]) -> tuple[int, int]:
        """The source positions (exclusive) between which the counterpart of
        ``target_layers`` lies: the matched layers before and after them."""
        idx = [self.tgt_pos[n] for n in target_layers]
        return self.before[min(idx)], self.after[max(idx)]

    def between(self, source_layers: Sequence[str], bounds: tuple[int, int]) -> bool:
        return all(bounds[0] < self.src_pos[n] < bounds[1] for n in source_layers)


# ---- the pass ---------------------------------------------------------------------------------

def pair_fused_qkv(ctx: PlanContext) -> None:
    index = ctx.index()
    used = {s for t in ctx.tensors for s in t.sources}

    def all_new(layer: Layer) -> bool:
        return all(ctx.tensors[index[p.name]].status == "new" and
                   not ctx.tensors[index[p.name]].sources for p in layer.params)

    def all_unused(layer: Layer) -> bool:
        return all(p.name not in used for p in layer.params)

    anchors = Anchors(ctx)
    src, tgt = ctx.source_graph, ctx.target_graph
    fused_src = fused_layers(src, all_unused)
    split = [(t, f) for t in part_groups(tgt, all_new) for f in fused_src
             if anchors.between([f.name], anchors.interval([l.name for l in t.layers]))
             and _split_fits(f, t)]
    _apply(ctx, index, split, _split, "split")
    groups_src = part_groups(src, all_unused)
    merge = [(f, t) for f in fused_layers(tgt, all_new) for t in groups_src
             if anchors.between([l.name for l in t.layers], anchors.interval([f.name]))
             and _split_fits(f, t)]
    _apply(ctx, index, merge, lambda f, t: _merge(t, f), "merge")


def _label(item: Layer | Parts) -> str:
    return item.label if isinstance(item, Parts) else item.name


def _kind(*items: Layer | Parts) -> str:
    """``qkv`` or ``gate_up``: what the pair stacks."""
    group = next(i for i in items if isinstance(i, Parts))
    return arch.fused_kind(group.kind) or group.kind


def _apply(ctx: PlanContext, index: dict[str, int], candidates: list, build,
           kind: str) -> None:
    """Plan each (target, source) candidate pair that is the only one for both of its ends;
    one decision per target left new because several fit."""
    per_target: dict[int, list] = {}
    per_source: dict[int, list] = {}
    for tgt, src in candidates:
        per_target.setdefault(id(tgt), []).append(src)
        per_source.setdefault(id(src), []).append(tgt)
    for tgt, src in candidates:
        if len(per_target[id(tgt)]) > 1 or len(per_source[id(src)]) > 1:
            rivals = [_label(s) for s in per_target[id(tgt)]]
            rivals += [f"{_label(s)} also fits {_label(t)}" for s in per_target[id(tgt)]
                       for t in per_source[id(s)] if t is not tgt]
            ctx.decisions.append(f"{_label(tgt)}: fused {_kind(tgt, src)} {kind} ambiguous "
                                 f"({', '.join(dict.fromkeys(rivals))}); left new")
            continue
        try:
            plans = build(tgt, src)
        except ConversionError as exc:
            ctx.decisions.append(f"{_label(tgt)}: fused {_kind(tgt, src)} {kind} not "
                                 f"converted: {exc.message}")
            continue
        for plan in plans:
            ctx.tensors[index[plan.target]] = plan


def _kernel_sizes(layers: Sequence[Layer]) -> tuple[int, ...]:
    """Out sizes of the parts' kernels (grouped-query k/v may be smaller than q)."""
    sizes = []
    for layer in layers:
        kernel = layer.param("kernel")
        if kernel.axes is None or "out" not in kernel.axes:
            raise ConversionError("the kernel has no known out axis", tensor=kernel.name)
        sizes.append(kernel.shape[kernel.axes.index("out")])
    return tuple(sizes)


def _fused_layout(fused: Layer, sizes: tuple[int, ...], in_size: int) -> tuple[str, ...] | None:
    """The fused kernel's layout that holds ``sizes`` stacked on its out axis (one, or None)."""
    k = fused.param("kernel")
    options = [k.axes] if k.axes is not None else \
        ([IN_OUT, OUT_IN] if kernel_undecided(fused, k) else [])
    fits = [a for a in options if "out" in a and "in" in a and len(k.shape) == 2
            and k.shape[a.index("out")] == sum(sizes) and k.shape[a.index("in")] == in_size]
    return fits[0] if len(fits) == 1 else None


def _in_size(layers: Sequence[Layer]) -> int | None:
    sizes = set()
    for l in layers:
        k = l.param("kernel")
        if k.axes is None or "in" not in k.axes:
            return None
        sizes.add(k.shape[k.axes.index("in")])
    return sizes.pop() if len(sizes) == 1 else None


def _split_fits(fused: Layer, group: Parts) -> bool:
    """The fused layer is of the group's kind, and its kernel holds the parts' out sizes
    stacked, with their in size."""
    if arch.block_role(fused.name) != group.kind:
        return False
    try:
        sizes = _kernel_sizes(group.layers)
    except ConversionError:
        return False
    in_size = _in_size(group.layers)
    return in_size is not None and _fused_layout(fused, sizes, in_size) is not None


def _plan(target: Param, layer: str, status: str, sources, steps, notes, source_layer: str,
          strategy: str, fitted: tuple[str, str] | None = None) -> TensorPlan:
    return TensorPlan(target=target.name, layer=layer, shape=target.shape, dtype=target.dtype,
                      status=status, sources=tuple(s.name for s in sources), steps=tuple(steps),
                      notes=tuple(notes), match={"source_layer": source_layer,
                                                 "strategy": strategy, "score": 1.0},
                      fitted_layout=fitted)


def _strategy(group: Parts, action: str) -> str:
    """``qkv-split``, ``gate_up-merge`` ... (cross-attention's as ``qkv``)."""
    return f"{arch.fused_kind(group.kind)}-{action}"


def _split(group: Parts, fused: Layer) -> list[TensorPlan]:
    sizes = _kernel_sizes(group.layers)
    layout = _fused_layout(fused, sizes, _in_size(group.layers))
    kernel, bias = fused.param("kernel"), fused.param("bias")
    axis = layout.index("out")
    fitted = ("source", text(layout)) if kernel.axes is None else None
    open_note = [fit_note("source", layout, kernel.shape)] if fitted else []
    plans = []
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for layer, start, size, part in zip(group.layers, starts, sizes, parts_of(group.kind)):
        where = f"split from fused {fused.name}: {part} = out {start}:{start + size}"
        for p in layer.params:
            source, sl = (kernel, Step("slice", {"axis": axis, "start": start,
                                                 "stop": start + size})) \
                if p.role == "kernel" else (bias, Step("slice", {"axis": 0, "start": start,
                                                                 "stop": start + size}))
            if source is None or p.role not in ("kernel", "bias"):
                continue
            part_param = replace(source, shape=_sliced(source.shape, sl), axes=(
                layout if p.role == "kernel" else source.axes))
            steps, notes, _ = orient(part_param, p, False, False)
            kernel_fit = fitted if p.role == "kernel" else None
            notes = [where] + (open_note if kernel_fit else []) + notes
            plans.append(_plan(p, layer.name, "transformed", (source,), [sl] + steps, notes,
                               fused.name, _strategy(group, "split"), kernel_fit))
    return plans


def _sliced(shape: tuple[int, ...], step: Step) -> tuple[int, ...]:
    out = list(shape)
    out[step.args["axis"]] = step.args["stop"] - step.args["start"]
    return tuple(out)


def _merge(group: Parts, fused: Layer) -> list[TensorPlan]:
    kernels = tuple(l.param("kernel") for l in group.layers)
    biases = tuple(l.param("bias") for l in group.layers)
    plans = []
    for p in fused.params:
        if p.role == "kernel":
            whole, cat = stacked(kernels, p)
            try:
                steps, notes, fitted = orient(whole, p, False, kernel_undecided(fused, p))
            except Pending:
                raise ConversionError("square fused kernel", tensor=p.name) from None
            sources = kernels
        elif p.role == "bias" and all(b is not None for b in biases):
            (_, cat), steps, notes, fitted = stacked(biases, p), cast_steps(biases[0], p), [], None
            sources = biases
        else:
            continue
        note = f"merged from {group.label} (concat on the out axis)"
        plans.append(_plan(p, fused.name, "transformed", sources, [cat] + steps,
                           [note] + notes, group.layers[0].name, _strategy(group, "merge"),
                           fitted))
    return plans
