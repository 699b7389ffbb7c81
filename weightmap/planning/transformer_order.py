"""A transformer checkpoint in execution order, and the facts its ``config.json`` states.

Hugging Face writes ``model.safetensors`` through the safetensors library, which stores tensors
sorted by name: ``h.0.attn`` before ``h.0.ln_1``, ``layers.10`` before ``layers.2``,
``lm_head`` before ``model.embed_tokens``. The matcher aligns layers by position, so a
name-sorted checkpoint would pair ``tok`` with ``lm_head`` and ``blocks.2`` with ``layers.10``.
The parts of a transformer have a known vocabulary (``weightmap.arch``, data): when a graph
stored sorted by name holds a stack of numbered blocks whose parts have known roles, its layers
are put in execution order before matching — what runs before the blocks (patch, token,
position and type embeddings, their norm), the blocks by number (natural order), inside each block
by role (norm, q, k, v, o, norm, gate, up, down, norm), then the final norm, pooler and head;
anything else after, in its stored order. The report says so. Names and data do not change.

``config.json`` beside the checkpoint (a Hugging Face folder) is read as JSON data (nothing runs,
at most 1 MiB): ``layer_norm_eps`` / ``layer_norm_epsilon`` go on the LayerNorm layers,
``rms_norm_eps`` on the weight-only norms, which it also says are RMSNorms (a state dict cannot
tell an RMSNorm from a LayerNorm without bias) — ``weightmap.arch.CONFIG_FACTS``.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .. import arch
from ..graph import Layer, ParamGraph

TRUSTED = ("execution", "config")
MAX_CONFIG_BYTES = 1 << 20
NORMS = ("layernorm", "rmsnorm")
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """``layers.10`` after ``layers.2``: numbers compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(text.lower()))


def block_stacks(graph: ParamGraph) -> list[str]:
    """Stacks of numbered blocks (``model.layers``, ``transformer.h``) whose layers show at
    least two different known roles, in order of first appearance."""
    roles: dict[str, set[str]] = {}
    for layer in graph.layers:
        found = arch.split_block(layer.name)
        if found is not None:
            role = arch.block_role(found[2])
            roles.setdefault(found[0], set()).update({role} if role else ())
    return [stack for stack, seen in roles.items() if len(seen) >= 2]


def layer_top_role(layer: Layer) -> str | None:
    """A layer outside the blocks by its name; the model's own tensors (``<root>``: ViT's
    ``cls_token``, ``pos_embed``) by their names."""
    if layer.name == "<root>":
        roles = {arch.top_role(p.name) for p in layer.params}
        return "embed_pos" if "embed_pos" in roles else None
    return arch.top_role(layer.name)


def rank(layer: Layer, position: int, stacks: list[str]) -> tuple:
    """Sort key of a layer in execution order; unknown layers keep their place at the end."""
    found = arch.split_block(layer.name)
    if found is not None and found[0] in stacks:
        stack, index, rest = found
        role = arch.block_role(rest)
        where = arch.BLOCK_ROLES.index(role) if role else len(arch.BLOCK_ROLES)
        return (1, stacks.index(stack), index, where, natural_key(rest), position)
    role = layer_top_role(layer)
    if role is None:
        return (3, 0, 0, 0, (), position)
    where = arch.TOP_ROLES.index(role)
    return (0 if where < arch.TOP_ROLES.index("BLOCKS") else 2, where, 0, 0, (), position)


def name_sorted(graph: ParamGraph) -> bool:
    """Stored sorted by name (the safetensors library's sort, or names in plain sorted order):
    the file's order then says nothing about the model's."""
    names = [l.name for l in graph.layers if l.name != "<root>"]     # grouped where it began
    return bool(graph.meta.get("stored_order")) or (len(names) > 2 and names == sorted(names))


def places_named(graph: ParamGraph, stacks: list[str]) -> bool:
    """Every part of every block has a name that fixes where it runs (``arch.says_its_place``:
    Llama's ``input_layernorm`` / ``post_attention_layernorm``, BERT's
    ``attention.output.LayerNorm``), so the roles give the block's order whatever the file's."""
    for layer in graph.layers:
        found = arch.split_block(layer.name)
        if found is not None and found[0] in stacks and not arch.says_its_place(found[2]):
            return False
    return True


def execution_order(graph: ParamGraph) -> ParamGraph:
    """A transformer graph put in execution order by the roles of its parts, when its file's
    order says nothing (stored sorted by name) or when every block part's name says where it
    runs (a torch state dict in registration order lists Llama's norms after its MLP). Any
    other graph keeps its order: it may be the model's own (a post-LayerNorm block stores
    ``norm1`` after its attention, which the vocabulary cannot know)."""
    if graph.order in TRUSTED:
        return graph
    stacks = block_stacks(graph)
    sorted_by_name = name_sorted(graph)
    if not stacks or not (sorted_by_name or places_named(graph, stacks)):
        return graph
    ranked = sorted(enumerate(graph.layers), key=lambda il: rank(il[1], il[0], stacks))
    layers = tuple(l for _, l in ranked)
    meta = {**graph.meta, "order_from": "names (transformer roles)"}
    if layers == graph.layers:
        return replace(graph, meta=meta)
    stored = graph.meta.get("stored_order") or (
        "sorted by name" if sorted_by_name else f"in {graph.order} order")
    note = (f"{graph.source}: layers put in transformer execution order before matching "
            f"(embeddings, blocks of {', '.join(stacks)} by number and each block's parts by "
            f"role: norm, q, k, v, o, norm, gate, up, down; then final norm and head); the "
            f"file stores them {stored}")
    meta["decisions"] = list(graph.meta.get("decisions", ())) + [note]
    return replace(graph, layers=layers, meta=meta)


def hf_config(graph: ParamGraph) -> Mapping[str, Any]:
    """``config.json`` beside the checkpoint (or in its folder), as data; {} when absent/bad."""
    path = Path(str(graph.source))
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    try:
        if not config.is_file() or config.stat().st_size > MAX_CONFIG_BYTES:
            return {}
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def config_facts(graph: ParamGraph) -> ParamGraph:
    """Norm epsilons (and RMSNorm-ness) from config.json for layers that do not store them."""
    if graph.live is not None or not any(l.op in NORMS for l in graph.layers):
        return graph
    config = hf_config(graph)
    facts = {op: float(config[key]) for key, (op, _attr) in arch.CONFIG_FACTS.items()
             if isinstance(config.get(key), (int, float)) and not isinstance(config[key], bool)}
    if not facts:
        return graph
    layers = tuple(_with_facts(l, facts) for l in graph.layers)
    return replace(graph, layers=layers) if layers != graph.layers else graph


def _with_facts(layer: Layer, facts: Mapping[str, float]) -> Layer:
    if layer.op not in NORMS or "eps" in layer.attrs or "epsilon" in layer.attrs:
        return layer
    op = layer.op
    weight_only = [p.role for p in layer.params] == ["gamma"]
    if "rmsnorm" in facts and weight_only and layer.attrs.get("inferred"):
        op = "rmsnorm"                       # the config says the weight-only norms are RMS
    if op not in facts:
        return layer
    attrs = {**layer.attrs, "eps": facts[op], "eps_from": "config.json"}
    if op != layer.op:
        attrs["op_from"] = "config.json (rms_norm_eps)"
    return replace(layer, op=op, attrs=attrs)


def transformer_order(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
                      ) -> tuple[ParamGraph, ParamGraph]:
    return (config_facts(execution_order(source)), config_facts(execution_order(target)))
