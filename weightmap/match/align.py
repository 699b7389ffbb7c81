"""Global sequence alignment with affine gaps (Needleman–Wunsch, Gotoh's three states), numpy.

``scores[i, j]`` is what pairing source ``i`` with target ``j`` is worth; ``-inf`` forbids it.
A run of ``k`` unpaired layers on one side costs ``GAP_OPEN + (k - 1) * GAP_EXTEND``: one
contiguous gap is cheaper than scattered ones, so an inserted block stays one block and does
not shift what follows.

Ties are broken by one documented preference: reading the alignment backwards, a gap is taken
before a pair, and a gap once open is kept open. The effect, read forwards: among equally good
alignments, layers pair as early as possible and the leftover layers of a repeated run come
last (the first blocks of a deeper stage pair with the source's blocks, the extra ones stay new).

Rows are computed as whole numpy vectors; the gap along a row is a running maximum
(``np.maximum.accumulate``), so a segment costs O(n·m) numpy work but only O(n) Python steps.
"""
from __future__ import annotations

import numpy as np

GAP_OPEN = 3.0
GAP_EXTEND = 0.5

_M, _X, _Y = 0, 1, 2     # states: pair, target layer unpaired, source layer unpaired
NEG = -np.inf


def align(scores: np.ndarray) -> list[tuple[int, int]]:
    """The pairs (source i, target j) of one best global alignment, in order."""
    n, m = scores.shape
    if n == 0 or m == 0:
        return []
    ptr_m, ptr_x, ptr_y, final, _ = _forward(scores, keep_m=False)
    return _traceback(ptr_m, ptr_x, ptr_y, final)


def align_with_marginals(scores: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The alignment plus, for every (i, j), the best total score of an alignment that pairs
    them (``-inf`` where forbidden): ties between candidates become visible."""
    n, m = scores.shape
    if n == 0 or m == 0:
        return [], np.full((n, m), NEG)
    ptr_m, ptr_x, ptr_y, final, fwd = _forward(scores, keep_m=True)
    pairs = _traceback(ptr_m, ptr_x, ptr_y, final)
    rev = _forward(np.ascontiguousarray(scores[::-1, ::-1]), keep_m=True)[4][::-1, ::-1]
    finite = np.isfinite(scores)
    marginals = np.full((n, m), NEG)
    marginals[finite] = fwd[finite] + rev[finite] - scores[finite]
    return pairs, marginals


def _pick(candidates: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise maximum over (values, state) in priority order: earlier wins ties."""
    best, first_state = candidates[0]
    state = np.full(best.shape, first_state, dtype=np.int8)
    for values, st in candidates[1:]:
        better = values > best
        best = np.maximum(values, best)      # equal where not better: ties keep the earlier
        state[better] = st
    return best, state


def _forward(scores: np.ndarray, keep_m: bool):
    n, m = scores.shape
    o, e = GAP_OPEN, GAP_EXTEND
    ptr_m = np.zeros((n + 1, m + 1), dtype=np.int8)
    ptr_x = np.zeros((n + 1, m + 1), dtype=np.int8)
    ptr_y = np.zeros((n + 1, m + 1), dtype=np.int8)
    kept = np.empty((n, m)) if keep_m else None
    ramp = e * np.arange(m + 1)
    mrow = np.full(m + 1, NEG)
    mrow[0] = 0.0
    xrow = np.full(m + 1, NEG)
    xrow[1:] = -(o + ramp[:-1])
    ptr_x[0, 2:] = _X
    yrow = np.full(m + 1, NEG)
    for i in range(1, n + 1):
        best, state = _pick([(xrow, _X), (yrow, _Y), (mrow, _M)])
        new_m = np.full(m + 1, NEG)
        new_m[1:] = scores[i - 1] + best[:-1]
        ptr_m[i, 1:] = state[:-1]
        new_y, ptr_y[i] = _pick([(yrow - e, _Y), (xrow - o, _X), (mrow - o, _M)])
        opener, open_state = _pick([(new_y, _Y), (new_m, _M)])
        running = np.maximum.accumulate(opener + ramp)
        new_x = np.full(m + 1, NEG)
        new_x[1:] = running[:-1] - o - ramp[:-1]
        extend = new_x[:-1] - e >= opener[:-1] - o
        ptr_x[i, 1:] = np.where(extend, _X, open_state[:-1])
        mrow, xrow, yrow = new_m, new_x, new_y
        if kept is not None:
            kept[i - 1] = new_m[1:]
    final = _pick([(xrow[-1:], _X), (yrow[-1:], _Y), (mrow[-1:], _M)])[1][0]
    return ptr_m, ptr_x, ptr_y, int(final), kept


def _traceback(ptr_m, ptr_x, ptr_y, state: int) -> list[tuple[int, int]]:
    i, j = ptr_m.shape[0] - 1, ptr_m.shape[1] - 1
    pairs = []
    while i > 0 or j > 0:
        if state == _M:
            pairs.append((i - 1, j - 1))
            state = ptr_m[i, j]
            i, j = i - 1, j - 1
        elif state == _Y:
            state = ptr_y[i, j]
            i -= 1
        else:
            state = ptr_x[i, j]
            j -= 1
    pairs.reverse()
    return pairs
