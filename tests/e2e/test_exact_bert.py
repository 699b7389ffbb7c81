"""A BERT checkpoint as Hugging Face writes it (name-sorted ``model.safetensors``, separate
query/key/value, post-LayerNorm blocks, ``config.json`` with ``layer_norm_eps=1e-12``) ported
into a hand-written BERT with a fused ``qkv`` and other names, and back, with no rules and no
example_input. Judged by the outputs."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

import weightmap  # noqa: E402

MODELS = Path(__file__).parent / "models" / "bert_torch.py"
RTOL = 1e-5


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory, run):
    model = run.model(MODELS, "hf_bert")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.ndim == 1 else 0.25)
                    + (1.0 if "LayerNorm.weight" in name else 0.0))
    folder = tmp_path_factory.mktemp("bert")
    path = folder / "model.safetensors"
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, path,
              metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertForSequenceClassification"],
        "layer_norm_eps": 1e-12, "hidden_size": 16, "num_hidden_layers": 12}))
    ids = torch.tensor([[2, 7, 30, 11, 4, 9], [5, 1, 1, 22, 39, 8]])
    with torch.no_grad():
        expected = model(ids).numpy()
    assert np.abs(expected).max() > 1e-2
    return path, ids, expected


def _eps_decisions(report):
    return [d for d in report.decisions if "layernorm epsilon differs" in d]


def test_separate_qkv_into_a_fused_target_with_the_config_epsilon(hf_bert, tmp_path, run):
    path, ids, expected = hf_bert
    out = tmp_path / "fused.safetensors"
    report = weightmap.port(path, f"{MODELS}:bert_fused", out)
    assert not report.new and not report.unused
    assert run.rel(run.outputs(MODELS, "bert_fused", out, ids), expected) <= RTOL
    plans = {t.target: t for t in report.plan.tensors}
    layer = "bert.encoder.layer.11.attention.self"
    assert plans["blocks.11.attn.qkv.weight"].sources == tuple(f"{layer}.{p}.weight" for p in
                                                               ("query", "key", "value"))
    assert plans["blocks.11.attn.qkv.bias"].sources == tuple(f"{layer}.{p}.bias" for p in
                                                             ("query", "key", "value"))
    assert plans["blocks.2.norm1.weight"].sources == \
        ("bert.encoder.layer.2.attention.output.LayerNorm.weight",)
    assert plans["emb.seg.weight"].sources == ("bert.embeddings.token_type_embeddings.weight",)
    assert not _eps_decisions(report)        # 1e-12 on both sides: config.json was read
    # the same port into a target with torch's default epsilon says it cannot be exact
    report = weightmap.port(path, f"{MODELS}:bert_fused_eps5", tmp_path / "eps5.safetensors")
    assert _eps_decisions(report)[0].startswith("emb.norm: layernorm epsilon differs (source "
                                                "1e-12, target 1e-05)")


def test_without_config_json_the_epsilon_is_an_assumption_said_aloud(hf_bert, tmp_path, run):
    path, _, _ = hf_bert
    bare = tmp_path / "model.safetensors"
    bare.write_bytes(path.read_bytes())
    report = weightmap.port(bare, f"{MODELS}:bert_fused", tmp_path / "out.safetensors")
    assert _eps_decisions(report)[0].startswith("emb.norm: layernorm epsilon differs (source "
                                                "1e-05 (torch default, not stored), target "
                                                "1e-12)")


def test_fused_qkv_back_into_hugging_face_names(hf_bert, tmp_path, run):
    path, ids, expected = hf_bert
    fused = tmp_path / "fused.safetensors"
    weightmap.port(path, f"{MODELS}:bert_fused", fused)
    back = tmp_path / "hf.safetensors"
    report = weightmap.port(fused, f"{MODELS}:hf_bert", back)
    assert not report.new and not report.unused
    assert run.rel(run.outputs(MODELS, "hf_bert", back, ids), expected) <= RTOL
    key = {t.target: t for t in report.plan.tensors}[
        "bert.encoder.layer.0.attention.self.key.bias"]
    assert [s.to_dict() for s in key.steps] == [{"op": "slice", "axis": 0, "start": 16,
                                                 "stop": 32}]
