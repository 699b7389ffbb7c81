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

    from weightmap.io import direct
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
    from weightmap.reading.modelfile import load_python_object
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



@pytest.mark.parametrize("kind", ["renamed", "fused"])
def test_llama_port_equals_the_scale_benchmarks_usual_script(tmp_path, kind, tiny_llama,
                                                            usual_port, direct_io_or_skip,
                                                            monkeypatch):
    """``benchmarks/scale_bench.py`` at a tiny size: a Hugging Face Llama checkpoint (bf16) into
    the renamed target and into the fused one (qkv and gate_up copied file to file part by
    part, ``execute.FileSpans``), through the page cache and past it in windows of one block:
    the same tensors as the usual script's ``torch.cat``, bit for bit."""
    from weightmap.io import direct
    files = tiny_llama
    theirs = usual_port(files["script"], files["index"], files[kind],
                        tmp_path / "script.safetensors")
    want = _raw_arrays(theirs)
    monkeypatch.setattr(direct, "WINDOW", direct.BLOCK)
    for direct_io in (False, True):
        out = tmp_path / f"wm_{direct_io}.safetensors"
        weightmap.port(files["index"], files[kind], out, direct_io=direct_io)
        assert_identical(_raw_arrays(out), want)


def _raw_arrays(path):
    """{name: bytes as unsigned integers} (bf16 has no numpy dtype of its own)."""
    from safetensors import safe_open
    out = {}
    with safe_open(str(path), "pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            out[name] = t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 \
                else t.numpy()
    return out
