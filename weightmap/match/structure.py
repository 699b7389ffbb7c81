"""Step 3: align the layers left between two anchors by structure.

Each segment is aligned globally (``align.py``) with pair scores from the layer signatures (op
family, canonical shapes) plus a small name-similarity bonus that only breaks ties. Then two
checks keep the aligner from guessing:

* A layer whose name suffix fits several candidates may pair only with one of them, and only if
  the best alignment through that candidate beats the best through every other one (max-marginal
  scores); a tie is reported ambiguous.
* Among aligned pairs that are interchangeable (same signatures on both sides), a run of
  consecutive ones whose names all have a known role (``weightmap.arch``: q/query/wq,
  k/key/wk, v/value/wv, o/out/proj, gate, up, down ...), distinct on each side and the same on
  both, is paired by role name (strategy ``role``): shape and order cannot tell a block's q, k,
  v and o apart, the usual name vocabulary can. Otherwise names that point the other way than
  the positions (e.g. ``left_conv``/``right_conv`` against ``right.conv``/``left.conv``) make
  those pairs ambiguous: order and names disagree and nothing else decides.

Segments too large for the quadratic aligner are first cut at layers whose signature occurs once
on each side; what is still too large is walked greedily (see docs/matching.md).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .. import arch
from . import align as dp
from .anchors import chain
from .flow import flow_reversed, order_wins
from .names import similarity
from .prepare import Side, Signatures
from .signature import CROSS_FAMILY

MAX_CELLS = 4_000_000     # source × target layers aligned by dynamic programming at once
MAX_TABLE = 40_000        # distinct signature pairs compared before cutting a segment first
NAME_WEIGHT = 0.25        # < GAP_EXTEND: a name never outweighs a structural difference
RARE_TOKEN = 4            # tokens on more layers than this (per side) carry no position
GREEDY_WINDOW = 64        # how far the greedy walk looks ahead for a partner
TIE = 1e-6

Pos = tuple[int, int]     # (row in the source segment, column in the target segment)


@dataclass
class Context:
    src: Side
    tgt: Side
    sigs: Signatures
    ambiguous_t: Mapping[int, tuple[int, ...]]   # target -> candidate sources (suffix names)
    ambiguous_s: Mapping[int, tuple[int, ...]]
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)     # the report's check: lines


@dataclass(frozen=True)
class Ambiguity:
    side: str                                    # "source" | "target"
    index: int
    candidates: tuple[int, ...]                  # indices on the other side
    reason: str


@dataclass
class Aligned:
    pairs: list[tuple[int, int]] = field(default_factory=list)          # (s, t) aligned
    evidence: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    by_role: set[tuple[int, int]] = field(default_factory=set)          # paired by role name


def align_segment(src_idx: Sequence[int], tgt_idx: Sequence[int], ctx: Context) -> Aligned:
    """Align one segment (layer indices in graph order on each side)."""
    out = Aligned()
    _align_into(list(src_idx), list(tgt_idx), ctx, out)
    _names_against_position(out, ctx)
    return out


def _align_into(src_idx: list[int], tgt_idx: list[int], ctx: Context, out: Aligned) -> None:
    n, m = len(src_idx), len(tgt_idx)
    if n == 0 or m == 0:
        return
    s_sig = np.array([ctx.src.sig_ids[i] for i in src_idx])
    t_sig = np.array([ctx.tgt.sig_ids[j] for j in tgt_idx])
    distinct = len(np.unique(s_sig)) * len(np.unique(t_sig))
    too_big = n * m > MAX_CELLS or distinct > MAX_TABLE
    if too_big:
        cuts = _unique_anchors(src_idx, tgt_idx, s_sig, t_sig, ctx)
        if cuts:
            _align_between(cuts, src_idx, tgt_idx, ctx, out)
            return
        ctx.notes.append(f"a segment of {n} x {m} layers had no unique layer to cut at and was "
                         f"aligned greedily (limits: {MAX_CELLS} cells, {MAX_TABLE} signature "
                         f"pairs)")
        positions = _greedy(src_idx, tgt_idx, ctx)
        marginals = None
    else:
        scores = _scores(src_idx, tgt_idx, s_sig, t_sig, ctx)
        if any(j in ctx.ambiguous_t for j in tgt_idx) or any(i in ctx.ambiguous_s
                                                             for i in src_idx):
            positions, marginals = dp.align_with_marginals(scores)
        else:
            positions, marginals = dp.align(scores), None
    kept = _resolve_candidates(positions, src_idx, tgt_idx, marginals, ctx, out)
    out.pairs.extend((src_idx[r], tgt_idx[c]) for r, c in kept)


def _align_between(cuts: list[Pos], src_idx, tgt_idx, ctx: Context, out: Aligned) -> None:
    ctx.notes.append(f"a segment of {len(src_idx)} x {len(tgt_idx)} layers was cut at "
                     f"{len(cuts)} layers whose signature occurs once on each side")
    r0 = c0 = 0
    for r, c in cuts + [(len(src_idx), len(tgt_idx))]:
        _align_into(src_idx[r0:r], tgt_idx[c0:c], ctx, out)
        if r < len(src_idx):
            pair = (src_idx[r], tgt_idx[c])
            out.pairs.append(pair)
            out.evidence[pair] = ["signature unique on both sides of a large segment"]
        r0, c0 = r + 1, c + 1


def _unique_anchors(src_idx, tgt_idx, s_sig, t_sig, ctx: Context) -> list[Pos]:
    """Positions of layers whose (identical) signature occurs once in each side's segment."""
    cs, ct = Counter(s_sig.tolist()), Counter(t_sig.tolist())
    col = {sig: c for c, sig in enumerate(t_sig.tolist())
           if ct[sig] == 1 and tgt_idx[c] not in ctx.ambiguous_t}
    pairs = [(r, col[sig]) for r, sig in enumerate(s_sig.tolist())
             if cs[sig] == 1 and sig in col and src_idx[r] not in ctx.ambiguous_s]
    return chain(pairs)


