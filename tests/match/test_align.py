import numpy as np

from weightmap.match.align import GAP_EXTEND, GAP_OPEN, NEG, align, align_with_marginals


def table(src: str, tgt: str, mismatch=NEG) -> np.ndarray:
    """10 for equal letters, ``mismatch`` otherwise."""
    return np.array([[10.0 if a == b else mismatch for b in tgt] for a in src])


def test_equal_sequences_pair_one_to_one():
    assert align(table("ABC", "ABC")) == [(0, 0), (1, 1), (2, 2)]


def test_inserted_layer_is_a_gap_and_does_not_shift_the_rest():
    # target has an extra X (a BatchNorm) after A: B and C keep their partners
    assert align(table("ABC", "AXBC")) == [(0, 0), (1, 2), (2, 3)]
    assert align(table("AXBC", "ABC")) == [(0, 0), (2, 1), (3, 2)]


def test_forbidden_pairs_are_never_made():
    assert align(table("AB", "CD")) == []


def test_one_contiguous_gap_is_cheaper_than_scattered_ones():
    # A B B B C against A B ... B C (3 vs 6 repeats): one gap of three, at the end of the run
    pairs = align(table("ABBBC", "ABBBBBBC"))
    assert pairs == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 7)]


def test_ties_pair_as_early_as_possible():
    assert align(table("AB", "ABB")) == [(0, 0), (1, 1)]
    assert align(table("ABB", "AB")) == [(0, 0), (1, 1)]


def test_mismatch_pairs_beat_two_gaps():
    # same-family layers with other shapes score 0: aligned (and reported later), not skipped
    s = np.array([[10.0, NEG], [NEG, 0.0]])
    assert align(s) == [(0, 0), (1, 1)]


def test_empty_segments():
    assert align(np.zeros((0, 3))) == []
    pairs, marg = align_with_marginals(np.zeros((2, 0)))
    assert pairs == [] and marg.shape == (2, 0)


def test_marginals_are_the_best_score_through_each_pair():
    pairs, marg = align_with_marginals(table("ABC", "ABBC"))
    best = 30 - GAP_OPEN
    assert pairs == [(0, 0), (1, 1), (2, 3)]
    assert marg[0, 0] == best and marg[2, 3] == best
    assert marg[1, 1] == best and marg[1, 2] == best        # a tie: either B may pair
    assert marg[0, 1] == NEG                                 # forbidden stays -inf


def test_marginals_show_a_strict_preference():
    s = table("AB", "AB", mismatch=0.0)
    _, marg = align_with_marginals(s)
    assert marg[1, 1] == 20.0
    assert marg[0, 1] < 20.0 and marg[1, 0] < 20.0


def test_gap_costs_are_affine():
    # A then 4 unmatched target layers then B: one gap open + 3 extensions
    _, marg = align_with_marginals(table("AB", "AXXXXB"))
    assert marg[0, 0] == 20 - (GAP_OPEN + 3 * GAP_EXTEND)
