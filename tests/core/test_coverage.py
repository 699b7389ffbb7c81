"""Nothing silently lost: a port that carries nothing fails, --min-coverage and --strict."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightmap
from weightmap.errors import CoverageError, UsageError
from weightmap.plans import Plan, TensorPlan

torch = pytest.importorskip("torch")
pytest.importorskip("tf_keras")

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TGT = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"

UNRELATED = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Embedding(50, 7), nn.LSTM(7, 5, batch_first=True))
"""

NEW_HEAD = TGT.read_text().replace("classes: int = 5", "classes: int = 10")


def wm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "weightmap", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def one_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("weightmap: error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def run(capsys, *args):
    """The command in this process (torch is imported once): (exit code, stdout, stderr)."""
    from weightmap.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_a_port_into_an_unrelated_target_fails_with_exit_11_and_writes_nothing(tmp_path):
    (tmp_path / "unrelated.py").write_text(UNRELATED)
    out = tmp_path / "o.safetensors"
    err = one_line(wm("port", SRC, "--to", tmp_path / "unrelated.py", "--out", out), 11)
    assert "nothing carried over" in err and "12 source tensors unused" in err
    assert "0.weight (50, 7)" in err                   # what stays new, with its shape
    assert sorted(os.listdir(tmp_path)) == ["unrelated.py"]


def test_a_dry_run_that_carries_nothing_shows_its_plan_then_fails(tmp_path, capsys):
    (tmp_path / "unrelated.py").write_text(UNRELATED)
    r = run(capsys, "port", SRC, "--to", tmp_path / "unrelated.py", "--dry-run", "--save-plan",
           tmp_path / "plan.json")
    one_line(r, 11)
    assert "0.weight [50, 7] new" in r.stdout and "carried over: 0 of" in r.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["weightmap_plan"] == 1


def test_min_coverage_lists_what_stays_new_largest_first(tmp_path, capsys):
    (tmp_path / "m.py").write_text(NEW_HEAD)
    out = tmp_path / "o.safetensors"
    err = one_line(run(capsys, "port", SRC, "--to", tmp_path / "m.py", "--out", out,
                       "--min-coverage", "0.99"), 11)
    assert "below --min-coverage 0.99" in err
    assert "left new (largest first): classifier.3.weight (10, 32), classifier.3.bias (10,)" in err
    assert not out.exists()
    ok = run(capsys, "port", SRC, "--to", tmp_path / "m.py", "--out", out, "--min-coverage",
             "0.9")
    assert ok.returncode == 0 and out.exists(), ok.stderr
    bad = run(capsys, "port", SRC, "--to", tmp_path / "m.py", "--min-coverage", "95%", "--dry-run")
    assert "--min-coverage is '95%'" in one_line(bad, 2)


def test_strict_lists_both_sides_and_rules_that_ignore_them_satisfy_it(tmp_path, capsys):
    (tmp_path / "m.py").write_text(NEW_HEAD)
    out = tmp_path / "o.safetensors"
    err = one_line(run(capsys, "port", SRC, "--to", tmp_path / "m.py", "--out", out,
                       "--strict"), 11)
    assert "--strict: 2 target tensor(s) neither carried over nor ignored by a rule: " \
           "classifier.3.weight (10, 32), classifier.3.bias (10,)" in err
    assert "2 source tensor(s) neither used nor ignored by a rule: " \
           "predictions/kernel:0 (32, 5), predictions/bias:0 (5,)" in err
    rules = tmp_path / "rules.yaml"
    rules.write_text("ignore:\n  target: ['classifier.3']\n  source: ['predictions']\n")
    r = run(capsys, "port", SRC, "--to", tmp_path / "m.py", "--out", out, "--strict",
            "--rules", rules)
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "o.manifest.json").read_text())
    assert man["params"]["classifier.3.weight"]["notes"][0].startswith("ignored by rule")


def test_load_partial_that_carries_nothing_fails_and_leaves_the_model_alone():
    model = torch.nn.Sequential(torch.nn.Embedding(50, 7), torch.nn.Linear(7, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CoverageError, match="nothing carried over") as err:
        weightmap.load_partial(model, SRC)
    assert err.value.exit_code == 11 and err.value.report.new
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_check_on_plans():
    from weightmap.coverage import check
    t = [TensorPlan("a.weight", "a", (4, 4), "float32", "transformed", ("x",)),
         TensorPlan("b.weight", "b", (4, 1), "float32", "new", notes=("no counterpart",)),
         TensorPlan("c.weight", "c", (2,), "float32", "new",
                    notes=("ignored by rule ignore.target[0] 'c'",))]
    p = Plan({}, {}, tuple(t), unused=({"name": "y", "shape": [3], "reason": "r"},
                                       {"name": "z", "reason": "r", "kind": "ignored"}))
    check(p, min_coverage=0.7)                     # 16 of 22 elements
    with pytest.raises(CoverageError, match="72.73% .* left new .*b.weight"):
        check(p, min_coverage=0.75)
    with pytest.raises(CoverageError, match=r"1 target tensor.*b\.weight \(4, 1\); 1 source "
                                            r"tensor.*: y \(3,\) \("):
        check(p, strict=True)
    synthetic_only = Plan({}, {}, (TensorPlan("a.bias", "a", (4,), "float32", "synthetic"),))
    with pytest.raises(CoverageError, match="nothing carried over"):
        check(synthetic_only)
    with pytest.raises(UsageError):
        check(p, min_coverage=1.5)
    check(Plan({}, {}, ()))                        # no target tensors: nothing to miss