def _scores(src_idx, tgt_idx, s_sig, t_sig, ctx: Context) -> np.ndarray:
    us, inv_s = np.unique(s_sig, return_inverse=True)
    ut, inv_t = np.unique(t_sig, return_inverse=True)
    table = np.full((len(us), len(ut)), dp.NEG)
    by_family: dict[str, list[int]] = {}
    for k, sig in enumerate(ut.tolist()):
        by_family.setdefault(ctx.sigs.sigs[sig].family, []).append(k)
    for a, sig in enumerate(us.tolist()):
        fam = ctx.sigs.sigs[sig].family
        families = {fam} | {f for pair in CROSS_FAMILY if fam in pair for f in pair}
        for b in (k for f in families for k in by_family.get(f, ())):
            score = ctx.sigs.compat(sig, int(ut[b])).score
            if score is not None:
                table[a, b] = score
    scores = table[inv_s][:, inv_t]
    _add_name_bonus(scores, src_idx, tgt_idx, ctx)
    _apply_candidates(scores, src_idx, tgt_idx, ctx)
    return scores


def _add_name_bonus(scores: np.ndarray, src_idx, tgt_idx, ctx: Context) -> None:
    """Token similarity for pairs sharing a rare token; common tokens ('conv') say nothing
    about position and would cost O(n·m)."""
    df_s = Counter(tok for i in src_idx for tok in ctx.src.tokens[i])
    holders: dict[str, list[int]] = {}
    for c, j in enumerate(tgt_idx):
        for tok in ctx.tgt.tokens[j]:
            holders.setdefault(tok, []).append(c)
    for r, i in enumerate(src_idx):
        cols = {c for tok in ctx.src.tokens[i] if df_s[tok] <= RARE_TOKEN
                and len(holders.get(tok, ())) <= RARE_TOKEN for c in holders.get(tok, ())}
        for c in cols:
            if np.isfinite(scores[r, c]):
                scores[r, c] += NAME_WEIGHT * similarity(ctx.src.tokens[i],
                                                         ctx.tgt.tokens[tgt_idx[c]])


def _apply_candidates(scores: np.ndarray, src_idx, tgt_idx, ctx: Context) -> None:
    """A layer whose name suffix points at candidates may pair with those only."""
    for c, j in enumerate(tgt_idx):
        if j in ctx.ambiguous_t:
            allowed = set(ctx.ambiguous_t[j])
            scores[[r for r, i in enumerate(src_idx) if i not in allowed], c] = dp.NEG
    for r, i in enumerate(src_idx):
        if i in ctx.ambiguous_s:
            allowed = set(ctx.ambiguous_s[i])
            scores[r, [c for c, j in enumerate(tgt_idx) if j not in allowed]] = dp.NEG


