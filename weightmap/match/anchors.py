"""Name pairs as anchors: the longest order-consistent chain, and the pairs that cross it.

Anchors cut both layer sequences into segments that are aligned separately, so a pair used as an
anchor must agree with the order of every other anchor. A name pair that crosses the chain is
still a match when names can be trusted over order; see ``crossing``.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Callable, Sequence

Pair = tuple[int, int]     # (source index, target index)

# Orders that follow what the model computes; "registration" (a state dict's insertion order)
# and "stored" (a file's order, often alphabetical) may be rearranged by a harmless refactor.
TRUSTED_ORDERS = frozenset({"execution", "config"})


def chain(pairs: Sequence[Pair]) -> list[Pair]:
    """The longest subsequence of pairs increasing in both indices (O(k log k))."""
    ordered = sorted(pairs, key=lambda p: (p[1], p[0]))
    tails: list[int] = []          # source index ending the best chain of each length
    tail_at: list[int] = []        # position (in ordered) of that chain's last pair
    back: list[int] = []
    for k, (s, _t) in enumerate(ordered):
        pos = bisect_left(tails, s)
        if pos == len(tails):
            tails.append(s)
            tail_at.append(k)
        else:
            tails[pos] = s
            tail_at[pos] = k
        back.append(tail_at[pos - 1] if pos else -1)
    out: list[Pair] = []
    k = tail_at[-1] if tail_at else -1
    while k >= 0:
        out.append(ordered[k])
        k = back[k]
    return out[::-1]


def crossed(pair: Pair, anchors: Sequence[Pair], src: Sequence[int] | None = None,
            tgt: Sequence[int] | None = None) -> list[Pair]:
    """The anchors (a chain, increasing on both sides) that ``pair`` crosses. ``src``/``tgt``
    are the anchors' indices, when the caller already has them."""
    s, t = pair
    src = [a[0] for a in anchors] if src is None else src
    tgt = [a[1] for a in anchors] if tgt is None else tgt
    before_s = bisect_left(src, s)             # anchors[:before_s] have a smaller source index
    after_t = bisect_right(tgt, t)             # anchors[after_t:] have a larger target index
    out = list(anchors[after_t:before_s])      # smaller source, larger target
    out += anchors[bisect_right(src, s):bisect_left(tgt, t)]   # larger source, smaller target
    return out


def crossing(pairs: Sequence[Pair], anchors: Sequence[Pair], trusted_order: bool,
             interchangeable: Callable[[Pair, Pair], bool]) -> list[tuple[Pair, Pair]]:
    """Conflicts between names and order: (name pair, anchor it crosses).

    The exact rule: a name pair off the chain conflicts with an anchor it crosses when both
    graphs are in a trusted order (execution or config) and the two pairs are interchangeable
    (same signatures on each side), so that names say one thing and order the other and nothing
    else decides. Every other crossing pair stands on its names.
    """
    if not trusted_order:
        return []
    on_chain = set(anchors)
    src = [a[0] for a in anchors]
    tgt = [a[1] for a in anchors]
    out = []
    for pair in pairs:
        if pair in on_chain:
            continue
        for anchor in crossed(pair, anchors, src, tgt):
            if interchangeable(pair, anchor):
                out.append((pair, anchor))
                break
    return out
