"""Architecture facts as data: what the usual names of a transformer's parts mean.

Checkpoints of the same architecture written by different code share no names
(``model.layers.3.self_attn.q_proj``, ``blocks.3.attn.wq``, ``encoder.layer.3.attention.self.
query``), but their parts come from one small vocabulary. This module is that vocabulary, as
tables; code elsewhere asks it questions:

* ``role_of(name)`` — the role of a layer inside a transformer block (``q``, ``k``, ``v``,
  ``qkv``, ``o``, ``gate``, ``up``, ``gate_up``, ``down`` and the norms around them) or outside
  (token/position embeddings, final norm, head), from the trailing parts of its name;
* ``BLOCK_ROLES`` / ``TOP_ROLES`` — the order a block, and a whole model, run those parts in;
* ``FUSED`` — fused projections and the separate ones they stack (``qkv`` = ``q, k, v`` on the
  out axis; ``gate_up`` = ``gate, up``);
* ``CONV1D_LEAVES`` — the layers Hugging Face writes as ``Conv1D`` (kernels stored (in, out));
* ``CONFIG_FACTS`` — ``config.json`` keys (Hugging Face) and which layers they describe;
* ``POSITION_GRIDS`` / ``PREFIX_TOKENS`` — a ViT's position embeddings and the class,
  distillation and register tokens ahead of its grid (``--adapt pos_embed``).

A name matches an entry when its last dotted parts equal the entry (case-insensitive); the
entry with the most parts wins (``attention.output.dense`` is the attention's output projection,
``output.dense`` the MLP's). A name nothing matches has no role: nothing is guessed.
"""
from __future__ import annotations

import re
from functools import lru_cache

_ATTN = ("attn", "attention", "self_attn", "self_attention", "attention.output", "mha")
_CROSS = ("crossattention", "cross_attn", "cross_attention", "encoder_attn")
_MLP = ("mlp", "ffn", "feed_forward", "feedforward", "ff")


