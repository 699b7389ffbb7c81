"""The plan stage: unused sources (recomputed for an edited plan), reasons that say whose shape
they quote, and a layer left new beside an unused source of its shapes as a decision record."""
import json
from pathlib import Path

import numpy as np
import pytest

import weightmap
from weightmap.planning.plan import Plan, TensorPlan
from weightmap.reading.read import graph_from_arrays

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TGT = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"


def test_a_layer_left_new_beside_an_unused_source_of_its_shapes_is_a_decision():
    from weightmap.planning.build import refresh
    src = graph_from_arrays({"enc.weight": np.ones((4, 3), np.float32),
                             "enc.bias": np.ones(4, np.float32),
                             "mid.weight": np.ones((5, 4), np.float32)}, origin="s")
    tgt = graph_from_arrays({"body.weight": np.ones((3, 4), np.float32).T.copy(),
                             "body.bias": np.ones(4, np.float32),
                             "head.weight": np.ones((5, 4), np.float32)}, origin="t")
    planned = Plan({}, {}, (
        TensorPlan("body.weight", "body", (4, 3), "float32", "new", notes=("no counterpart",)),
        TensorPlan("body.bias", "body", (4,), "float32", "new", notes=("no counterpart",)),
        TensorPlan("head.weight", "head", (5, 4), "float32", "transferred", ("mid.weight",))),
        unused=({"name": "stale", "reason": "from before the edit"},))
    p = refresh(planned, src, tgt)
    assert [dict(u) for u in p.unused] == [
        {"name": "enc.weight", "shape": [4, 3], "reason": "not used by the plan"},
        {"name": "enc.bias", "shape": [4], "reason": "not used by the plan"}]
    (s,) = p.suggestions
    assert (s["kind"], s["target"], s["sources"], s["shape"]) == \
        ("unused_same_shape", "body", ["enc"], [4, 3])
    assert s["text"] == ("body: left new; enc (same shapes, e.g. body.weight (4, 3)) is unused "
                         "— pair them with a rule?")
    assert p.decisions == (s["text"],)
    again = refresh(p, src, tgt)                 # the old suggestion is not repeated
    assert again.decisions == p.decisions and again.to_dict() == p.to_dict()
    assert Plan.from_dict(json.loads(p.to_json())).suggestions == p.suggestions


def test_an_edited_plan_recomputes_its_unused_sources_and_suggests_the_pair(tmp_path, capsys):
    pytest.importorskip("torch")
    from weightmap.cli import main
    plan = tmp_path / "plan.json"
    assert main(["port", str(SRC), "--to", str(TGT), "--dry-run", "--save-plan", str(plan)]) == 0
    data = json.loads(plan.read_text())
    assert data["unused"] == []
    for t in data["tensors"]:
        if t["layer"] == "classifier.3":          # the user keeps the head's own values
            t.update(status="new", sources=[], steps=[], notes=["edited: keep new"])
    plan.write_text(json.dumps(data))
    capsys.readouterr()
    out = tmp_path / "o.safetensors"
    assert main(["port", str(SRC), "--to", str(TGT), "--plan", str(plan), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "unused: 2 source tensor(s): predictions/kernel:0 (32, 5), predictions/bias:0 (5,)" \
        in text
    assert "check: classifier.3: left new; predictions (same shapes, e.g. classifier.3.weight " \
           "(5, 32)) is unused — pair them with a rule?" in text
    man = json.loads((tmp_path / "o.manifest.json").read_text())
    assert [u["name"] for u in man["unused"]] == ["predictions/kernel:0", "predictions/bias:0"]
    assert man["summary"]["unused_source"] == 2


def test_a_shape_mismatch_names_whose_shape_it_quotes(tmp_path):
    pytest.importorskip("torch")
    model = tmp_path / "m.py"
    model.write_text(TGT.read_text().replace("classes: int = 5", "classes: int = 10"))
    p = weightmap.plan(SRC, model)
    notes = {t.target: t.notes for t in p.tensors}
    assert notes["classifier.3.bias"] == (
        "shape mismatch with predictions: kernel shape (10, 32) vs (5, 32)",)
    unused = {u["name"]: u for u in p.unused}
    assert unused["predictions/bias:0"]["shape"] == [5]
    assert unused["predictions/bias:0"]["reason"] == \
        "shape mismatch with classifier.3: kernel shape (5, 32) vs (10, 32)"
    report = weightmap.port(SRC, model, dry_run=True)
    assert report.mismatched == ("classifier.3.weight", "classifier.3.bias")
