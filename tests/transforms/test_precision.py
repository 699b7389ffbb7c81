"""The cast step: round to nearest even (checked against a bit-level reference), one rounding
from float64, and the census of overflow / subnormal / zero values."""
import ml_dtypes
import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.transform import Step, apply_steps, check_steps
from weightmap.transform import precision

rng = np.random.default_rng(0)


def _cast(x, dtype):
    seen = []
    out = apply_steps([Step("cast", {"dtype": dtype})], [x],
                      observe=lambda step, counts: seen.append((step.op, counts)))
    return out, seen


def _bf16_reference(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even, written out on the bits (NaN aside)."""
    bits = x.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1
    return ((bits + 0x7FFF + lsb) >> 16).astype(np.uint16)


def test_float32_to_bfloat16_rounds_to_nearest_even_on_any_bits():
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    # exact ties (the low half is 0x8000) with an even and an odd kept part
    ties = (rng.integers(0, 2**16, size=2000, dtype=np.uint32) << 16) | 0x8000
    x = np.concatenate([bits, ties]).view(np.float32)
    x = x[~np.isnan(x)]
    out, _ = _cast(x, "bfloat16")
    np.testing.assert_array_equal(out.view(np.uint16), _bf16_reference(x))


def test_halfway_values_go_to_the_even_neighbour():
    one = np.float32(1.0)
    half_ulp_bf16, half_ulp_fp16 = 2.0 ** -8, 2.0 ** -11
    x = np.array([1 + half_ulp_bf16, 1 + 3 * half_ulp_bf16], np.float32)
    out, _ = _cast(x, "bfloat16")
    assert out.astype(np.float32).tolist() == [one, 1 + 4 * half_ulp_bf16]
    y = np.array([1 + half_ulp_fp16, 1 + 3 * half_ulp_fp16], np.float32)
    out, _ = _cast(y, "float16")
    assert out.astype(np.float32).tolist() == [one, 1 + 4 * half_ulp_fp16]


def test_float64_is_rounded_once_not_through_float32():
    # just above a bfloat16 tie; through float32 it would become the tie and round down
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -30], np.float64)
    out, _ = _cast(x, "bfloat16")
    assert float(out[0]) == 1 + 2.0 ** -7
    assert float(x.astype(np.float32).astype(ml_dtypes.bfloat16)[0]) == 1.0


def test_census_counts_overflow_subnormal_and_zero():
    x = np.array([3.4e38, -3.4e38, 1e-39, 1e-45, 0.0, -2e-38, 1.5, np.nan, np.inf], np.float32)
    out, seen = _cast(x, "bfloat16")
    assert seen == [("cast", {"from": "float32", "to": "bfloat16", "overflow": 2,
                              "subnormal": 1, "zero": 1})]
    assert np.isnan(out[7]) and np.isinf(out[8])          # kept, not counted
    _, seen = _cast(x, "float16")
    assert seen[0][1] == {"from": "float32", "to": "float16", "overflow": 2, "subnormal": 0,
                          "zero": 3}


def test_census_over_chunks_counts_every_value(monkeypatch):
    monkeypatch.setattr(precision, "CHUNK", 7)
    x = np.full((5, 9), 1e-39, np.float32)
    _, seen = _cast(x, "bfloat16")
    assert seen[0][1]["subnormal"] == 45


def test_widening_and_integer_casts():
    _, seen = _cast(np.array([1e-39], np.float32), "float64")
    assert seen == [("cast", {"from": "float32", "to": "float64", "overflow": 0,
                              "subnormal": 0, "zero": 0})]
    out, seen = _cast(np.array([1, 2], np.int64), "int32")
    assert out.dtype == np.int32 and seen == []


def test_an_unknown_dtype_is_refused_with_the_step():
    with pytest.raises(PlanError, match="cast argument 'dtype' must be a dtype name"):
        Step("cast", {"dtype": "float12"})
    assert check_steps([Step("cast", {"dtype": "float16"})], [(3,)], "w") == (3,)
