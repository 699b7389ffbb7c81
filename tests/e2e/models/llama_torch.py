"""A tiny Llama in three spellings, plain torch only (no ``transformers``).

``hf_llama``: Hugging Face's ``LlamaForCausalLM`` layout and names (``model.embed_tokens``,
``model.layers.{i}.input_layernorm``, ``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm``,
``mlp.{gate,up,down}_proj``, ``model.norm``, ``lm_head``), its RMSNorm (a weight, no bias,
``variance_epsilon``), rotary position embeddings and SwiGLU MLP.

``llama_renamed``: the same network written by hand with Meta's reference names (``tok``,
``blocks.{i}.attn.{wq,wk,wv,wo}``, ``ffn.{w1,w2,w3}`` with w1 the gate, w3 the up projection,
``attn_norm``/``ffn_norm``), torch's ``nn.RMSNorm``, and a forward computing v, then k, then q:
q, k, v, o and w1, w3 have one shape each, so neither shape nor execution order tells them
apart. ``llama_fused``: fused ``qkv`` (3E, E) and ``gate_up`` (2F, E) projections, its own RMSNorm
class. No file defines ``example_input``: each is traced on an input weightmap makes up.
"""
import torch
from torch import nn

VOCAB, DIM, N_HEAD, N_LAYER, HIDDEN = 48, 16, 2, 12, 24
EPS = 1e-6
THETA = 10000.0


def rope(x):
    """Rotary position embedding, Hugging Face's rotate_half convention; x: (b, h, t, d)."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / THETA ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    cos, sin = (torch.cat([f(angles)] * 2, -1) for f in (torch.cos, torch.sin))
    half = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + half * sin


def attend(q, k, v):
    b, t, e = q.shape
    q, k, v = (z.view(b, t, N_HEAD, e // N_HEAD).transpose(1, 2) for z in (q, k, v))
    q, k = rope(q), rope(k)
    scores = q @ k.transpose(-1, -2) / (e // N_HEAD) ** 0.5
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, e)


def rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


# ---- Hugging Face layout -----------------------------------------------------------------------

class LlamaRMSNorm(nn.Module):
    def __init__(self, dim, eps=EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x):
        return rms(x, self.weight, self.variance_epsilon)


class LlamaAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(DIM, DIM, bias=False)
        self.k_proj = nn.Linear(DIM, DIM, bias=False)
        self.v_proj = nn.Linear(DIM, DIM, bias=False)
        self.o_proj = nn.Linear(DIM, DIM, bias=False)

    def forward(self, x):
        return self.o_proj(attend(self.q_proj(x), self.k_proj(x), self.v_proj(x)))


class LlamaMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(DIM, HIDDEN, bias=False)
        self.up_proj = nn.Linear(DIM, HIDDEN, bias=False)
        self.down_proj = nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = LlamaAttention()
        self.mlp = LlamaMLP()
        self.input_layernorm = LlamaRMSNorm(DIM)
        self.post_attention_layernorm = LlamaRMSNorm(DIM)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(LlamaDecoderLayer() for _ in range(N_LAYER))
        self.norm = LlamaRMSNorm(DIM)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = LlamaModel()
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, ids):
        return self.lm_head(self.model(ids))


# ---- hand-written: Meta's names, v computed first ----------------------------------------------

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(DIM, DIM, bias=False)
        self.wk = nn.Linear(DIM, DIM, bias=False)
        self.wv = nn.Linear(DIM, DIM, bias=False)
        self.wo = nn.Linear(DIM, DIM, bias=False)

    def forward(self, x):
        v = self.wv(x)
        k = self.wk(x)
        return self.wo(attend(self.wq(x), k, v))


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Linear(DIM, HIDDEN, bias=False)
        self.w2 = nn.Linear(HIDDEN, DIM, bias=False)
        self.w3 = nn.Linear(DIM, HIDDEN, bias=False)

    def forward(self, x):
        up = self.w3(x)
        return self.w2(nn.functional.silu(self.w1(x)) * up)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm = nn.RMSNorm(DIM, eps=EPS)
        self.attn = Attention()
        self.ffn_norm = nn.RMSNorm(DIM, eps=EPS)
        self.ffn = FeedForward()

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Renamed(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.norm = nn.RMSNorm(DIM, eps=EPS)
        self.head = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# ---- hand-written: fused qkv and gate_up -------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms(x, self.weight, self.eps)


class FusedAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM, bias=False)
        self.out = nn.Linear(DIM, DIM, bias=False)

    def forward(self, x):
        return self.out(attend(*self.qkv(x).split(DIM, dim=-1)))


class FusedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_up = nn.Linear(DIM, 2 * HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(nn.functional.silu(gate) * up)


class FusedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = RMSNorm(DIM)
        self.attn = FusedAttention()
        self.norm2 = RMSNorm(DIM)
        self.mlp = FusedMLP()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(FusedBlock() for _ in range(N_LAYER))
        self.final_norm = RMSNorm(DIM)
        self.output = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.final_norm(x))


hf_llama = LlamaForCausalLM
llama_renamed = Renamed
llama_fused = Fused
