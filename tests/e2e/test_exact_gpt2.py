"""A GPT-2 checkpoint as Hugging Face writes it (Conv1D kernels stored (in, out), square
``attn.c_proj``, no ``lm_head.weight``, tensors sorted by name) ported into GPTs written with
``nn.Linear``: fused qkv, separate q/k/v, and back into the Conv1D model. Judged by the logits."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.api import plan as make_plan  # noqa: E402

MODELS = Path(__file__).parent / "models" / "gpt_torch.py"
RTOL = 1e-5


def _randomise(model, seed):
    """Seeded weights with non-trivial biases and LayerNorm affines."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if p.ndim == 1 else 0.2
            p.copy_(torch.randn(p.shape, generator=gen) * scale + (1.0 if "ln" in name and
                                                                    name.endswith("weight")
                                                                    else 0.0))
    return model


def _model(name):
    return weightmap.read(f"{MODELS}:{name}").live


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """model.safetensors as HF saves GPT-2: wte only (lm_head tied), name-sorted tensors."""
    model = _randomise(_model("hf_gpt2"), seed=0)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    folder = tmp_path_factory.mktemp("gpt2")
    path = folder / "model.safetensors"
    save_file(state, path, metadata={"format": "pt"})
    ids = torch.tensor([[3, 14, 15, 9, 2, 6, 5, 35], [8, 9, 7, 9, 3, 2, 38, 4]])
    with torch.no_grad():
        logits = model(ids).numpy()
    assert np.abs(logits).max() > 1e-2
    return path, ids, logits


def _ported_logits(target, out, ids):
    model = _model(target)
    model.load_state_dict(load_file(out), strict=True)
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()   # still tied
    with torch.no_grad():
        return model(ids).numpy()


def _rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_hf_safetensors_into_fused_linear_gpt(hf_checkpoint, tmp_path, proven):
    path, ids, expected = hf_checkpoint
    # the state dict alone: its Conv1D layout and its order are inferred from names and shapes
    alone = weightmap.plan(path, f"{MODELS}:gpt_fused")
    planned = {t.target: t for t in alone.tensors}
    for i in range(2):
        # square (E, E) attn.c_proj: decided by its family, transposed like the others
        proj = planned[f"blocks.{i}.attn.proj.weight"]
        assert proj.sources == (f"transformer.h.{i}.attn.c_proj.weight",)
        assert [s.op for s in proj.steps] == ["transpose"]
        assert "source layout (in,out) inferred from 6 non-square tensors of the same family" \
            in proj.notes
        assert any(n.startswith("source kernel stored (in,out): the only layout that fits")
                   for n in planned[f"blocks.{i}.attn.qkv.weight"].notes)
    assert any("layout (in,out) inferred from 6 non-square tensors of the same family" in d
               for d in alone.decisions)
    assert any("layers put in transformer execution order" in d for d in alone.decisions)
    # with the model that made it: its Conv1D modules and execution order say so
    out = tmp_path / "gpt.safetensors"
    report = weightmap.port(path, f"{MODELS}:gpt_fused", out, verify=True,
                            source_model=f"{MODELS}:hf_gpt2")
    proven(report)
    assert not report.new and not report.unused and not report.mismatched
    assert _rel(_ported_logits("gpt_fused", out, ids), expected) <= RTOL
    man = report.manifest["params"]
    for i in range(2):
        proj = man[f"blocks.{i}.attn.proj.weight"]
        assert proj["source"] == [f"transformer.h.{i}.attn.c_proj.weight"]
        assert [t["op"] for t in proj["transforms"]] == ["transpose"]
        assert "source layout (in,out) from module type Conv1D" in proj["notes"]
    assert man["head.weight"]["source"] == ["transformer.wte.weight"]
    assert any("tied" in n for n in man["head.weight"]["notes"])
    assert not any("inferred" in d or "execution order" in d for d in report.decisions)


