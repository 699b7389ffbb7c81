"""A tiny GPT-2 in two spellings, plain torch only.

``hf_gpt2``: Hugging Face's GPT-2 layout and names (``transformer.wte``, ``h.{i}.attn.c_attn`` ...)
with its ``Conv1D`` module, whose weight is stored (in, out). Saved without ``lm_head.weight``
(tied to ``wte``), exactly as HF writes ``model.safetensors``.

``gpt_fused`` / ``gpt_split``: the same network written with ``nn.Linear`` (weights (out, in)),
other names, a fused ``qkv`` Linear(E, 3E) or separate q/k/v Linear(E, E), and a head tied to
``tok_emb``. Both compute exactly what ``hf_gpt2`` computes when given its weights.
"""
import math

import torch
from torch import nn

VOCAB, N_POS, N_EMBD, N_HEAD, N_LAYER = 50, 16, 32, 4, 2
GPT2_EPS = 1e-5


def example_input():
    return torch.arange(12).remainder(VOCAB).reshape(2, 6)


def _gelu(x):
    """GPT-2's tanh GELU ("gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _attend(q, k, v, n_head):
    b, t, e = q.shape
    q, k, v = (z.view(b, t, n_head, e // n_head).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(e // n_head)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, e)


# ---- Hugging Face layout -----------------------------------------------------------------------

class Conv1D(nn.Module):
    """HF's ``transformers.pytorch_utils.Conv1D``: a linear layer with weight (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(
            *x.shape[:-1], self.nf)


class HFAttention(nn.Module):
    def __init__(self, e, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = Conv1D(3 * e, e)
        self.c_proj = Conv1D(e, e)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=-1)
        return self.c_proj(_attend(q, k, v, self.n_head))


class HFMLP(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.c_fc = Conv1D(4 * e, e)
        self.c_proj = Conv1D(e, 4 * e)

    def forward(self, x):
        return self.c_proj(_gelu(self.c_fc(x)))


class HFBlock(nn.Module):
    def __init__(self, e, n_head, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(e, eps=eps)
        self.attn = HFAttention(e, n_head)
        self.ln_2 = nn.LayerNorm(e, eps=eps)
        self.mlp = HFMLP(e)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class HFTransformer(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, N_EMBD)
        self.wpe = nn.Embedding(N_POS, N_EMBD)
        self.h = nn.ModuleList(HFBlock(N_EMBD, N_HEAD, eps) for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD, eps=eps)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """``transformer.*`` + ``lm_head`` sharing ``wte``'s weight (HF ties them)."""

    def __init__(self, eps=GPT2_EPS):
        super().__init__()
        self.transformer = HFTransformer(eps)
        self.lm_head = nn.Linear(N_EMBD, VOCAB, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))


def hf_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel().eval()


# ---- nn.Linear layout, other names --------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, e, n_head, fused):
        super().__init__()
        self.n_head, self.fused = n_head, fused
        if fused:
            self.qkv = nn.Linear(e, 3 * e)
        else:
            self.q, self.k, self.v = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)
        self.proj = nn.Linear(e, e)

    def forward(self, x):
        if self.fused:
            q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        return self.proj(_attend(q, k, v, self.n_head))


class MLP(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(e, 4 * e), nn.Linear(4 * e, e)

    def forward(self, x):
        return self.fc2(_gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, e, n_head, fused, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(e, eps=eps)
        self.attn = Attention(e, n_head, fused)
        self.norm2 = nn.LayerNorm(e, eps=eps)
        self.mlp = MLP(e)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, fused=True, eps=GPT2_EPS):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, N_EMBD)
        self.pos_emb = nn.Embedding(N_POS, N_EMBD)
        self.blocks = nn.ModuleList(Block(N_EMBD, N_HEAD, fused, eps) for _ in range(N_LAYER))
        self.norm = nn.LayerNorm(N_EMBD, eps=eps)
        self.head = nn.Linear(N_EMBD, VOCAB, bias=False)
        self.head.weight = self.tok_emb.weight

    def forward(self, ids):
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def gpt_fused():
    torch.manual_seed(1)
    return GPT(fused=True).eval()


def gpt_split():
    torch.manual_seed(2)
    return GPT(fused=False).eval()


def gpt_fused_eps6():
    """The fused target with LayerNorm eps 1e-6: weights alone cannot make it exact."""
    torch.manual_seed(3)
    return GPT(fused=True, eps=1e-6).eval()
