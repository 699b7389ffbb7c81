import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.transform import Step, apply_steps, check_steps
from weightmap.io.bytes import byte_view, contiguous_le

rng = np.random.default_rng(0)


def test_transpose_contract_and_values():
    k = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)       # keras kh,kw,in,out
    steps = [Step("transpose", {"perm": [3, 2, 0, 1]})]
    assert check_steps(steps, [k.shape], "w") == (8, 4, 3, 3)
    np.testing.assert_array_equal(apply_steps(steps, [k]), k.transpose(3, 2, 0, 1))


def test_bad_permutation_names_tensor_and_step():
    with pytest.raises(PlanError, match=r"tensor 'w'.*step 1 transpose.*not a permutation"):
        check_steps([Step("transpose", {"perm": [0, 0]})], [(2, 3)], "w")


def test_unknown_step_is_refused_with_the_known_list():
    with pytest.raises(PlanError, match="known: .*transpose"):
        Step("rotate")


def test_flatten_permute_makes_a_keras_dense_compute_the_same_in_torch_order():
    h, w, c, o = 3, 5, 4, 6
    x = rng.standard_normal((h, w, c)).astype(np.float64)           # one NHWC sample
    kernel = rng.standard_normal((h * w * c, o))                     # keras (in, out)
    keras_out = x.reshape(-1) @ kernel
    steps = [Step("flatten_permute", {"axis": 0, "shape": [h, w, c], "perm": [2, 0, 1]}),
             Step("transpose", {"perm": [1, 0]})]
    assert check_steps(steps, [kernel.shape], "k") == (o, h * w * c)
    weight = apply_steps(steps, [kernel])                            # torch (out, in)
    torch_out = weight @ x.transpose(2, 0, 1).reshape(-1)            # NCHW flatten
    np.testing.assert_allclose(torch_out, keras_out, rtol=1e-12)
    # the formula of CONVERSIONS.md, literally
    expected = kernel.reshape(h, w, c, o).transpose(2, 0, 1, 3).reshape(c * h * w, o).T
    np.testing.assert_array_equal(weight, expected)


def test_flatten_permute_back_from_torch():
    c, h, w, o = 2, 3, 3, 5
    weight = rng.standard_normal((o, c * h * w))
    steps = [Step("flatten_permute", {"axis": 1, "shape": [c, h, w], "perm": [1, 2, 0]}),
             Step("transpose", {"perm": [1, 0]})]
    kernel = apply_steps(steps, [weight])
    expected = weight.T.reshape(c, h, w, o).transpose(1, 2, 0, 3).reshape(h * w * c, o)
    np.testing.assert_array_equal(kernel, expected)


def test_flatten_shape_must_hold_the_features():
    with pytest.raises(PlanError, match="holds 12"):
        check_steps([Step("flatten_permute", {"axis": 0, "shape": [2, 2, 3], "perm": [2, 0, 1]})],
                    [(10, 4)], "k")


def test_sum_concat_slice_cast_scale_sum_axis():
    a, b = np.ones(4, np.float32), np.arange(4, dtype=np.float32)
    assert check_steps([Step("sum")], [(4,), (4,)], "b") == (4,)
    np.testing.assert_array_equal(apply_steps([Step("sum")], [a, b]), a + b)
    with pytest.raises(PlanError, match="cannot add"):
        check_steps([Step("sum")], [(4,), (5,)], "b")
    cat = [Step("concat", {"axis": 0})]
    assert check_steps(cat, [(2, 3), (4, 3)], "q") == (6, 3)
    sl = [Step("slice", {"axis": 0, "start": 2, "stop": 4})]
    np.testing.assert_array_equal(apply_steps(sl, [np.arange(6)]), [2, 3])
    with pytest.raises(PlanError, match="outside"):
        check_steps(sl, [(3,)], "q")
    out = apply_steps([Step("cast", {"dtype": "bfloat16"})], [np.array([1.5], np.float32)])
    assert out.dtype.name == "bfloat16"
    np.testing.assert_array_equal(apply_steps([Step("scale", {"factor": 2.0})], [a]), 2 * a)
    rgb = rng.standard_normal((8, 3, 3, 3))
    assert apply_steps([Step("sum_axis", {"axis": 1})], [rgb]).shape == (8, 1, 3, 3)


def test_two_tensors_must_be_combined():
    with pytest.raises(PlanError, match="2 tensors reach the end"):
        check_steps([], [(2,), (2,)], "x")


def test_steps_round_trip_through_dicts():
    s = Step("flatten_permute", {"axis": 0, "shape": (2, 2, 3), "perm": (2, 0, 1)})
    d = s.to_dict()
    assert d == {"op": "flatten_permute", "axis": 0, "shape": [2, 2, 3], "perm": [2, 0, 1]}
    assert Step.from_dict(d).to_dict() == d


def test_contiguous_le_gives_c_order_little_endian_bytes():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((700, 300)).astype(">f4")
    out = contiguous_le(a.T)
    assert out.flags.c_contiguous and out.dtype.byteorder in ("<", "=")
    np.testing.assert_array_equal(out, a.T)
    b = np.ascontiguousarray(rng.standard_normal((3, 4)).astype(np.float32))
    assert contiguous_le(b) is b
    assert bytes(byte_view(out)) == np.ascontiguousarray(a.T).astype("<f4").tobytes()


def test_copy_bytes_gives_any_byte_range_of_the_c_order_bytes():
    """The direct writer cuts tensors at window edges: any range of the C-order bytes, of a
    transposed or strided view, must come out exactly (rows, elements and bytes cut anywhere)."""
    import ml_dtypes

    from weightmap.io.bytes import copy_bytes
    gen = np.random.default_rng(4)
    cases = [gen.standard_normal((300, 200)).astype(np.float32).T,
             gen.standard_normal((5, 6, 7)).astype(np.float16).transpose(2, 0, 1),
             gen.standard_normal(77)[::3],
             np.array(3.5, np.float32),
             gen.standard_normal((4, 3)).astype(ml_dtypes.bfloat16).T,
             np.zeros((0, 4), np.float32),
             gen.standard_normal((64, 64)).astype(np.float32)]
    for arr in cases:
        want = np.ascontiguousarray(arr).tobytes()
        for _ in range(100):
            lo = int(gen.integers(0, len(want) + 1))
            hi = int(gen.integers(lo, len(want) + 1))
            out = bytearray(hi - lo + 3)
            copy_bytes(arr, lo, memoryview(out)[3:])       # unaligned destination
            assert bytes(out[3:]) == want[lo:hi], (arr.shape, lo, hi)


def test_little_endian_keeps_little_endian_views_and_swaps_big_endian_ones():
    from weightmap.io.bytes import little_endian
    a = np.arange(12, dtype="<f4").reshape(3, 4).T
    assert little_endian(a) is a
    b = np.arange(12, dtype=">f4").reshape(3, 4)
    le = little_endian(b)
    assert le.dtype.byteorder in ("<", "=") and np.array_equal(le, b)