def _greedy(src_idx, tgt_idx, ctx: Context) -> list[Pos]:
    """In-order walk: pair equal layers; else skip ahead on the side whose next equal partner
    is nearer (within GREEDY_WINDOW); else pair same-family layers as a mismatch, or skip both."""
    def compat(r: int, c: int):
        i, j = src_idx[r], tgt_idx[c]
        if (j in ctx.ambiguous_t and i not in ctx.ambiguous_t[j]) or \
                (i in ctx.ambiguous_s and j not in ctx.ambiguous_s[i]):
            return None
        return ctx.sigs.compat(ctx.src.sig_ids[i], ctx.tgt.sig_ids[j])

    def ahead(r: int, c: int, dr: int, dc: int) -> int | None:
        for d in range(1, GREEDY_WINDOW + 1):
            rr, cc = r + d * dr, c + d * dc
            if rr >= len(src_idx) or cc >= len(tgt_idx):
                return None
            found = compat(rr, cc)
            if found is not None and found.matches:
                return d
        return None

    out: list[Pos] = []
    r = c = 0
    while r < len(src_idx) and c < len(tgt_idx):
        here = compat(r, c)
        if here is not None and here.matches:
            out.append((r, c))
            r, c = r + 1, c + 1
            continue
        skip_t, skip_s = ahead(r, c, 0, 1), ahead(r, c, 1, 0)
        if skip_t is not None and (skip_s is None or skip_t <= skip_s):
            c += skip_t
        elif skip_s is not None:
            r += skip_s
        else:
            if here is not None and here.kind == "shape":
                out.append((r, c))
            r, c = r + 1, c + 1
    return out


def _resolve_candidates(positions: list[Pos], src_idx, tgt_idx, marginals, ctx: Context,
                        out: Aligned) -> list[Pos]:
    """Keep a suffix-ambiguous layer's pair only when structure strictly prefers it."""
    kept = []
    for r, c in positions:
        s, t = src_idx[r], tgt_idx[c]
        verdicts = []
        if t in ctx.ambiguous_t:
            verdicts.append(_decided(r, c, [k for k, i in enumerate(src_idx)
                                            if i in ctx.ambiguous_t[t]], True, marginals,
                                     src_idx, tgt_idx, ctx))
        if s in ctx.ambiguous_s:
            verdicts.append(_decided(r, c, [k for k, j in enumerate(tgt_idx)
                                            if j in ctx.ambiguous_s[s]], False, marginals,
                                     src_idx, tgt_idx, ctx))
        if all(verdicts):
            kept.append((r, c))
            if verdicts:
                out.evidence.setdefault((s, t), []).append(_chosen_text(s, t, ctx))
    return kept


def _decided(r: int, c: int, rivals: list[int], along_rows: bool, marginals, src_idx,
             tgt_idx, ctx: Context) -> bool:
    """Does structure strictly prefer (r, c) over the other candidates in this segment?"""
    others = [k for k in rivals if k != (r if along_rows else c)]
    if not others:
        return True
    if marginals is None:        # greedy walk: only a different signature tells them apart
        sig = (lambda k: ctx.src.sig_ids[src_idx[k]]) if along_rows else \
            (lambda k: ctx.tgt.sig_ids[tgt_idx[k]])
        return all(sig(k) != sig(r if along_rows else c) for k in others)
    mine = marginals[r, c]
    best_other = max(marginals[k, c] if along_rows else marginals[r, k] for k in others)
    return mine > best_other + TIE


def _chosen_text(s: int, t: int, ctx: Context) -> str:
    if t in ctx.ambiguous_t:
        names = ", ".join(ctx.src.label(i) for i in ctx.ambiguous_t[t])
        return f"name suffix fits {names}; structure chose {ctx.src.label(s)}"
    names = ", ".join(ctx.tgt.label(j) for j in ctx.ambiguous_s[s])
    return f"name suffix fits {names}; structure chose {ctx.tgt.label(t)}"