def test_hf_safetensors_into_split_qkv_gpt(hf_checkpoint, tmp_path, proven):
    path, ids, expected = hf_checkpoint
    out = tmp_path / "gpt_split.safetensors"
    report = weightmap.port(path, f"{MODELS}:gpt_split", out, verify=True,
                            source_model=f"{MODELS}:hf_gpt2")
    # one fused c_attn against separate q, k, v: compared against their outputs side by side
    result = proven(report)
    assert result.layers[3].note == ("the outputs of blocks.0.attn.q, blocks.0.attn.k, "
                                     "blocks.0.attn.v side by side")
    assert not report.new and not report.unused
    assert _rel(_ported_logits("gpt_split", out, ids), expected) <= RTOL
    man = report.manifest["params"]
    k = man["blocks.1.attn.k.weight"]
    assert k["source"] == ["transformer.h.1.attn.c_attn.weight"]
    assert k["transforms"] == [{"op": "slice", "axis": 1, "start": 32, "stop": 64},
                               {"op": "transpose", "perm": [1, 0]}]
    assert man["blocks.1.attn.v.bias"]["transforms"] == [
        {"op": "slice", "axis": 0, "start": 64, "stop": 96}]
    # the source model's Conv1D modules say how c_attn and c_proj store their kernels
    assert "source layout (in,out) from module type Conv1D" in \
        man["blocks.0.attn.proj.weight"]["notes"]


def test_live_hf_model_layout_from_module_type(hf_checkpoint, tmp_path):
    """The source model itself (module type Conv1D) decides the layout, not the family."""
    _, ids, expected = hf_checkpoint
    source = _randomise(_model("hf_gpt2"), seed=0)
    out = tmp_path / "gpt_live.safetensors"
    report = weightmap.port(source, f"{MODELS}:gpt_fused", out)
    assert not report.new and not report.unused
    assert _rel(_ported_logits("gpt_fused", out, ids), expected) <= RTOL
    proj = report.manifest["params"]["blocks.0.attn.proj.weight"]
    assert "source layout (in,out) from module type Conv1D" in proj["notes"]
    assert any("layout from module type Conv1D" in d for d in report.decisions)
    assert not any("inferred from" in d for d in report.decisions)


def test_split_linear_gpt_back_into_hf_conv1d_model(hf_checkpoint, tmp_path):
    """Separate q/k/v nn.Linear -> fused Conv1D c_attn (concat, then transpose)."""
    path, ids, expected = hf_checkpoint
    split_out = tmp_path / "split.safetensors"
    weightmap.port(path, f"{MODELS}:gpt_split", split_out)
    back = tmp_path / "hf.safetensors"
    report = weightmap.port(split_out, f"{MODELS}:hf_gpt2", back)
    assert not report.new and not report.unused
    model = _model("hf_gpt2")
    state = load_file(back)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = model(ids).numpy()
    assert _rel(got, expected) <= RTOL
    c_attn = report.manifest["params"]["transformer.h.0.attn.c_attn.weight"]
    assert c_attn["source"] == [f"blocks.0.attn.{x}.weight" for x in "qkv"]
    assert [t["op"] for t in c_attn["transforms"]] == ["concat", "transpose"]


def test_layernorm_epsilon_difference_is_reported(hf_checkpoint, tmp_path):
    path, _, _ = hf_checkpoint
    plan = make_plan(path, f"{MODELS}:gpt_fused_eps6")
    found = [d for d in plan.decisions if d.startswith("blocks.0.norm1:")]
    assert found and "1e-05" in found[0] and "1e-06" in found[0]


def test_config_json_epsilon_is_read(hf_checkpoint, tmp_path):
    path, _, _ = hf_checkpoint
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(Path(path).read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                    "layer_norm_epsilon": 1e-6}))
    plan = make_plan(folder / "model.safetensors", f"{MODELS}:gpt_fused_eps6")
    assert not any(d.startswith("blocks.0.norm1:") for d in plan.decisions)
    plan = make_plan(folder / "model.safetensors", f"{MODELS}:gpt_fused")
    found = [d for d in plan.decisions if d.startswith("blocks.0.norm1:")]
    assert found and "1e-06" in found[0] and "1e-05" in found[0]
