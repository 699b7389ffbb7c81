"""A GPT-2 state dict in execution order, and its LayerNorm epsilon from ``config.json``.

Hugging Face writes ``model.safetensors`` through the safetensors library, which stores tensors
sorted by name: ``h.0.attn`` before ``h.0.ln_1``, ``h.10`` before ``h.2``, ``wte`` last. The
matcher aligns layers by position, so a name-sorted GPT-2 would pair ``ln_1`` with a target's
second norm. The GPT-2 module layout is known (architecture as data, below): when a graph not in
execution order follows it, its layers are put in that order before matching, and the report
says so. Names and data do not change.

``config.json`` beside the checkpoint (a Hugging Face folder) holds ``layer_norm_epsilon``; it is
read as JSON data (nothing runs) and stored on the LayerNorm layers as ``attrs["eps"]``.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from ..graph import Layer, ParamGraph
from .base import register_graph_pass

# Module paths of one GPT-2 block, in the order its forward runs them (cross-attention only in
# encoder-decoder configurations).
GPT2_BLOCK = ("ln_1", "attn.c_attn", "attn.q_attn", "attn.c_proj", "ln_cross_attn",
              "crossattention.q_attn", "crossattention.c_attn", "crossattention.c_proj",
              "ln_2", "mlp.c_fc", "mlp.c_proj")
_BLOCK = re.compile(r"^(?P<prefix>(?:.+\.)?)h\.(?P<index>\d+)\.(?P<rest>.+)$")
TRUSTED = ("execution", "config")
_EPS_KEYS = ("layer_norm_epsilon", "layer_norm_eps")
MAX_CONFIG_BYTES = 1 << 20


def gpt2_prefix(graph: ParamGraph) -> str | None:
    """The prefix before ``h.N.`` (``transformer.`` or "") if the graph is GPT-2 shaped."""
    names = {l.name for l in graph.layers}
    for name in names:
        m = _BLOCK.match(name)
        if m and m.group("rest") == "attn.c_attn":
            prefix = m.group("prefix")
            if f"{prefix}wte" in names and f"{prefix}h.{m.group('index')}.mlp.c_fc" in names:
                return prefix
    return None


def gpt2_rank(name: str, prefix: str, index: int) -> tuple:
    """Sort key of a layer in GPT-2 execution order; unknown layers keep their place at the end."""
    top = {f"{prefix}wte": (0, 0), f"{prefix}wpe": (0, 1), f"{prefix}ln_f": (2, 0),
           "lm_head": (3, 0)}
    if name in top:
        return top[name] + (0, index)
    m = _BLOCK.match(name)
    if m and m.group("prefix") == prefix and m.group("rest") in GPT2_BLOCK:
        return (1, int(m.group("index")), GPT2_BLOCK.index(m.group("rest")), index)
    return (4, 0, 0, index)


def execution_order(graph: ParamGraph) -> ParamGraph:
    if graph.order in TRUSTED:
        return graph
    prefix = gpt2_prefix(graph)
    if prefix is None:
        return graph
    ranked = sorted(enumerate(graph.layers), key=lambda il: gpt2_rank(il[1].name, prefix, il[0]))
    layers = tuple(l for _, l in ranked)
    if layers == graph.layers:
        return graph
    stored = graph.meta.get("stored_order") or f"in {graph.order} order"
    note = (f"{graph.source}: layers put in GPT-2 execution order (embeddings, blocks by "
            f"number, ln_f, lm_head) before matching; the file stores them {stored}")
    decisions = list(graph.meta.get("decisions", ())) + [note]
    return replace(graph, layers=layers, meta={**graph.meta, "decisions": decisions})


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


def config_eps(graph: ParamGraph) -> ParamGraph:
    """LayerNorm epsilon from config.json for layers that do not store one."""
    if graph.live is not None or gpt2_prefix(graph) is None:
        return graph
    config = hf_config(graph)
    eps = next((config[k] for k in _EPS_KEYS if isinstance(config.get(k), (int, float))
                and not isinstance(config.get(k), bool)), None)
    if eps is None:
        return graph
    layers = tuple(_with_eps(l, float(eps)) for l in graph.layers)
    return replace(graph, layers=layers)


def _with_eps(layer: Layer, eps: float) -> Layer:
    if layer.op != "layernorm" or "eps" in layer.attrs or "epsilon" in layer.attrs:
        return layer
    return replace(layer, attrs={**layer.attrs, "eps": eps, "eps_from": "config.json"})


@register_graph_pass("gpt2_order")
def gpt2_order(source: ParamGraph, target: ParamGraph, options: Mapping[str, Any]
               ) -> tuple[ParamGraph, ParamGraph]:
    return (config_eps(execution_order(source)), config_eps(execution_order(target)))
