"""convert: renames, prefixes, keep/drop, casts, outputs, refusals (no framework needed: the
torch fixtures are read by weightmap's own reader, the outputs by safetensors)."""
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.errors import UsageError
from weightmap.surgery import convert

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _values(path, **read):
    return {p.name: np.asarray(p.read()) for p in weightmap.read(path, **read).params()}


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "state.safetensors"
    rng = np.random.default_rng(0)
    save_file({"backbone.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
               "backbone.conv.bias": rng.standard_normal(4).astype(np.float32),
               "head.fc.weight": rng.standard_normal((2, 4)).astype(np.float32),
               "head.fc.bias": np.array([3.4e38, 1e-39], np.float32),
               "head.steps": np.array(7, np.int64)}, str(path))
    return path


def test_strip_the_wrapper_prefix_of_a_dataparallel_checkpoint(tmp_path):
    source = FIXTURES / "torch" / "dataparallel.pth"
    rep = convert(source, tmp_path / "out.safetensors", strip_prefix=True)
    got = load_file(tmp_path / "out.safetensors")
    want = _values(source)
    assert sorted(got) == sorted(k[len("module."):] for k in want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name[len("module."):]], value)
    assert rep.manifest["policy"]["options"]["convert"]["strip_prefix"] == ["module."]
    from weightmap.emit.report import render_convert
    assert "tensors written: 9  left out: 0  renamed: 9" in render_convert(rep)
    assert rep.manifest["params"]["conv.weight"]["source"] == ["module.conv.weight"]


def test_a_given_prefix_goes_where_it_is(state, tmp_path):
    rep = convert(state, tmp_path / "o.safetensors", strip_prefix="backbone.")
    assert sorted(t.target for t in rep.plan.tensors) == [
        "conv.bias", "conv.weight", "head.fc.bias", "head.fc.weight", "head.steps"]


def test_rules_rename_and_ignore(state, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rename:\n  - pattern: '^head\\.fc\\.'\n    replace: 'classifier.'\n"
                     "ignore:\n  source: ['*.steps']\n")
    rep = convert(state, tmp_path / "o.safetensors", rules=rules)
    assert sorted(load_file(tmp_path / "o.safetensors")) == [
        "backbone.conv.bias", "backbone.conv.weight", "classifier.bias", "classifier.weight"]
    assert rep.plan.unused == ({"name": "head.steps",
                                "reason": "ignored by rule ignore.source[0] '*.steps'"},)
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("pair:\n  - target: a\n    source: b\n")
    with pytest.raises(UsageError, match="rename and ignore.source only"):
        convert(state, tmp_path / "p.safetensors", rules=pairs)


def test_keep_then_drop_on_stored_or_written_names(state, tmp_path):
    rep = convert(state, tmp_path / "o.safetensors", strip_prefix="backbone.",
                  keep=["conv.*", "head.*"], drop=["*.bias", "head.steps"])
    assert sorted(t.target for t in rep.plan.tensors) == ["conv.weight", "head.fc.weight"]
    reasons = {u["name"]: u["reason"] for u in rep.plan.unused}
    assert reasons == {"backbone.conv.bias": "dropped by --drop '*.bias'",
                       "head.fc.bias": "dropped by --drop '*.bias'",
                       "head.steps": "dropped by --drop 'head.steps'"}
    assert rep.manifest["summary"]["unused_source"] == 3
    one = convert(state, tmp_path / "one.safetensors", keep="head.fc.*", drop="*.bias")
    assert [t.target for t in one.plan.tensors] == ["head.fc.weight"]
    with pytest.raises(UsageError, match="no tensor is left to write"):
        convert(state, tmp_path / "none.safetensors", keep=["nothing*"])
    assert not (tmp_path / "none.safetensors").exists()


def test_two_names_becoming_one_are_refused(state, tmp_path):
    with pytest.raises(UsageError, match="'backbone.conv.bias' and 'head.fc.bias' would both "
                                         "be written as 'bias'"):
        convert(state, tmp_path / "o.safetensors", strip_prefix=["backbone.conv.", "head.fc."])


def test_cast_to_bfloat16_counts_what_it_cost(state, tmp_path):
    rep = convert(state, tmp_path / "o.safetensors", cast="bf16")
    got = load_file(tmp_path / "o.safetensors")
    assert {k: str(v.dtype) for k, v in got.items()}["head.steps"] == "int64"
    assert all(str(v.dtype) == "bfloat16" for k, v in got.items() if k != "head.steps")
    assert rep.manifest["params"]["head.fc.bias"]["cast"] == {
        "from": "float32", "to": "bfloat16", "overflow": 1, "subnormal": 1, "zero": 0}
    assert rep.manifest["summary"]["cast"] == {"tensors": 4, "overflow": 1, "subnormal": 1,
                                               "zero": 0}
    assert "cast" not in rep.manifest["params"]["head.steps"]
    with pytest.raises(UsageError, match="unknown cast 'fp8'"):
        convert(state, tmp_path / "x.safetensors", cast="fp8")


def test_a_lightning_checkpoint_leaves_out_its_optimizer_state(tmp_path):
    rep = convert(FIXTURES / "torch" / "lightning.ckpt", tmp_path / "o.pt", strip_prefix=True)
    names = [t.target for t in rep.plan.tensors]
    assert names[:2] == ["conv.weight", "conv.bias"] and not any("exp_avg" in n for n in names)
    assert any("optimizer_states" in d for d in rep.decisions)
    assert any("non-tensor entries: epoch, global_step" in d for d in rep.decisions)
    written = _values(tmp_path / "o.pt")
    for name, value in _values(FIXTURES / "torch" / "lightning.ckpt").items():
        np.testing.assert_array_equal(written[name[len("model."):]], value)
    optim = convert(FIXTURES / "torch" / "lightning.ckpt", tmp_path / "optim.safetensors",
                    container="optimizer_states")
    assert any("exp_avg" in t.target for t in optim.plan.tensors)


def test_shards_dry_run_and_refused_outputs(state, tmp_path):
    rep = convert(state, tmp_path / "big.safetensors", shard_size=100)
    index = json.loads((tmp_path / "big.safetensors.index.json").read_text())
    assert rep.output.endswith("big.safetensors.index.json")
    assert len(set(index["weight_map"].values())) > 1
    dry = convert(state, tmp_path / "dry.safetensors", dry_run=True)
    assert dry.output is None and not (tmp_path / "dry.safetensors").exists()
    with pytest.raises(UsageError, match="convert writes .safetensors or .pt files"):
        convert(state, tmp_path / "o.weights.h5")
    with pytest.raises(UsageError, match="the output file exists"):
        convert(state, tmp_path / "big.safetensors.index.json", shard_size=100)
