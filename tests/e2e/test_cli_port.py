"""`weightmap port` as a user runs it: plans, dry runs, edits, errors without partial output."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tf_keras")

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TGT = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"


def wm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "weightmap", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def _one_line_error(r):
    assert r.returncode != 0, r.stdout
    assert r.stderr.startswith("weightmap: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    r = wm("port", SRC, "--to", TGT, "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "features.0.weight [8, 3, 3, 3] transformed <- block1_conv1/kernel:0" in r.stdout
    assert "flatten_permute" in r.stdout
    assert os.listdir(tmp_path) == []


def test_default_names_json_report_and_freeze(tmp_path):
    r = wm("port", SRC, "--to", TGT, "--json", "--freeze", "transferred",
           "--lr-scale", "transferred=0.1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["output"] == "small_vgg_keras_to_small_vgg_torch.safetensors"
    assert sorted(os.listdir(tmp_path)) == ["small_vgg_keras_to_small_vgg_torch.manifest.json",
                                            "small_vgg_keras_to_small_vgg_torch.safetensors"]
    man = json.loads((tmp_path / "small_vgg_keras_to_small_vgg_torch.manifest.json").read_text())
    assert man["summary"]["frozen"] == 12
    assert {e["lr_scale"] for e in man["params"].values()} == {0.1}
    again = wm("port", SRC, "--to", TGT, cwd=tmp_path)          # exists: refused, untouched
    _one_line_error(again)
    assert "--force" in again.stderr


def test_saved_plan_applies_and_a_broken_edit_writes_nothing(tmp_path):
    plan = tmp_path / "plan.json"
    assert wm("port", SRC, "--to", TGT, "--dry-run", "--save-plan", plan).returncode == 0
    out = tmp_path / "o.safetensors"
    r = wm("port", SRC, "--to", TGT, "--plan", plan, "--out", out)
    assert r.returncode == 0, r.stderr and out.exists()
    data = json.loads(plan.read_text())
    for t in data["tensors"]:
        if t["target"] == "classifier.1.weight":
            t["steps"] = [s for s in t["steps"] if s["op"] != "transpose"]
    plan.write_text(json.dumps(data))
    out2 = tmp_path / "o2.safetensors"
    r = wm("port", SRC, "--to", TGT, "--plan", plan, "--out", out2)
    _one_line_error(r)
    assert "classifier.1.weight" in r.stderr and not out2.exists()
    assert not list(tmp_path.glob(".o2*"))


@pytest.mark.parametrize("make", [
    lambda d: (d / "bad.pt").write_bytes(b"PK\x03\x04garbage") or d / "bad.pt",
    lambda d: (d / "x.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40) or d / "x.weights.h5",
    lambda d: d / "missing.safetensors",
])
def test_bad_sources_end_in_one_line_and_no_output(tmp_path, make):
    src = make(tmp_path)
    out = tmp_path / "out.safetensors"
    r = wm("port", src, "--to", TGT, "--out", out)
    _one_line_error(r)
    assert not out.exists() and not (tmp_path / "out.manifest.json").exists()


def test_unknown_freeze_policy_is_a_usage_error(tmp_path):
    r = wm("port", SRC, "--to", TGT, "--freeze", "most", "--out", tmp_path / "o.safetensors")
    _one_line_error(r)
    assert r.returncode == 2 and "until:LAYER" in r.stderr
