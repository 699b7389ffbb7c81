"""Tied token embedding and lm_head: one tensor, two names, and checkpoints that store one.

Hugging Face GPT-2 ties ``lm_head.weight`` to ``transformer.wte.weight`` and writes only
``wte`` to ``model.safetensors``. A target whose head is a separate parameter (not tied in the
target) would keep a random head; this pass gives it the token embedding the source uses, with
the note "tied", when the source stores no head of its own. Within the target, a tie between two
names is followed both ways (the planner follows tied → owner; here owner ← tied), and a target
tie fed by two different source tensors is reported: one tensor cannot hold both.
"""
from __future__ import annotations

import re
from dataclasses import replace

from ...graph import Layer, ParamGraph
from ...transform import Step
from .base import PlanContext
from .transformer_layout import leaf

HEAD_LEAVES = frozenset({"lm_head", "head", "output", "logits", "decoder", "embed_out",
                         "out_head"})
_TOKEN_HINT = re.compile(r"(^|[._])(wte|tok|token|tokens|word|words|embed_tokens|"
                         r"word_embeddings|tok_embeddings|tok_emb|shared)($|[._])", re.I)


def _embeddings(graph: ParamGraph) -> list[Layer]:
    return [l for l in graph.layers if l.op in ("embedding", "dense") and len(l.params) == 1
            and len(l.params[0].shape) == 2 and leaf(l.name) not in HEAD_LEAVES
            and (l.op == "embedding" or l.params[0].role == "embeddings")]


def _source_heads(graph: ParamGraph, shape: tuple[int, ...]) -> list[Layer]:
    return [l for l in graph.layers if leaf(l.name) in HEAD_LEAVES and l.param("kernel")
            is not None and l.param("kernel").shape == shape]


def _token_embedding(ctx: PlanContext, shape: tuple[int, ...]) -> Layer | None:
    found = [l for l in _embeddings(ctx.source_graph) if l.params[0].shape == shape]
    if len(found) > 1:
        found = [l for l in found if _TOKEN_HINT.search(l.name)]
    return found[0] if len(found) == 1 else None


def _head_from_embedding(ctx: PlanContext, index: dict[str, int]) -> None:
    for layer in ctx.target_graph.layers:
        kernel = layer.param("kernel")
        if (layer.op != "dense" or leaf(layer.name) not in HEAD_LEAVES or kernel is None
                or kernel.axes != ("out", "in") or kernel.tied_to):
            continue
        plan = ctx.tensors[index[kernel.name]]
        if plan.status != "new" or plan.sources:
            continue
        if _source_heads(ctx.source_graph, kernel.shape) or \
                _source_heads(ctx.source_graph, kernel.shape[::-1]):
            continue          # the source has a head of its own: matching decided about it
        emb = _token_embedding(ctx, kernel.shape)          # (vocab, dim) == (out, in)
        if emb is None:
            continue
        src = emb.params[0]
        steps = plan_steps(src.dtype, kernel.dtype)
        ctx.tensors[index[kernel.name]] = replace(
            plan, status="transferred" if not steps else "transformed", sources=(src.name,),
            steps=steps, notes=(f"tied: the source stores one tensor for {emb.name} and its "
                                f"lm_head; {kernel.name} takes {src.name}",),
            match={"source_layer": emb.name, "strategy": "tied", "score": 1.0})
        ctx.decisions.append(f"{layer.name}: the source stores no lm_head (tied to "
                             f"{emb.name}); its weight takes {src.name}")


def plan_steps(src_dtype: str, tgt_dtype: str) -> tuple[Step, ...]:
    return (Step("cast", {"dtype": tgt_dtype}),) if src_dtype != tgt_dtype else ()


def _owner_from_tied(ctx: PlanContext, index: dict[str, int]) -> None:
    """An owner left new whose tied name was planned: the owner gets the same plan."""
    for p in ctx.target_graph.params():
        if not p.tied_to or p.tied_to not in index or p.name not in index:
            continue
        mine, owner = ctx.tensors[index[p.name]], ctx.tensors[index[p.tied_to]]
        if owner.status == "new" and not owner.sources and mine.status != "new":
            ctx.tensors[index[p.tied_to]] = replace(
                mine, target=owner.target, layer=owner.layer,
                notes=mine.notes + (f"tied to {p.name}",))
        elif owner.status != "new" and mine.status != "new" and owner.sources != mine.sources:
            tied_in_source = _same_source_tensor(ctx.source_graph, owner.sources, mine.sources)
            if not tied_in_source:
                ctx.decisions.append(
                    f"{p.name} is tied to {p.tied_to} in the target (one tensor) but they come "
                    f"from different source tensors ({', '.join(mine.sources)} and "
                    f"{', '.join(owner.sources)}); the written file holds both, loading keeps "
                    f"one")


def _same_source_tensor(graph: ParamGraph, a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if len(a) != 1 or len(b) != 1:
        return False
    pa, pb = graph.param(a[0]), graph.param(b[0])
    return pa.tied_to == pb.name or pb.tied_to == pa.name or \
        (pa.tied_to is not None and pa.tied_to == pb.tied_to)


def tie_heads(ctx: PlanContext) -> None:
    index = ctx.index()
    _head_from_embedding(ctx, index)
    _owner_from_tied(ctx, index)
