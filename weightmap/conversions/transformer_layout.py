"""GPT-2-style ``Conv1D`` kernels: stored (in, out) where ``nn.Linear`` stores (out, in).

A bare state dict says nothing about module types, so ``statedict.group`` labels every 2-D
``weight`` as a dense (out, in) kernel, which is wrong for Hugging Face's ``Conv1D`` — and a square
matrix (GPT-2's ``attn.c_proj``, (E, E)) looks the same either way. The layout is decided, in this
order of trust:

1. **module type**: a live model whose module class is ``Conv1D`` (the torch reader labels its
   kernel (in, out), ``attrs["layout_from"] = "module type Conv1D"``);
2. **option** ``conv1d_layout="in,out"`` (or ``{"source": ..., "target": ...}``), for the user
   who knows;
3. **consistency**: the kernels of the family (inferred dense layers named ``c_attn``, ``c_fc``,
   ``c_proj``, ``q_attn``) lose their labels before matching (they match by sorted dims); each
   non-square one is oriented by the one layout that fits its target; the square ones take the
   layout every non-square one of the family agreed on (``resolve_square`` plan pass). If they
   disagree, or none is non-square, the square kernels stay new and the report says why: a
   square matrix is never decided by shape alone.

nanoGPT checkpoints use the same names with ``nn.Linear`` (out, in) kernels; the consistency rule
reads them correctly too.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Iterable, Mapping

from ..errors import ConversionError, UsageError
from ..spelling import choose, option
from ..graph import Layer, Param, ParamGraph
from ..plans import TensorPlan
from ..transforms import Step
from .base import PlanContext, register_graph_pass
from .generic import layout_steps

IN_OUT, OUT_IN = ("in", "out"), ("out", "in")
LAYOUTS = {"in,out": IN_OUT, "out,in": OUT_IN}
# Leaf names of Hugging Face Conv1D layers (GPT-2, OpenAI GPT, ImageGPT, DecisionTransformer).
CONV1D_LEAVES = ("c_attn", "q_attn", "c_proj", "c_fc")
FAMILY = "conv1d_family"        # layer attr on an undecided family member: its leaf names
LAYOUT_FROM = "layout_from"     # layer attr: how the kernel's layout is known
UNDECIDED = "undecided"
OPTION = "conv1d_layout"
SIDES = ("source", "target")

_FIT = re.compile(r"^(source|target) kernel stored \((in,out|out,in)\): the only layout that fits")
_PENDING = re.compile(r"^layout pending: square kernel of the (source|target) Conv1D family")


def text(layout: tuple[str, ...]) -> str:
    return ",".join(layout)


def fit_note(side: str, layout: tuple[str, ...], shape: tuple[int, ...]) -> str:
    """The note that records a layout decided by fit; ``resolve_square`` counts these."""
    return f"{side} kernel stored ({text(layout)}): the only layout that fits {shape}"


def pending_note(side: str) -> str:
    return f"layout pending: square kernel of the {side} Conv1D family"


# ---- which layers form the family ---------------------------------------------------------

def leaf(name: str) -> str:
    return name.rpartition(".")[2]


def is_candidate(layer: Layer) -> bool:
    """A dense layer grouped from a state dict (no module type) with a Conv1D leaf name."""
    kernel = layer.param("kernel")
    return (layer.op == "dense" and bool(layer.attrs.get("inferred"))
            and leaf(layer.name) in CONV1D_LEAVES and kernel is not None
            and len(kernel.shape) == 2)


def is_undecided(layer: Layer) -> bool:
    return layer.attrs.get(LAYOUT_FROM) == UNDECIDED


def kernel_undecided(layer: Layer, param: Param) -> bool:
    return is_undecided(layer) and param.role == "kernel" and param.axes is None


def forced_layout(options: Mapping[str, Any], side: str) -> tuple[str, ...] | None:
    value = check_option(options.get(OPTION))
    if isinstance(value, Mapping):
        value = value.get(side)
    return None if value is None else LAYOUTS[value]


def check_option(value: Any) -> str | dict[str, str] | None:
    """The option's value as the plan records it: ``"in,out"`` / ``"out,in"`` for both sides,
    or ``{"source": ..., "target": ...}``. Also reads the command line's list of texts
    (``["in,out"]``, ``["source=in,out", "target=out,in"]``)."""
    if value is None or isinstance(value, str) and value in LAYOUTS:
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        sides = [v.partition("=") for v in value]
        if len(value) == 1 and not sides[0][1]:
            return check_option(value[0])
        value = {side.strip(): layout.strip() for side, sep, layout in sides if sep} \
            if all(sep for _, sep, _ in sides) else value
    if isinstance(value, Mapping) and value and set(value) <= set(SIDES) \
            and all(v in LAYOUTS for v in value.values()):
        return dict(value)
    raise UsageError(f"{option(OPTION)} is {value!r}", hint="use in,out or out,in; for one "
                     "side " + choose('{"source": "in,out"}', "source=in,out"))


def _relabel(layer: Layer, axes: tuple[str, ...] | None, attrs: Mapping[str, Any]) -> Layer:
    params = tuple(replace(p, axes=axes) if p.role == "kernel" else p for p in layer.params)
    return replace(layer, params=params, attrs={**layer.attrs, **attrs})


def mark_family(graph: ParamGraph, side: str, options: Mapping[str, Any]) -> ParamGraph:
    members = [l for l in graph.layers if is_candidate(l)]
    if graph.framework != "torch" or not members:
        return graph
    names = "/".join(sorted({leaf(l.name) for l in members}, key=CONV1D_LEAVES.index))
    forced = forced_layout(options, side)
    if forced is not None:
        attrs = {LAYOUT_FROM: f"option {OPTION}"}
        layers = [_relabel(l, forced, attrs) if is_candidate(l) else l for l in graph.layers]
    else:
        attrs = {LAYOUT_FROM: UNDECIDED, FAMILY: names}
        layers = [_relabel(l, None, attrs) if is_candidate(l) else l for l in graph.layers]
    return replace(graph, layers=tuple(layers))


@register_graph_pass("conv1d_layout")
def conv1d_layout(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
                  ) -> tuple[ParamGraph, ParamGraph]:
    return mark_family(source, "source", options), mark_family(target, "target", options)


# ---- orienting one kernel -------------------------------------------------------------------

class Pending(Exception):
    """A square kernel whose layout only the family can decide."""


def _fits(src: Param, tgt: Param) -> bool:
    try:
        layout_steps(src, tgt)
    except ConversionError:
        return False
    return True


def orient(src: Param, tgt: Param, src_open: bool, tgt_open: bool
           ) -> tuple[list[Step], list[str]]:
    """Steps from ``src`` to ``tgt``'s layout where one side's kernel layout is open (undecided):
    the one layout that fits decides (and a fit note records it); if both fit, ``Pending``."""
    if not src_open and not tgt_open:
        return layout_steps(src, tgt)
    if src_open and tgt_open:
        raise ConversionError("the Conv1D-family kernels of both sides come from state dicts "
                              "without a known layout", tensor=tgt.name,
                              hint="say how the source stores them: " + choose(
                                  'conv1d_layout={"source": "in,out"}',
                                  "--conv1d-layout source=in,out",
                                  "(no spec key: port it alone with --conv1d-layout "
                                  "source=in,out)"))
    side, open_param = ("source", src) if src_open else ("target", tgt)
    fitting = []
    for layout in (IN_OUT, OUT_IN):
        a, b = (replace(src, axes=layout), tgt) if src_open else (src, replace(tgt, axes=layout))
        if _fits(a, b):
            fitting.append((layout, a, b))
    if len(fitting) == 2:
        raise Pending(side)
    if not fitting:
        raise ConversionError(f"shape {src.shape} fits {tgt.shape} in neither (in,out) nor "
                              f"(out,in)", tensor=tgt.name)
    layout, a, b = fitting[0]
    steps, notes = layout_steps(a, b)
    return steps, [fit_note(side, layout, open_param.shape)] + notes


# ---- the square kernels: decided by their family --------------------------------------------

def _evidence(tensors: Iterable[TensorPlan]) -> dict[str, dict[str, int]]:
    """Per side, how many non-square kernels fit only (in,out) and only (out,in)."""
    out: dict[str, dict[str, int]] = {s: {"in,out": 0, "out,in": 0} for s in SIDES}
    for t in tensors:
        for n in t.notes:
            m = _FIT.match(n)
            if m:
                out[m.group(1)][m.group(2)] += 1
    return out


def _family_names(graph: ParamGraph) -> str:
    return next((l.attrs[FAMILY] for l in graph.layers if FAMILY in l.attrs), "")


def _decided_plan(ctx: PlanContext, t: TensorPlan, side: str, layout: tuple[str, ...],
                  n: int) -> TensorPlan:
    src = ctx.source_graph.param(t.sources[0])
    tgt = ctx.target_graph.param(t.target)
    if side == "source":
        src = replace(src, axes=layout)
    else:
        tgt = replace(tgt, axes=layout)
    steps, notes = layout_steps(src, tgt)
    status = "transformed" if any(s.op != "cast" for s in steps) else "transferred"
    return replace(t, status=status, steps=tuple(steps), notes=(
        f"{side} layout ({text(layout)}) inferred from {n} non-square tensors of the same "
        f"family",) + tuple(notes))


def resolve_square(ctx: PlanContext) -> None:
    """Give every pending square kernel the layout its family's non-square kernels agree on."""
    evidence = _evidence(ctx.tensors)
    pending: dict[str, list[int]] = {s: [] for s in SIDES}
    for i, t in enumerate(ctx.tensors):
        m = next((_PENDING.match(n) for n in t.notes if _PENDING.match(n)), None)
        if m:
            pending[m.group(1)].append(i)
    for side in SIDES:
        graph = ctx.source_graph if side == "source" else ctx.target_graph
        names = _family_names(graph)
        counts = evidence[side]
        n = sum(counts.values())
        agreed = [LAYOUTS[k] for k, v in counts.items() if v] if n else []
        if len(agreed) == 1:
            layout = agreed[0]
            for i in pending[side]:
                ctx.tensors[i] = _decided_plan(ctx, ctx.tensors[i], side, layout, n)
            squares = (f"{len(pending[side])} square kernel(s) read as ({text(layout)}); "
                       if pending[side] else "")
            ctx.decisions.append(
                f"{side} Conv1D-style kernels ({names}) of a state dict without module types: "
                f"{squares}layout ({text(layout)}) inferred from {n} non-square tensors of the "
                f"same family")
            continue
        if not pending[side] and not n:
            continue
        why = (f"its non-square tensors disagree ({counts['in,out']} fit (in,out), "
               f"{counts['out,in']} fit (out,in))" if n else
               "no non-square tensor of the family was ported to decide it")
        for i in pending[side]:
            t = ctx.tensors[i]
            ctx.tensors[i] = replace(t, status="new", sources=(), steps=(), notes=(
                f"square kernel left new: the layout of the {side} Conv1D family is undecided "
                f"({why})",))
        ctx.decisions.append(
            f"{side} Conv1D-style kernels ({names}): {len(pending[side])} square kernel(s) left "
            f"new because {why}; a square matrix is never decided by shape alone: say how they are "
            f"stored with {option(OPTION, 'in,out')} (Hugging Face Conv1D) or "
            f"{option(OPTION, 'out,in')} (nn.Linear)")
