import json

import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.planning.plan import Decision, Pending, Plan, Reason, TensorPlan
from weightmap.reading.read import graph_from_arrays
from weightmap.transform import Step


def _graphs():
    src = graph_from_arrays({"a.weight": np.ones((3, 2), np.float32),
                             "a.bias": np.zeros(3, np.float32)}, origin="s")
    tgt = graph_from_arrays({"b.weight": np.ones((2, 3), np.float32),
                             "b.bias": np.zeros(3, np.float32)}, origin="t")
    return src, tgt


def _plan(steps=(Step("transpose", {"perm": [1, 0]}),), shape=(2, 3)):
    return Plan(source={"path": "s"}, target={"path": "t"}, tensors=(
        TensorPlan("b.weight", "b", shape, "float32", "transformed", ("a.weight",), tuple(steps)),
        TensorPlan("b.bias", "b", (3,), "float32", "new")))


def test_a_good_plan_checks():
    _plan().check(*_graphs())


def test_a_step_chain_that_does_not_give_the_target_shape_is_refused():
    with pytest.raises(PlanError, match=r"b\.weight.*steps give shape \(3, 2\)"):
        _plan(steps=()).check(*_graphs())


def test_every_target_tensor_must_be_covered():
    src, tgt = _graphs()
    p = Plan({}, {}, _plan().tensors[:1])
    with pytest.raises(PlanError, match="does not cover 1"):
        p.check(src, tgt)


def test_unknown_source_and_target_names_are_refused():
    src, tgt = _graphs()
    bad = Plan({}, {}, (TensorPlan("b.weight", "b", (2, 3), "float32", "transformed",
                                   ("zz",), ()), _plan().tensors[1]))
    with pytest.raises(PlanError, match="not in the source"):
        bad.check(src, tgt)
    bad = Plan({}, {}, (TensorPlan("q", "b", (2, 3), "float32", "new"),))
    with pytest.raises(PlanError, match="does not have"):
        bad.check(src, tgt)


def test_plan_round_trips_through_json_and_edits_apply(tmp_path):
    p = _plan()
    f = tmp_path / "plan.json"
    f.write_text(p.to_json())
    data = json.loads(f.read_text())
    assert data["tensors"][0]["steps"] == [{"op": "transpose", "perm": [1, 0]}]
    assert Plan.load(f).to_dict() == p.to_dict()
    data["tensors"][0]["steps"] = []              # a user's (wrong) edit is caught
    f.write_text(json.dumps(data))
    with pytest.raises(PlanError):
        Plan.load(f).check(*_graphs())


