"""``match(source, target, rules)``: rules, then names, then structure, then parameters.

Each step removes what it decided from the pool the next one sees; every decision keeps its
strategy and evidence. The result is assembled in ``assemble.py``.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from ..graph import ParamGraph
from .anchors import TRUSTED_ORDERS, chain, crossing
from .assemble import assemble, check_expect
from .flow import flow_reversed, order_wins
from .forced import Forced, resolve_pairs
from .naming import NameResult, match_names
from .prepare import Side, Signatures, prepare
from .result import Matching
from .rules import Rules
from .structure import Ambiguity, Context, align_segment


@dataclass
class Decisions:
    """Everything the steps decided, by layer index."""

    forced: dict[int, Forced]
    names: NameResult = field(default_factory=NameResult)
    aligned: dict[int, int] = field(default_factory=dict)            # t -> s, by structure
    by_role: set[tuple[int, int]] = field(default_factory=set)       # (s, t) by role name
    evidence: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    ambiguous: dict[tuple[str, int], Ambiguity] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)          # the report's check: lines

    def add_ambiguity(self, amb: Ambiguity) -> None:
        self.ambiguous.setdefault((amb.side, amb.index), amb)


def match(source: ParamGraph, target: ParamGraph, rules: Rules | None = None, *,
          check: bool = True) -> Matching:
    """Match ``source`` layers (and their parameters) to ``target``'s; see docs/matching.md.
    ``check=False`` leaves the rules' ``expect`` to the caller (``assemble.check_expect``)."""
    rules = rules or Rules()
    sigs = Signatures()
    src = prepare(source, "source", rules, sigs)
    tgt = prepare(target, "target", rules, sigs)
    d = Decisions(forced=resolve_pairs(rules, src, tgt))
    d.notes += [f"{side.side}: wrapper prefix {p!r} stripped from every name"
                for side in (src, tgt) for p in side.prefixes]
    whole = {t: (f.source, *f.more) for t, f in d.forced.items() if f.layer_level}
    src_free = _holding(src) - set(src.ignored_layers) - {s for ss in whole.values() for s in ss}
    tgt_free = _holding(tgt) - set(tgt.ignored_layers) - set(whole)
    d.names = match_names(src, tgt, sigs, src_free, tgt_free)
    anchors = _anchors(src, tgt, d, trusted=source.order in TRUSTED_ORDERS
                       and target.order in TRUSTED_ORDERS)
    taken_s = {s for s, _ in d.names.pairs.values()} | {a.index for a in d.ambiguous.values()
                                                        if a.side == "source"}
    taken_t = set(d.names.pairs) | {a.index for a in d.ambiguous.values() if a.side == "target"}
    _structure(src, tgt, sigs, d, anchors, sorted(src_free - taken_s),
               sorted(tgt_free - taken_t))
    matching = assemble(src, tgt, sigs, d)
    if check:
        check_expect(matching, rules)
    return matching


def _holding(side: Side) -> set[int]:
    """Layers with parameters: a parameterless layer (a Flatten a reader kept) has nothing to
    match and would only lengthen gaps."""
    return {i for i, layer in enumerate(side.graph.layers) if layer.params}


def _anchors(src: Side, tgt: Side, d: Decisions, trusted: bool) -> list[tuple[int, int]]:
    """The chain of rule and name pairs; name pairs that cross it against a trusted order with
    an interchangeable anchor become ambiguous (anchors.crossing has the exact rule)."""
    rule_pairs = {(f.source, t) for t, f in d.forced.items() if f.layer_level}
    name_pairs = [(s, t) for t, (s, _) in d.names.pairs.items()]
    anchors = chain(sorted(rule_pairs) + name_pairs)

    def interchangeable(p: tuple[int, int], q: tuple[int, int]) -> bool:
        return q not in rule_pairs and src.sig_ids[p[0]] == src.sig_ids[q[0]] \
            and tgt.sig_ids[p[1]] == tgt.sig_ids[q[1]]

    on_chain = set(anchors)
    for p, q in crossing(name_pairs, anchors, trusted, interchangeable):
        on_chain.discard(q)
        if flow_reversed(src, tgt, p, q):           # the data flow decides: order wins
            d.names.pairs.pop(p[1], None)
            d.names.pairs.pop(q[1], None)
            d.checks.append(order_wins(src, tgt, p, q))
            continue
        for (s, t), (s2, t2) in ((p, q), (q, p)):
            d.names.pairs.pop(t, None)
            d.add_ambiguity(Ambiguity("target", t, (s, s2), f"ambiguous between "
                                      f"{src.label(s)} (name) and {src.label(s2)} (position)"))
            d.add_ambiguity(Ambiguity("source", s, (t, t2), f"ambiguous between "
                                      f"{tgt.label(t)} (name) and {tgt.label(t2)} (position)"))
    for s, t in name_pairs:
        if t in d.names.pairs and (s, t) not in on_chain:
            how = f"{src.graph.order}/{tgt.graph.order}"
            d.evidence.setdefault((s, t), []).append(
                f"order differs from the other name pairs; names win (graph order {how}"
                + (")" if trusted else " is not both execution/config)"))
            if trusted:
                d.checks.append(f"{tgt.label(t)} <- {src.label(s)}: paired by name against the "
                                f"order both models run their layers in ({how}; no other "
                                f"layer of these shapes could take its place); check it")
    return [a for a in anchors if a in on_chain]


def _structure(src: Side, tgt: Side, sigs: Signatures, d: Decisions,
               anchors: list[tuple[int, int]], src_left: list[int], tgt_left: list[int]) -> None:
    """Align the layers left between consecutive anchors."""
    ctx = Context(src, tgt, sigs, d.names.ambiguous_t, d.names.ambiguous_s, d.notes, d.checks)
    bounds = [(-1, -1)] + anchors + [(len(src), len(tgt))]
    for (s0, t0), (s1, t1) in zip(bounds, bounds[1:]):
        seg_s = src_left[bisect_right(src_left, s0):bisect_left(src_left, s1)]
        seg_t = tgt_left[bisect_right(tgt_left, t0):bisect_left(tgt_left, t1)]
        if not seg_s or not seg_t:
            continue
        result = align_segment(seg_s, seg_t, ctx)
        where = (f"aligned by position between {tgt.label(t0) if t0 >= 0 else 'the start'} and "
                 f"{tgt.label(t1) if t1 < len(tgt) else 'the end'}")
        d.by_role |= result.by_role
        for s, t in result.pairs:
            d.aligned[t] = s
            d.evidence.setdefault((s, t), []).extend(result.evidence.get((s, t), []))
            d.evidence[(s, t)].append(where)
        for amb in result.ambiguous:
            d.add_ambiguity(amb)
