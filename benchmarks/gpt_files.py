"""The benchmark's files: a GPT-2-shaped checkpoint in Hugging Face's safetensors layout, a torch
target model file in another spelling, and the "usual script" that ports one into the other.

Shared by ``port_bench.py`` (GPT-2 medium, ~1.4 GB) and ``tests/perf`` (a tiny configuration).

The checkpoint is what ``GPT2LMHeadModel.save_pretrained`` writes: ``transformer.*`` names, the
``Conv1D`` weights of attention and MLP stored (in, out), ``lm_head.weight`` left out because it is
tied to ``transformer.wte.weight``, tensors in the safetensors library's order. With
``layout="linear"`` the Conv1D weights are stored (out, in) instead, as an ``nn.Linear`` would
hold them (for a pipeline without the Conv1D layout decision).

The target is a GPT backbone written with ``nn.Linear`` (weights (out, in)), a fused ``qkv``
Linear(E, 3E) and other names (``tok_emb``, ``blocks.N.norm1`` ...); ``extra_head=True`` adds an
untied classifier ``head`` the checkpoint has no counterpart for (it stays new).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    vocab: int = 50257
    n_positions: int = 1024
    n_embd: int = 1024
    n_layer: int = 24
    n_head: int = 16

    def tensor_specs(self, layout: str = "conv1d") -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every tensor of the checkpoint, in model order."""
        e = self.n_embd

        def conv(n_in: int, n_out: int) -> tuple[int, int]:
            return (n_in, n_out) if layout == "conv1d" else (n_out, n_in)

        specs = [("transformer.wte.weight", (self.vocab, e)),
                 ("transformer.wpe.weight", (self.n_positions, e))]
        for i in range(self.n_layer):
            p = f"transformer.h.{i}"
            specs += [(f"{p}.ln_1.weight", (e,)), (f"{p}.ln_1.bias", (e,)),
                      (f"{p}.attn.c_attn.weight", conv(e, 3 * e)),
                      (f"{p}.attn.c_attn.bias", (3 * e,)),
                      (f"{p}.attn.c_proj.weight", conv(e, e)), (f"{p}.attn.c_proj.bias", (e,)),
                      (f"{p}.ln_2.weight", (e,)), (f"{p}.ln_2.bias", (e,)),
                      (f"{p}.mlp.c_fc.weight", conv(e, 4 * e)), (f"{p}.mlp.c_fc.bias", (4 * e,)),
                      (f"{p}.mlp.c_proj.weight", conv(4 * e, e)),
                      (f"{p}.mlp.c_proj.bias", (e,))]
        return specs + [("transformer.ln_f.weight", (e,)), ("transformer.ln_f.bias", (e,))]

    def nbytes(self) -> int:
        total = 0
        for _, shape in self.tensor_specs():
            n = 1
            for d in shape:
                n *= d
            total += 4 * n
        return total


GPT2_MEDIUM = Config()
TINY = Config(vocab=61, n_positions=16, n_embd=32, n_layer=3, n_head=4)


def make_checkpoint(path: Path, cfg: Config, layout: str = "conv1d", seed: int = 0) -> None:
    """Write a random float32 checkpoint with torch + safetensors (GPT-2's init scales)."""
    import torch
    from safetensors.torch import save_file
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in cfg.tensor_specs(layout):
        if name.endswith(".bias") or (".ln_" in name or "ln_f" in name):
            base = 1.0 if name.endswith(".weight") else 0.0
            state[name] = base + 0.02 * torch.randn(shape, generator=gen)
        else:
            state[name] = 0.02 * torch.randn(shape, generator=gen)
    save_file(state, str(path), metadata={"format": "pt"})


TARGET_TEMPLATE = '''"""A GPT backbone: nn.Linear layers (weights (out, in)), a fused qkv projection."""
import math

import torch
from torch import nn

CONFIG = {config}
EXTRA_HEAD = {extra_head}


class Attention(nn.Module):
    def __init__(self, e, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(e, 3 * e)
        self.proj = nn.Linear(e, e)

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = (z.view(b, t, self.n_head, e // self.n_head).transpose(1, 2)
                   for z in self.qkv(x).split(e, dim=-1))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, e))


class Block(nn.Module):
    def __init__(self, e, n_head):
        super().__init__()
        self.norm1 = nn.LayerNorm(e)
        self.attn = Attention(e, n_head)
        self.norm2 = nn.LayerNorm(e)
        self.fc1 = nn.Linear(e, 4 * e)
        self.fc2 = nn.Linear(4 * e, e)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, n_positions, n_embd, n_layer, n_head):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, n_embd)
        self.pos_emb = nn.Embedding(n_positions, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.norm = nn.LayerNorm(n_embd)
        if EXTRA_HEAD:
            self.head = nn.Linear(n_embd, 7)

    def forward(self, ids):
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x[:, -1]) if EXTRA_HEAD else x


def model():
    torch.manual_seed(0)
    return GPT(**CONFIG).eval()


def example_input():
    return torch.zeros(1, 8, dtype=torch.long)
'''


def write_target(path: Path, cfg: Config, extra_head: bool = False) -> None:
    config = {k: v for k, v in asdict(cfg).items()}
    path.write_text(TARGET_TEMPLATE.format(config=json.dumps(config), extra_head=extra_head),
                    encoding="utf-8")


# The hand-written port most people write: load everything, build the target (random init),
# rename and transpose, load_state_dict, save. Run as its own process by the benchmark.
USUAL_SCRIPT = '''"""The usual port script: python usual_port.py SOURCE TARGET.py OUT.safetensors"""
import importlib.util
import sys

import torch
from safetensors.torch import load_file, save_file

LAYOUT = "{layout}"
src_path, target_py, out_path = sys.argv[1:4]

sd = load_file(src_path)                                   # the whole checkpoint in memory
spec = importlib.util.spec_from_file_location("target_model", target_py)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.model()                                     # random init of every parameter

RENAME = {{"ln_1": "norm1", "ln_2": "norm2", "attn.c_attn": "attn.qkv",
          "attn.c_proj": "attn.proj", "mlp.c_fc": "fc1", "mlp.c_proj": "fc2"}}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
new = {{}}
for name, tensor in sd.items():
    if LAYOUT == "conv1d" and name.endswith(CONV1D):       # HF Conv1D stores (in, out)
        tensor = tensor.t()
    name = name.replace("transformer.wte", "tok_emb").replace("transformer.wpe", "pos_emb")
    name = name.replace("transformer.ln_f", "norm").replace("transformer.h.", "blocks.")
    for old, repl in RENAME.items():
        name = name.replace(old, repl)
    new[name] = tensor
missing, unexpected = model.load_state_dict(new, strict=False)
assert not unexpected, unexpected
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, out_path,
          metadata={{"format": "pt"}})
'''


def write_usual_script(path: Path, layout: str = "conv1d") -> None:
    path.write_text(USUAL_SCRIPT.format(layout=layout), encoding="utf-8")