def test_bad_plan_files(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{nope")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.load(f)
    f.write_text(json.dumps({"weightmap_plan": 99}))
    with pytest.raises(PlanError, match="version 1"):
        Plan.load(f)
    f.write_text(json.dumps({"weightmap_plan": 1, "tensors": [{"target": "x"}]}))
    with pytest.raises(PlanError, match="lacks the key"):
        Plan.load(f)


def _saved_plan(tmp_path):
    """A real plan file: a port of ``s.safetensors`` into ``t.safetensors`` (a transpose and a
    synthetic fill among its entries), saved by ``weightmap port --dry-run --save-plan``."""
    from safetensors.numpy import save_file

    from weightmap.cli import main
    save_file({"a.weight": np.ones((3, 2), np.float32), "a.bias": np.zeros(3, np.float32)},
              str(tmp_path / "s.safetensors"))
    save_file({"a.weight": np.ones((3, 2), np.float32), "a.bias": np.zeros(3, np.float32)},
              str(tmp_path / "t.safetensors"))
    assert main(["port", str(tmp_path / "s.safetensors"), "--to", str(tmp_path / "t.safetensors"),
                 "--dry-run", "--quiet", "--save-plan", str(tmp_path / "plan.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    plan["tensors"].sort(key=lambda t: t["target"] != "a.weight")     # a.weight, a.bias
    plan["tensors"][0]["status"] = "transformed"
    plan["tensors"][0]["steps"] = [{"op": "transpose", "perm": [1, 0]},
                                   {"op": "transpose", "perm": [1, 0]},
                                   {"op": "scale", "factor": 2.0}]
    return plan


def _edit(path, value):
    def apply(plan):
        *keys, last = path
        node = plan
        for k in keys:
            node = node[k]
        node[last] = value
        return plan
    return apply


MALFORMED = {
    "tensors not a list": _edit(["tensors"], {"a": 1}),
    "a tensor not an object": _edit(["tensors", 0], "a.weight"),
    "a step not an object": _edit(["tensors", 0, "steps", 0], "transpose"),
    "steps not a list": _edit(["tensors", 0, "steps"], {"op": "scale"}),
    "a string scale": _edit(["tensors", 0, "steps", 2, "factor"], "2"),
    "a NaN scale": _edit(["tensors", 0, "steps", 2, "factor"], float("nan")),
    "a null shape": _edit(["tensors", 0, "shape"], None),
    "a negative size": _edit(["tensors", 0, "shape"], [3, -2]),
    "an axis 99": _edit(["tensors", 0, "steps"], [{"op": "sum_axis", "axis": 99}]),
    "a concat on axis 99": _edit(["tensors", 0, "steps"], [{"op": "concat", "axis": 99}]),
    "perm of strings": _edit(["tensors", 0, "steps", 0, "perm"], ["1", "0"]),
    "a missing argument": _edit(["tensors", 0, "steps", 0], {"op": "transpose"}),
    "an extra argument": _edit(["tensors", 0, "steps", 0], {"op": "transpose", "perm": [1, 0],
                                                            "axis": 0}),
    "an unknown op": _edit(["tensors", 0, "steps", 0], {"op": "__import__"}),
    "an op that is a list": _edit(["tensors", 0, "steps", 0], {"op": ["scale"]}),
    "an unknown dtype": _edit(["tensors", 0, "dtype"], "float128"),
    "a status list": _edit(["tensors", 0, "status"], ["new"]),
    "sources not strings": _edit(["tensors", 0, "sources"], [1]),
    "a target number": _edit(["tensors", 0, "target"], 7),
    "a value of another shape": _edit(["tensors", 1, "value"], {"values": [[1, 2], [3]]}),
    "a fill string": _edit(["tensors", 1, "value"], {"fill": "x"}),
    "unused not names": _edit(["unused"], [1, 2]),
    "decisions not strings": _edit(["decisions"], [{"x": 1}]),
    "options a list": _edit(["options"], [1]),
    "source a string": _edit(["source"], "s"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_plan_files_are_plan_errors_not_crashes(tmp_path, name, capsys):
    """Every edit is one line and exit 8 (a PlanError), never exit 70, and writes nothing."""
    from weightmap.cli import main
    plan = _saved_plan(tmp_path)
    plan["tensors"][1]["status"] = "synthetic"
    plan["tensors"][1]["sources"] = []
    plan["tensors"][1]["value"] = {"fill": 0.5}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(MALFORMED[name](plan)))
    capsys.readouterr()
    code = main(["port", str(tmp_path / "s.safetensors"), "--to", str(tmp_path / "t.safetensors"),
                 "--plan", str(bad), "--out", str(tmp_path / "o.safetensors"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 8 and err.count("\n") == 1 and err.startswith("weightmap: error: "), err
    assert not (tmp_path / "o.safetensors").exists()


def test_the_saved_plan_with_its_edits_applies(tmp_path):
    from safetensors.numpy import load_file

    from weightmap.cli import main
    plan = _saved_plan(tmp_path)
    (tmp_path / "good.json").write_text(json.dumps(plan))
    assert main(["port", str(tmp_path / "s.safetensors"), "--to", str(tmp_path / "t.safetensors"),
                 "--plan", str(tmp_path / "good.json"), "--out", str(tmp_path / "o.safetensors"),
                 "--quiet"]) == 0
    assert load_file(str(tmp_path / "o.safetensors"))[plan["tensors"][0]["target"]].tolist() == \
        (2 * np.ones((3, 2))).tolist()


def test_decisions_reasons_and_pending_steps_are_fields_not_note_prefixes():
    t = TensorPlan("b.weight", "b", (2, 3), "float32", "transformed", ("a.weight",),
                   notes=("kh,kw -> kw,kh", Decision("b: epsilon assumed"), "decision: quoted"))
    # a Decision is written among the notes in their order; a note that merely starts like one
    # is a note for people, nothing more
    assert t.notes == ("kh,kw -> kw,kh", "decision: b: epsilon assumed", "decision: quoted")
    assert t.decisions == ("b: epsilon assumed",)
    assert t.remarks == ("kh,kw -> kw,kh", "decision: quoted")
    assert t.reason is None and t.pending is None
    new = TensorPlan("b.bias", "b", (3,), "float32", "new", notes=("ignored by rule x",))
    assert new.reason is Reason.NO_COUNTERPART and not new.ignored     # the text steers nothing
    ignored = TensorPlan("b.bias", "b", (3,), "float32", "new", notes=("anything",),
                         reason=Reason.IGNORED, pending=Pending("recurrent_stacks"))
    assert ignored.ignored and ignored.pending.by == "recurrent_stacks"
    assert t.to_dict()["notes"] == list(t.notes) and "reason" not in ignored.to_dict()


def test_a_plan_file_gives_its_tensors_their_reasons_and_decisions_back():
    """What a plan file keeps as notes (its schema has no other place) is read back into the
    typed fields where the plan comes in, and nowhere else."""
    notes = {"ignored by rule ignore.target[0] 'b'": Reason.IGNORED,
             "shape mismatch with a: kernel shape (3, 2) vs (4, 2)": Reason.SHAPE_MISMATCH,
             "conversion failed: no weights make them equal": Reason.CONVERSION_FAILED,
             "no counterpart in the source": Reason.NO_COUNTERPART}
    for note, reason in notes.items():
        d = TensorPlan("b.bias", "b", (3,), "float32", "new", notes=(note,)).to_dict()
        assert TensorPlan.from_dict(d).reason is reason
    d = TensorPlan("b.weight", "b", (2, 3), "float32", "transferred", ("a.weight",),
                   notes=(Decision("look"), "x")).to_dict()
    back = TensorPlan.from_dict(json.loads(json.dumps(d)))
    assert back.decisions == ("look",) and back.remarks == ("x",) and back.reason is None
