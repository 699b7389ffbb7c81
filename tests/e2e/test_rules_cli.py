"""``weightmap port --rules`` as a user runs it: rules that stack several source layers into one
fused target, split one source among several targets, and pair layers the readers classify
differently (a LayerNorm and an unknown module, a Linear and a 1x1 Conv1d). Judged by outputs."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

MODELS = Path(__file__).parent / "models" / "rules_torch.py"

TO_FUSED = """
pair:
  - target: mix                   # one fused target <- three source layers, stacked
    source: [alpha, beta, gamma]
  - target: gain                  # an unknown module <- a LayerNorm
    source: norm
  - target: head                  # a 1x1 Conv1d <- a Linear
    source: head
"""
TO_SEPARATE = """
[[pair]]
target = ["alpha", "beta", "gamma"]    # three targets <- one fused source, split in order
source = "mix"

[[pair]]
target = "norm"
source = "gain"

[[pair]]
target = "head"
source = "head"
"""


def wm(*args):
    return subprocess.run([sys.executable, "-m", "weightmap", *map(str, args)],
                          capture_output=True, text=True)


def run(name, weights, x):
    import weightmap
    model = weightmap.read(f"{MODELS}:{name}").live
    model.load_state_dict(load_file(weights), strict=True)
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    import weightmap
    torch.manual_seed(0)
    model = weightmap.read(f"{MODELS}:Separate").live
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
    path = tmp_path_factory.mktemp("rules") / "separate.safetensors"
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    x = torch.randn(5, 4)
    with torch.no_grad():
        return path, x, model(x).numpy()


def test_without_rules_nothing_but_the_input_layer_pairs(separate, tmp_path):
    path, _, _ = separate
    r = wm("port", path, "--to", f"{MODELS}:Fused", "--out", tmp_path / "o.safetensors",
           "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "carried over: 2 of 7 tensors" in r.stdout


def test_rules_stack_pair_other_kinds_and_split_back(separate, tmp_path):
    path, x, expected = separate
    rules = tmp_path / "to_fused.yaml"
    rules.write_text(TO_FUSED)
    fused = tmp_path / "fused.safetensors"
    r = wm("port", path, "--to", f"{MODELS}:Fused", "--rules", rules, "--out", fused)
    assert r.returncode == 0, r.stderr
    assert "carried over: 7 of 7 tensors (100.0%)" in r.stdout and "; new 0" in r.stdout
    np.testing.assert_allclose(run("Fused", fused, x), expected, rtol=1e-5, atol=1e-6)
    back_rules = tmp_path / "to_separate.toml"
    back_rules.write_text(TO_SEPARATE)
    back = tmp_path / "back.safetensors"
    r = wm("port", fused, "--to", f"{MODELS}:Separate", "--rules", back_rules, "--out", back,
           "--json")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(run("Separate", back, x), expected, rtol=1e-5, atol=1e-6)
    assert load_file(back)["beta.bias"].tolist() == load_file(path)["beta.bias"].tolist()


def test_a_bad_split_rule_is_one_line_naming_the_key(separate, tmp_path):
    path, _, _ = separate
    rules = tmp_path / "bad.yaml"
    rules.write_text("pair:\n  - target: [alpha, beta]\n    source: [mix, inp]\n")
    r = wm("port", path, "--to", f"{MODELS}:Fused", "--rules", rules, "--dry-run")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "rules key 'pair[0]': a list of targets takes one source (split among them), " \
           "found 2 source names" in r.stderr
