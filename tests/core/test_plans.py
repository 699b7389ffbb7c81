import json

import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.plans import Plan, TensorPlan
from weightmap.sources import graph_from_arrays
from weightmap.transforms import Step


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
