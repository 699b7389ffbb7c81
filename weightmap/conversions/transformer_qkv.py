"""Fused qkv ⇄ separate q/k/v projections, as a plan pass over what the matcher left.

A fused projection stacks q, k and v along its out axis: ``(3E, E)`` for ``nn.Linear``,
``(E, 3E)`` for GPT-2's ``Conv1D`` ``c_attn`` (split on its last axis); biases ``(3E,)``. The
matcher pairs one layer with one layer, so a fused layer and its three counterparts stay
unmatched (shape mismatch or no counterpart). This pass pairs them:

* **split**: a target q/k/v triple (siblings named ``q/k/v``, ``query/key/value``,
  ``q_proj/k_proj/v_proj`` ...), all new, gets the one unused fused source layer (named
  ``c_attn``, ``qkv``, ``qkv_proj``, ``wqkv``, ``in_proj``) that lies between the source
  counterparts of the target layers around the triple; each target takes a ``slice`` of the out
  axis (sizes from the targets, so grouped-query k/v work too).
* **merge**: the reverse: a new fused target takes the ``concat`` of an unused source triple.

Position, not names alone, ties them: the fused layer must sit where the triple sits. Fused names
of schemes that interleave heads (GPT-NeoX ``query_key_value``) are not in the list on purpose.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ..errors import ConversionError
from ..graph import Layer, Param, ParamGraph
from ..plans import TensorPlan
from ..transforms import Step
from .base import PlanContext, register_graph_pass
from .generic import cast_steps
from .transformer_layout import IN_OUT, OUT_IN, Pending, fit_note, kernel_undecided, leaf, orient

FUSED_LEAVES = frozenset({"c_attn", "qkv", "qkv_proj", "wqkv", "in_proj", "to_qkv"})
TRIPLES = (("q", "k", "v"), ("query", "key", "value"), ("q_proj", "k_proj", "v_proj"),
           ("wq", "wk", "wv"), ("to_q", "to_k", "to_v"), ("q_lin", "k_lin", "v_lin"),
           ("q_attn", "k_attn", "v_attn"))


@dataclass(frozen=True)
class Triple:
    parent: str
    layers: tuple[Layer, Layer, Layer]          # q, k, v

    @property
    def names(self) -> str:
        return ",".join(leaf(l.name) for l in self.layers)

    @property
    def label(self) -> str:
        return f"{self.parent}.{{{self.names}}}"


def triples(graph: ParamGraph, usable) -> list[Triple]:
    """Sibling q/k/v dense layers, each passing ``usable``."""
    by_parent: dict[str, dict[str, Layer]] = {}
    for layer in graph.layers:
        if layer.op == "dense" and layer.param("kernel") is not None and usable(layer):
            parent, _, name = layer.name.rpartition(".")
            by_parent.setdefault(parent, {})[name.lower()] = layer
    out = []
    for parent, kids in by_parent.items():
        for names in TRIPLES:
            if all(n in kids for n in names):
                out.append(Triple(parent, tuple(kids[n] for n in names)))
                break
    return out


def fused_layers(graph: ParamGraph, usable) -> list[Layer]:
    return [l for l in graph.layers if l.op == "dense" and leaf(l.name).lower() in FUSED_LEAVES
            and l.param("kernel") is not None and usable(l)]


# ---- before matching: keep the one-to-three pairs away from the layer matcher -----------------

HELD = ("held out of layer matching (fused qkv on one side, separate q/k/v on the other); "
        "the fused_qkv pass pairs them by position")


def _hold(graph: ParamGraph, layers: Sequence[Layer]) -> ParamGraph:
    names = {l.name for l in layers}
    return replace(graph, layers=tuple(
        replace(l, attrs={**l.attrs, "match_held": HELD}) if l.name in names else l
        for l in graph.layers))


@register_graph_pass("qkv_hold")
def hold_qkv(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
             ) -> tuple[ParamGraph, ParamGraph]:
    """Where one side has fused projections and the other q/k/v triples (and not both kinds),
    both are held out of layer matching: a triple member would otherwise pair with a same-shape
    neighbour (an ``o_proj`` with the source's ``c_proj``) and shift everything after it."""
    def every(_layer: Layer) -> bool:
        return True

    for fused_side, triple_side in (("source", "target"), ("target", "source")):
        graphs = {"source": source, "target": target}
        fused = fused_layers(graphs[fused_side], every)
        found = triples(graphs[triple_side], every)
        if fused and found and not fused_layers(graphs[triple_side], every) \
                and not triples(graphs[fused_side], every):
            graphs[fused_side] = _hold(graphs[fused_side], fused)
            graphs[triple_side] = _hold(graphs[triple_side],
                                        [l for t in found for l in t.layers])
            return graphs["source"], graphs["target"]
    return source, target


# ---- where a target layer sits in the source ------------------------------------------------

class Anchors:
    """Source positions of matched layers, to bound where a target layer's counterpart lies."""

    def __init__(self, ctx: PlanContext) -> None:
        self.src_pos = {l.name: i for i, l in enumerate(ctx.source_graph.layers)}
        self.tgt_names = [l.name for l in ctx.target_graph.layers]
        matched = {t.layer: t.match.get("source_layer") for t in ctx.tensors
                   if t.status != "new" and t.match.get("source_layer")}
        self.at = {i: self.src_pos[matched[n]] for i, n in enumerate(self.tgt_names)
                   if matched.get(n) in self.src_pos}

    def interval(self, target_layers: Sequence[str]) -> tuple[int, int]:
        idx = [self.tgt_names.index(n) for n in target_layers]
        before = [p for i, p in self.at.items() if i < min(idx)]
        after = [p for i, p in self.at.items() if i > max(idx)]
        return (max(before) if before else -1,
                min(after) if after else len(self.src_pos))

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
    split = [(t, f) for t in triples(tgt, all_new) for f in fused_src
             if anchors.between([f.name], anchors.interval([l.name for l in t.layers]))
             and _split_fits(f, t)]
    _apply(ctx, index, split, _split, "split")
    triples_src = triples(src, all_unused)
    merge = [(f, t) for f in fused_layers(tgt, all_new) for t in triples_src
             if anchors.between([l.name for l in t.layers], anchors.interval([f.name]))
             and _split_fits(f, t)]
    _apply(ctx, index, merge, lambda f, t: _merge(t, f), "merge")


def _label(item: Layer | Triple) -> str:
    return item.label if isinstance(item, Triple) else item.name


def _apply(ctx: PlanContext, index: dict[str, int], candidates: list, build,
           kind: str) -> None:
    """Plan each (target, source) candidate pair that is the only one for both of its ends."""
    per_target: dict[int, list] = {}
    per_source: dict[int, list] = {}
    for tgt, src in candidates:
        per_target.setdefault(id(tgt), []).append(src)
        per_source.setdefault(id(src), []).append(tgt)
    for tgt, src in candidates:
        if len(per_target[id(tgt)]) > 1 or len(per_source[id(src)]) > 1:
            rivals = [_label(s) for s in per_target[id(tgt)]]
            rivals += [f"{_label(src)} also fits {_label(t)}" for t in per_source[id(src)]
                       if t is not tgt]
            ctx.decisions.append(f"{_label(tgt)}: fused qkv {kind} ambiguous "
                                 f"({', '.join(rivals)}); left new")
            continue
        try:
            plans = build(tgt, src)
        except ConversionError as exc:
            ctx.decisions.append(f"{_label(tgt)}: fused qkv {kind} not converted: "
                                 f"{exc.message}")
            continue
        for plan in plans:
            ctx.tensors[index[plan.target]] = plan


def _kernel_sizes(layers: Sequence[Layer]) -> tuple[int, ...]:
    """Out sizes of the q, k, v kernels (grouped-query k/v may be smaller than q)."""
    sizes = []
    for layer in layers:
        kernel = layer.param("kernel")
        if kernel.axes is None or "out" not in kernel.axes:
            raise ConversionError("the q/k/v kernel has no known out axis", tensor=kernel.name)
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


def _split_fits(fused: Layer, triple: Triple) -> bool:
    """The fused kernel holds the triple's out sizes stacked, with their in size."""
    try:
        sizes = _kernel_sizes(triple.layers)
    except ConversionError:
        return False
    in_size = _in_size(triple.layers)
    return in_size is not None and _fused_layout(fused, sizes, in_size) is not None


def _plan(target: Param, layer: str, status: str, sources, steps, notes, source_layer: str,
          strategy: str) -> TensorPlan:
    return TensorPlan(target=target.name, layer=layer, shape=target.shape, dtype=target.dtype,
                      status=status, sources=tuple(s.name for s in sources), steps=tuple(steps),
                      notes=tuple(notes), match={"source_layer": source_layer,
                                                 "strategy": strategy, "score": 1.0})


def _split(triple: Triple, fused: Layer) -> list[TensorPlan]:
    sizes = _kernel_sizes(triple.layers)
    layout = _fused_layout(fused, sizes, _in_size(triple.layers))
    kernel, bias = fused.param("kernel"), fused.param("bias")
    axis = layout.index("out")
    open_note = [fit_note("source", layout, kernel.shape)] if kernel.axes is None else []
    plans = []
    starts = [sum(sizes[:i]) for i in range(3)]
    for layer, start, size, part in zip(triple.layers, starts, sizes, "qkv"):
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
            steps, notes = orient(part_param, p, False, False)
            notes = [where] + (open_note if p.role == "kernel" else []) + notes
            plans.append(_plan(p, layer.name, "transformed", (source,), [sl] + steps, notes,
                               fused.name, "qkv-split"))
    return plans


def _sliced(shape: tuple[int, ...], step: Step) -> tuple[int, ...]:
    out = list(shape)
    out[step.args["axis"]] = step.args["stop"] - step.args["start"]
    return tuple(out)


def _merge(triple: Triple, fused: Layer) -> list[TensorPlan]:
    kernels = [l.param("kernel") for l in triple.layers]
    biases = [l.param("bias") for l in triple.layers]
    if len({k.axes for k in kernels}) != 1:
        raise ConversionError("the q/k/v kernels are stored in different layouts",
                              tensor=fused.name)
    axes = kernels[0].axes
    axis = axes.index("out")
    total = list(kernels[0].shape)
    total[axis] = sum(k.shape[axis] for k in kernels)
    plans = []
    for p in fused.params:
        if p.role == "kernel":
            stacked = replace(kernels[0], shape=tuple(total))
            try:
                steps, notes = orient(stacked, p, False, kernel_undecided(fused, p))
            except Pending:
                raise ConversionError("square fused kernel", tensor=p.name) from None
            sources, cat = kernels, Step("concat", {"axis": axis})
        elif p.role == "bias" and all(b is not None for b in biases):
            steps, notes = [], []
            steps += cast_steps(biases[0], p)
            sources, cat = biases, Step("concat", {"axis": 0})
        else:
            continue
        note = f"merged from {triple.label} (concat on the out axis)"
        plans.append(_plan(p, fused.name, "transformed", sources, [cat] + steps,
                           [note] + notes, triple.layers[0].name, "qkv-merge"))
    return plans
