"""The recurrent steps: gate_permute, take, stack, zero_pad (contracts and values)."""
import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.transform import Step, apply_steps, check_steps


def test_gate_permute_moves_whole_blocks_on_any_axis():
    a = np.arange(4 * 2 * 3).reshape(8, 3)              # 4 gates of 2 units, 3 inputs
    out = apply_steps([Step("gate_permute", {"axis": 0, "perm": [0, 3, 1, 2], "units": 2})], [a])
    np.testing.assert_array_equal(out, np.concatenate([a[0:2], a[6:8], a[2:4], a[4:6]]))
    t = apply_steps([Step("gate_permute", {"axis": 1, "perm": [0, 3, 1, 2], "units": 2})],
                    [a.T.copy()])
    np.testing.assert_array_equal(t, out.T)


def test_gate_permute_applies_to_each_group_of_a_packed_bias():
    b = np.arange(2 * 3 * 2)                             # [Wb; Rb], 3 gates of 2 units
    out = apply_steps([Step("gate_permute", {"axis": 0, "perm": [1, 0, 2], "units": 2})], [b])
    np.testing.assert_array_equal(out, [2, 3, 0, 1, 4, 5, 8, 9, 6, 7, 10, 11])


@pytest.mark.parametrize("args,shape,words", [
    ({"axis": 0, "perm": [0, 0, 1], "units": 2}, (6,), "not a permutation"),
    ({"axis": 0, "perm": [1, 0, 2], "units": 4}, (6,), "whole number"),
    ({"axis": 2, "perm": [1, 0], "units": 1}, (2, 2), "does not exist"),
])
def test_gate_permute_contract(args, shape, words):
    with pytest.raises(PlanError, match=words):
        check_steps([Step("gate_permute", args)], [shape], "t")


def test_take_stack_and_zero_pad():
    w = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    np.testing.assert_array_equal(apply_steps([Step("take", {"axis": 0, "index": 1})], [w]), w[1])
    assert check_steps([Step("take", {"axis": 0, "index": 1})], [(2, 4, 3)], "t") == (4, 3)
    with pytest.raises(PlanError, match="outside axis 0"):
        check_steps([Step("take", {"axis": 0, "index": 2})], [(2, 4, 3)], "t")
    s = apply_steps([Step("stack", {"axis": 0})], [w[0], w[1]])
    np.testing.assert_array_equal(s, w)
    assert check_steps([Step("stack", {"axis": 1})], [(4, 3), (4, 3)], "t") == (4, 2, 3)
    with pytest.raises(PlanError, match="cannot stack"):
        check_steps([Step("stack", {"axis": 0})], [(4, 3), (3, 4)], "t")
    z = apply_steps([Step("zero_pad", {"axis": 0, "before": 0, "after": 2})],
                    [np.array([1.5, 2.5], np.float32)])
    assert z.dtype == np.float32 and z.tolist() == [1.5, 2.5, 0.0, 0.0]
    assert check_steps([Step("zero_pad", {"axis": 1, "before": 1, "after": 2})], [(2, 3)],
                       "t") == (2, 6)
    with pytest.raises(PlanError, match="negative"):
        check_steps([Step("zero_pad", {"axis": 0, "before": -1, "after": 0})], [(2,)], "t")


def test_steps_survive_the_plan_json_round_trip():
    step = Step("gate_permute", {"axis": 1, "perm": [0, 3, 1, 2], "units": 5})
    assert Step.from_dict(step.to_dict()) == step and step.to_dict()["perm"] == [0, 3, 1, 2]