def _names_against_position(out: Aligned, ctx: Context) -> None:
    """Pair interchangeable runs by role name where every name has a role; drop the other
    interchangeable pairs whose names point the other way than their positions."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for s, t in out.pairs:
        sid, tid = ctx.src.sig_ids[s], ctx.tgt.sig_ids[t]
        if ctx.sigs.compat(sid, tid).matches:
            groups.setdefault((sid, tid), []).append((s, t))
    in_order = sorted(out.pairs, key=lambda p: p[1])
    dropped: set[tuple[int, int]] = set()
    for key, group in groups.items():
        if len(group) > 1:
            group = _by_role(_runs(set(group), in_order), ctx, out)
            dropped |= _contradicted(group, ctx, out) if len(group) > 1 else set()
    if dropped:
        out.pairs = [p for p in out.pairs if p not in dropped]


def _runs(group: set[tuple[int, int]], in_order: list[tuple[int, int]]) -> list[list]:
    """The group's pairs cut into runs of consecutive aligned pairs (target order): one block's
    q, k, v, o; the next block's run starts after the pairs between them (its norm)."""
    runs: list[list[tuple[int, int]]] = [[]]
    for pair in in_order:
        if pair in group:
            runs[-1].append(pair)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _by_role(runs: list[list[tuple[int, int]]], ctx: Context, out: Aligned) -> list:
    """Re-pair each run whose names all have distinct roles, the same on both sides; returns
    the pairs of the other runs (left to ``_contradicted``)."""
    rest: list[tuple[int, int]] = []
    for run in runs:
        src_roles = {arch.role_of(ctx.src.names[s]): s for s, _ in run}
        tgt_roles = {arch.role_of(ctx.tgt.names[t]): t for _, t in run}
        if len(run) < 2 or None in src_roles or None in tgt_roles or \
                len(src_roles) != len(run) or len(tgt_roles) != len(run) or \
                set(src_roles) != set(tgt_roles):
            rest.extend(run)
            continue
        by_position = {t: s for s, t in run}
        others = ", ".join(sorted(tgt_roles, key=_role_rank))
        for role, t in tgt_roles.items():
            s = src_roles[role]
            text = (f"paired by role name: {role} ({ctx.src.label(s)} ~ {ctx.tgt.label(t)}); "
                    f"shape and order cannot tell {others} apart")
            if by_position[t] != s:
                text += f" (position gave {ctx.src.label(by_position[t])})"
            out.pairs[out.pairs.index((by_position[t], t))] = (s, t)
            out.evidence[(s, t)] = [text]
            out.by_role.add((s, t))
    return rest


def _role_rank(role: str) -> int:
    return arch.BLOCK_ROLES.index(role) if role in arch.BLOCK_ROLES else len(arch.BLOCK_ROLES)


def _contradicted(group: list[tuple[int, int]], ctx: Context, out: Aligned) -> set:
    srcs, tgts = [s for s, _ in group], [t for _, t in group]
    name_t = _name_partners(srcs, tgts, ctx.src.tokens, ctx.tgt.tokens)   # s -> t by names
    name_s = _name_partners(tgts, srcs, ctx.tgt.tokens, ctx.src.tokens)   # t -> s by names
    by_s, by_t = dict(group), {t: s for s, t in group}
    dropped = set()
    for s in srcs:
        t2 = name_t.get(s)
        if t2 is not None and t2 != by_s[s] and name_s.get(t2) == s:
            if flow_reversed(ctx.src, ctx.tgt, (s, t2), (by_t[t2], by_s[s])):
                ctx.checks.append(order_wins(ctx.src, ctx.tgt, (s, t2), (by_t[t2], by_s[s])))
                continue                     # the data flow confirms the positions
            dropped |= {(s, by_s[s]), (by_t[t2], t2)}
    for s, t in sorted(dropped):
        src_c = tuple(dict.fromkeys([s] + ([name_s[t]] if t in name_s else [])))
        tgt_c = tuple(dict.fromkeys([t] + ([name_t[s]] if s in name_t else [])))
        out.ambiguous.append(Ambiguity("target", t, src_c, _conflict_text(src_c, ctx.src)))
        out.ambiguous.append(Ambiguity("source", s, tgt_c, _conflict_text(tgt_c, ctx.tgt)))
    return dropped


def _conflict_text(candidates: tuple[int, ...], other: Side) -> str:
    by_position = other.label(candidates[0])
    if len(candidates) == 1:
        return f"ambiguous: position says {by_position}, names point elsewhere"
    return (f"ambiguous between {by_position} (position) and {other.label(candidates[1])} "
            f"(name)")


def _name_partners(mine: list[int], theirs: list[int], my_tokens, their_tokens) -> dict:
    """For each of ``mine``: the one of ``theirs`` sharing most tokens that are unique within
    the group on both sides (a unique maximum, at least one token)."""
    df_mine = Counter(tok for i in mine for tok in my_tokens[i])
    df_theirs = Counter(tok for j in theirs for tok in their_tokens[j])
    holder = {tok: j for j in theirs for tok in their_tokens[j] if df_theirs[tok] == 1}
    out = {}
    for i in mine:
        votes = Counter(holder[tok] for tok in my_tokens[i] if df_mine[tok] == 1 and tok in holder)
        ranked = votes.most_common(2)
        if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
            out[i] = ranked[0][0]
    return out
