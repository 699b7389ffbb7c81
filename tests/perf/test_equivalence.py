"""weightmap's port gives the same tensors as the usual hand-written script doing the same port.

The usual script (``benchmarks/gpt_files.USUAL_SCRIPT``) loads the whole Hugging Face GPT-2
checkpoint, builds the target model normally (its factory seeds torch), renames, transposes the
Conv1D weights and saves with safetensors. weightmap builds the target on the meta device and
streams the tensors. Both outputs must hold the same names, dtypes, shapes and bytes.

Tensors that stay new (the ``extra_head`` target's classifier) take, by default, the values of a
normal construction of the target file, so they are compared bit for bit too. With
``new_values="reset"`` the carried-over tensors are still bit-identical, and the new ones are the
head's own ``nn.Linear`` initialisation under weightmap's documented per-module seed.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import weightmap  # noqa: E402


def assert_identical(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype, name
        assert ours[name].shape == theirs[name].shape, name
        assert ours[name].tobytes() == theirs[name].tobytes(), name


@pytest.mark.parametrize("direct_io", [False, True], ids=["page-cache", "direct-io"])
@pytest.mark.parametrize("layout", ["conv1d", "linear"])
def test_port_equals_the_usual_script(tiny_gpt, tmp_path, layout, usual_port, st_arrays,
                                      direct_io, monkeypatch):
    """Both ways of writing (through the page cache, or past it in windows of two blocks that
    cut every tensor here) give the usual script's tensors, and the manifest hashes them."""
    import hashlib

    from weightmap import direct
    monkeypatch.setattr(direct, "WINDOW", 2 * direct.BLOCK)
    run_usual, safetensors_arrays = usual_port, st_arrays
    source = tiny_gpt["source" if layout == "conv1d" else "source_linear"]
    usual = run_usual(tiny_gpt["usual" if layout == "conv1d" else "usual_linear"], source,
                      tiny_gpt["target"], tmp_path / "usual.safetensors")
    report = weightmap.port(source, tiny_gpt["target"], tmp_path / "wm.safetensors",
                            direct_io=direct_io)
    assert len(report.new) == 0
    counts = report.plan.counts()
    assert counts["transformed"] == (4 * 3 if layout == "conv1d" else 0)
    ours = safetensors_arrays(tmp_path / "wm.safetensors")
    assert_identical(ours, safetensors_arrays(usual))
    for name, entry in report.manifest["params"].items():
        assert entry["sha256"] == hashlib.sha256(ours[name].tobytes()).hexdigest(), name


def test_new_tensors_equal_a_normal_construction(tiny_gpt, tmp_path, usual_port, st_arrays):
    run_usual, safetensors_arrays = usual_port, st_arrays
    usual = run_usual(tiny_gpt["usual"], tiny_gpt["source"], tiny_gpt["target_head"],
                      tmp_path / "usual.safetensors")
    report = weightmap.port(tiny_gpt["source"], tiny_gpt["target_head"],
                            tmp_path / "wm.safetensors")
    assert sorted(report.new) == ["head.bias", "head.weight"]
    assert_identical(safetensors_arrays(tmp_path / "wm.safetensors"), safetensors_arrays(usual))


def test_reset_keeps_carried_tensors_and_gives_new_ones_their_own_init(tiny_gpt, tmp_path,
                                                                      usual_port, st_arrays):
    run_usual, safetensors_arrays = usual_port, st_arrays
    from weightmap_torch.materialise import SEED
    usual = safetensors_arrays(run_usual(tiny_gpt["usual"], tiny_gpt["source"],
                                         tiny_gpt["target_head"], tmp_path / "usual.safetensors"))
    weightmap.port(tiny_gpt["source"], tiny_gpt["target_head"], tmp_path / "wm.safetensors",
                   new_values="reset")
    ours = safetensors_arrays(tmp_path / "wm.safetensors")
    new = {"head.weight", "head.bias"}
    assert_identical({k: v for k, v in ours.items() if k not in new},
                     {k: v for k, v in usual.items() if k not in new})
    torch.manual_seed((SEED + zlib.crc32(b"head")) % 2 ** 63)
    own = torch.nn.Linear(32, 7)                      # what resetting that module alone gives
    np.testing.assert_array_equal(ours["head.weight"], own.weight.detach().numpy())
    np.testing.assert_array_equal(ours["head.bias"], own.bias.detach().numpy())
    bound = 1 / np.sqrt(32)                           # nn.Linear's own (kaiming-uniform) range
    assert np.abs(ours["head.weight"]).max() <= bound and ours["head.weight"].std() > bound / 4
    assert not np.array_equal(ours["head.weight"], usual["head.weight"])   # other draws


def test_ported_model_computes_what_the_source_computes(tiny_gpt, tmp_path, st_arrays):
    """The output loads strictly into the target and gives the source model's hidden states
    (the reference is the checkpoint's math written out with numpy)."""
    from safetensors.torch import load_file
    weightmap.port(tiny_gpt["source"], tiny_gpt["target"], tmp_path / "wm.safetensors")
    from weightmap.sources import load_python_object
    model, _ = load_python_object(tiny_gpt["target"])
    model.load_state_dict(load_file(tmp_path / "wm.safetensors"), strict=True)
    ids = torch.tensor([[1, 5, 9, 2]])
    got = model(ids).detach().numpy()
    np.testing.assert_allclose(got, reference_gpt2(st_arrays(tiny_gpt["source"]),
                                                   ids.numpy(), n_head=4), atol=2e-5)