def _under(parents: tuple[str, ...], leaves: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{p}.{leaf}" for p in parents for leaf in leaves)


# Roles inside one block, in the order the block runs them.
BLOCK_ROLES = ("norm_attn", "q", "k", "v", "qkv", "o", "norm_post_attn", "norm_cross", "cross_q",
               "cross_k", "cross_v", "cross_qkv", "cross_o", "norm_post_cross", "norm_mid",
               "norm_mlp", "gate", "up", "gate_up", "down", "norm_out")

_BLOCK_NAMES: dict[str, tuple[str, ...]] = {
    "norm_attn": ("input_layernorm", "ln_1", "ln1", "norm1", "attention_norm", "attn_norm",
                  "layernorm_before", "pre_attention_layernorm"),
    "q": ("q", "q_proj", "query", "wq", "to_q", "q_lin", "q_attn"),
    "k": ("k", "k_proj", "key", "wk", "to_k", "k_lin", "k_attn"),
    "v": ("v", "v_proj", "value", "wv", "to_v", "v_lin", "v_attn"),
    "qkv": ("qkv", "c_attn", "qkv_proj", "wqkv", "in_proj", "to_qkv"),
    "o": ("o", "o_proj", "out_proj", "wo", "to_out", "out_lin")
         + _under(_ATTN + _CROSS, ("proj", "c_proj", "out", "dense"))
         + _under(_CROSS, ("output.dense",)),
    "norm_post_attn": ("attention.output.layernorm",),
    "norm_cross": ("ln_cross_attn", "cross_attn_norm", "cross_attention_norm"),
    "norm_post_cross": _under(_CROSS, ("output.layernorm",)),
    "norm_mid": ("post_attention_layernorm", "ln_2", "ln2", "norm2", "ffn_norm", "mlp_norm",
                 "layernorm_after"),
    "norm_mlp": ("pre_feedforward_layernorm",),
    "gate": ("gate_proj", "gate", "w1"),
    "up": ("up_proj", "up", "w3", "fc1", "lin1", "fc_in", "c_fc", "dense_h_to_4h",
           "intermediate.dense", "densereludense.wi"),
    "gate_up": ("gate_up_proj", "gate_up", "w13", "w1_w3"),
    "down": ("down_proj", "down", "w2", "fc2", "lin2", "fc_out", "dense_4h_to_h",
             "output.dense", "densereludense.wo") + _under(_MLP, ("c_proj", "proj", "out",
                                                                  "dense")),
    "norm_out": ("output.layernorm", "ln_3", "norm3", "post_feedforward_layernorm"),
}

# Leaf names of Hugging Face Conv1D layers (GPT-2, OpenAI GPT, ImageGPT, DecisionTransformer):
# a GPT-2 block's attention and MLP, whose kernels are stored (in, out).
CONV1D_LEAVES = ("c_attn", "q_attn", "c_proj", "c_fc")

# Norm names that say where the norm runs whatever order a file stores it in (a norm called
# ``norm1`` or ``ln_1`` may run before its attention or, post-LN, after it: only the file's
# order tells). A block whose norms all have such names can be put in execution order even from
# a file in registration order (a torch state dict registers Llama's norms after its MLP).
POSITIONAL_NORMS = ("input_layernorm", "pre_attention_layernorm", "post_attention_layernorm",
                    "attention.output.layernorm", "output.layernorm", "layernorm_before",
                    "layernorm_after", "pre_feedforward_layernorm", "post_feedforward_layernorm")

# Roles outside the blocks: before them, then after them, in this order.
TOP_ROLES = ("embed_patch", "embed_tokens", "embed_pos", "embed_type", "embed_norm",
             "BLOCKS", "final_norm", "pooler", "head")
_TOP_NAMES: dict[str, tuple[str, ...]] = {
    "embed_patch": ("patch_embed", "patch_embed.proj", "patch_embeddings.projection",
                    "conv_proj", "to_patch_embedding"),
    "embed_tokens": ("embed_tokens", "wte", "word_embeddings", "tok_embeddings", "tok_emb",
                     "tok", "token_embedding", "token_embeddings", "embed", "shared"),
    "embed_pos": ("wpe", "position_embeddings", "pos_emb", "pos_embed", "pos_embedding",
                  "embed_positions", "position_embedding"),
    "embed_type": ("token_type_embeddings", "type_emb", "segment_embedding", "seg_emb"),
    "embed_norm": ("embeddings.layernorm", "emb_ln", "ln_emb", "embed_norm", "emb_norm",
                   "embedding_norm"),
    "final_norm": ("norm", "ln_f", "final_layernorm", "norm_f", "final_norm", "layernorm",
                   "final_layer_norm"),
    "pooler": ("pooler", "pooler.dense"),
    "head": ("lm_head", "head", "classifier", "output", "embed_out", "out_head", "logits",
             "score", "fc"),
}

# Fused projections and the separate ones they stack on their out axis, in stacking order.
FUSED = {"qkv": ("q", "k", "v"), "gate_up": ("gate", "up")}

# Absolute position embeddings over a 2-D grid of patches, ``(1, prefix + h·w, d)`` (a ViT's
# own tensors, not an embedding layer's table), and the tokens that may come before the grid.
POSITION_GRIDS = ("pos_embed", "position_embeddings", "pos_embedding", "absolute_pos_embed")
PREFIX_TOKENS = ("cls_token", "dist_token", "reg_token", "register_tokens")

# Hugging Face config.json keys and the layers they describe: key -> (op, attribute).
# ``rms_norm_eps`` also says the model's weight-only norms are RMSNorms.
CONFIG_FACTS = {"rms_norm_eps": ("rmsnorm", "eps"), "layer_norm_eps": ("layernorm", "eps"),
                "layer_norm_epsilon": ("layernorm", "eps")}

# A block: a numbered child of a stack (``model.layers.3.``, ``h.3.``, ``encoder.layer.3.``).
_BLOCK = re.compile(r"^(?P<stack>(?:[^.]+\.)*?[A-Za-z_]\w*)\.(?P<index>\d+)\.(?P<rest>.+)$")


def _table(names: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for role, entries in names.items():
        for entry in entries:
            out.setdefault(tuple(entry.lower().split(".")), role)
    return out


_BLOCK_TABLE = _table(_BLOCK_NAMES)
_TOP_TABLE = _table(_TOP_NAMES)
_LONGEST = max(len(k) for k in (*_BLOCK_TABLE, *_TOP_TABLE))


def _lookup(parts: tuple[str, ...], table: dict[tuple[str, ...], str]) -> str | None:
    for n in range(min(_LONGEST, len(parts)), 0, -1):
        role = table.get(parts[-n:])
        if role is not None:
            return role
    return None


@lru_cache(maxsize=65536)
def block_role(rest: str) -> str | None:
    """The role of a layer inside a block, from its path below the block (``self_attn.q_proj``
    → ``q``); a projection under a cross-attention parent is ``cross_q`` ...; None if unknown."""
    parts = tuple(p for p in rest.lower().split(".") if p)
    role = _lookup(parts, _BLOCK_TABLE)
    if role in ("q", "k", "v", "qkv", "o") and any(p in _CROSS for p in parts[:-1]):
        return f"cross_{role}"
    return role


def says_its_place(rest: str) -> bool:
    """A block part whose name fixes where it runs: anything but a norm, or a norm named in
    ``POSITIONAL_NORMS``."""
    role = block_role(rest)
    if role is None or not role.startswith("norm"):
        return role is not None
    parts = tuple(p for p in rest.lower().split(".") if p)
    return any(parts[-len(e):] == e for e in _POSITIONAL)


_POSITIONAL = tuple(tuple(n.split(".")) for n in POSITIONAL_NORMS)


@lru_cache(maxsize=65536)
def split_block(name: str) -> tuple[str, int, str] | None:
    """``model.layers.3.self_attn.q_proj`` → (``model.layers``, 3, ``self_attn.q_proj``)."""
    m = _BLOCK.match(name)
    return (m.group("stack"), int(m.group("index")), m.group("rest")) if m else None


def top_role(name: str) -> str | None:
    """The role of a layer outside the blocks (``model.embed_tokens`` → ``embed_tokens``)."""
    return _lookup(tuple(p for p in name.lower().split(".") if p), _TOP_TABLE)


def role_of(name: str) -> str | None:
    """A layer's role: inside a block if its name has a block index, else outside (or, for a
    model of one unnumbered block, ``attn.q``, inside)."""
    block = split_block(name)
    return block_role(block[2]) if block else top_role(name) or block_role(name)


def fused_kind(role: str | None) -> str | None:
    """``qkv`` / ``gate_up`` for a fused role (cross-attention's too), else None."""
    base = role.removeprefix("cross_") if role else None
    return base if base in FUSED else None