def reference_gpt2(w: dict, ids: np.ndarray, n_head: int) -> np.ndarray:
    """GPT-2's forward in numpy on HF names (Conv1D weights (in, out)), up to ln_f."""
    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w[p + ".weight"] + w[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    t = ids.shape[1]
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:t]
    i = 0
    while f"transformer.h.{i}.ln_1.weight" in w:
        p = f"transformer.h.{i}"
        h = ln(x, p + ".ln_1") @ w[p + ".attn.c_attn.weight"] + w[p + ".attn.c_attn.bias"]
        e = x.shape[-1]
        q, k, v = (h[..., j * e:(j + 1) * e].reshape(1, t, n_head, e // n_head)
                   .transpose(0, 2, 1, 3) for j in range(3))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(e // n_head)
        s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a = a / a.sum(-1, keepdims=True)
        y = (a @ v).transpose(0, 2, 1, 3).reshape(1, t, e)
        x = x + y @ w[p + ".attn.c_proj.weight"] + w[p + ".attn.c_proj.bias"]
        m = gelu(ln(x, p + ".ln_2") @ w[p + ".mlp.c_fc.weight"] + w[p + ".mlp.c_fc.bias"])
        x = x + m @ w[p + ".mlp.c_proj.weight"] + w[p + ".mlp.c_proj.bias"]
        i += 1
    return ln(x, "transformer.ln_f")


LLAMA_TARGET = '''
import torch
from torch import nn

H, I, V, L = 16, 24, 40, 2


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(H, 3 * H, bias=False)
        self.wo = nn.Linear(H, H, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        y = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None],
                                                       is_causal=True)
        return self.wo(y[:, 0])


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_up = nn.Linear(H, 2 * I, bias=False)
        self.w2 = nn.Linear(I, H, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, -1)
        return self.w2(nn.functional.silu(gate) * up)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.RMSNorm(H, eps=1e-5), nn.RMSNorm(H, eps=1e-5)
        self.attn, self.ffn = Attention(), FeedForward()

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, H)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.norm = nn.RMSNorm(H, eps=1e-5)
        self.head = nn.Linear(H, V, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


torch.manual_seed(0)
model = Llama().to(torch.bfloat16)
example_input = torch.zeros(1, 5, dtype=torch.long)
'''


@pytest.mark.parametrize("direct_io", [False, True], ids=["page-cache", "direct-io"])
def test_fused_qkv_and_gate_up_equal_torch_cat_of_the_llama_projections(tmp_path, direct_io,
                                                                          monkeypatch):
    """A Hugging Face Llama checkpoint (bf16) into a target with fused qkv and gate_up: the
    fused tensors are copied file to file part by part (execute.FileSpans); they must be
    what ``torch.cat`` of the projections gives, as the usual script writes them."""
    from safetensors.torch import load_file, save_file

    from weightmap import direct
    if direct_io:
        fd = direct.open_direct(tmp_path / "probe")
        if fd is None:
            pytest.skip("this file system does not do O_DIRECT")
        import os
        os.close(fd)
        monkeypatch.setattr(direct, "WINDOW", direct.BLOCK)
    gen = torch.Generator().manual_seed(3)
    H, I, V, L = 16, 24, 40, 2

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)
    src = {"model.embed_tokens.weight": rand(V, H), "model.norm.weight": rand(H),
           "lm_head.weight": rand(V, H)}
    for i in range(L):
        p = f"model.layers.{i}."
        src.update({p + f"self_attn.{n}_proj.weight": rand(H, H) for n in "qkvo"})
        src.update({p + "mlp.gate_proj.weight": rand(I, H), p + "mlp.up_proj.weight": rand(I, H),
                    p + "mlp.down_proj.weight": rand(H, I), p + "input_layernorm.weight": rand(H),
                    p + "post_attention_layernorm.weight": rand(H)})
    save_file(src, str(tmp_path / "llama.safetensors"))
    (tmp_path / "fused.py").write_text(LLAMA_TARGET)
    out = tmp_path / "out.safetensors"
    weightmap.port(tmp_path / "llama.safetensors", tmp_path / "fused.py", out,
                   direct_io=direct_io)
    got = load_file(str(out))
    for i in range(L):
        p, b = f"model.layers.{i}.", f"blocks.{i}."
        want_qkv = torch.cat([src[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        want_gate_up = torch.cat([src[p + "mlp.gate_proj.weight"], src[p + "mlp.up_proj.weight"]])
        assert torch.equal(got[b + "attn.qkv.weight"].view(torch.int16),
                           want_qkv.view(torch.int16))
        assert torch.equal(got[b + "ffn.gate_up.weight"].view(torch.int16),
                           want_gate_up.view(torch.int16))
        assert torch.equal(got[b + "attn.wo.weight"], src[p + "self_attn.o_proj.weight"])
