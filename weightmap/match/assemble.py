"""Decisions → the Matching: layer matches in target order with their parameter pairs, then
every leftover (target side in target order, then source side in source order)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MatchError
from .forced import rule_params
from .params import pair_params
from .prepare import Side, Signatures
from .result import LayerMatch, Matching, Unmatched
from .rules import Rules
from .signature import op_evidence
from .structure import Ambiguity

if TYPE_CHECKING:
    from .engine import Decisions

# Confidence by how a pair was found; weak shape evidence (axes unknown) and a cross-family pair
# (dense~embedding) lower it.
BASE_SCORE = {"rule": 1.0, "exact": 1.0, "suffix": 0.9, "role": 0.85, "structure": 0.8}
WEAK_FACTOR = 0.7
CROSS_PENALTY = 0.1


class _Builder:
    def __init__(self, src: Side, tgt: Side, sigs: Signatures, d: "Decisions"):
        self.src, self.tgt, self.sigs, self.d = src, tgt, sigs, d
        self.layers: list[LayerMatch] = []
        self.target_left: list[Unmatched] = []
        self.source_left: dict[str, list[Unmatched]] = {}   # by source layer name
        self.aligned_s = {s: t for t, s in d.aligned.items()}
        self.conflict_s = {s: t for t, s in d.names.conflicts.items()}
        self.matched_t, self.matched_s = self._matched()

    def _matched(self) -> tuple[set[int], set[int]]:
        """Indices that end up in a LayerMatch, known before the Matching is built."""
        pairs = {t: found[0] for t in range(len(self.tgt))
                 if not self._ignored_target(t) and (found := self._found(t)) is not None}
        return set(pairs), set(pairs.values())

    def compat(self, s: int, t: int):
        return self.sigs.compat(self.src.sig_ids[s], self.tgt.sig_ids[t])

    def build(self) -> Matching:
        for t in range(len(self.tgt)):
            self._target(t)
        used_layers = {m.source for m in self.layers}
        used_params = {s for m in self.layers for pp in m.params for s in pp.sources}
        left = list(self.target_left)
        for s in range(len(self.src)):
            name = self.src.label(s)
            if name not in used_layers and self.src.graph.layers[s].params:
                left += self._unused_source(s, used_params)
            left += [u for u in self.source_left.get(name, []) if u.side == "source"
                     and (u.kind == "ignored" or u.params[0] not in used_params)]
        # dict.fromkeys: a source layer feeding two targets (parameter rules) reports once
        return Matching(layers=tuple(self.layers), unmatched=tuple(dict.fromkeys(left)),
                        notes=tuple(dict.fromkeys(self.d.notes)),
                        checks=tuple(dict.fromkeys(self.d.checks)))

    # -- target side ------------------------------------------------------------------------
    def _target(self, t: int) -> None:
        if not self.tgt.graph.layers[t].params:
            return                                   # nothing to feed, nothing to report
        if self._ignored_target(t):
            self.target_left.append(_ignored("target", self.tgt, t))
            return
        found = self._found(t)
        if found is None:
            self.target_left.append(self._why_not(t))
            return
        s, how, lead, rest = found
        f = self.d.forced.get(t)
        forced = {**rule_params(f, self.src, self.tgt, t), **f.params} if f else None
        self._match(s, t, how, lead, rest, forced)

    def _ignored_target(self, t: int) -> bool:
        """Ignored by a rule, or held out by a graph pass and not paired by a layer rule."""
        f = self.d.forced.get(t)
        return t in self.tgt.ignored_layers and not (t in self.tgt.held and f is not None
                                                     and f.layer_level)

    def _found(self, t: int) -> tuple[int, str, list[str], list[str]] | None:
        """(source, how, leading evidence, further evidence) for target ``t``, or None."""
        d = self.d
        f = d.forced.get(t)
        rule = [f"pair rule {', '.join(f.keys)}"] if f else []
        if f is not None and f.layer_level:
            return f.source, "rule", rule, []
        if t in d.names.pairs:
            s, text = d.names.pairs[t]
            how = "exact" if t in d.names.exact else "suffix"
            return s, how, [text] + rule, d.evidence.get((s, t), [])
        s = d.aligned.get(t)
        if s is not None and ("target", t) not in d.ambiguous and self.compat(s, t).matches:
            how = "role" if (s, t) in d.by_role else "structure"
            return s, how, rule, d.evidence.get((s, t), [])
        if f is not None:                  # parameter rules alone: their source's layer
            return f.source, "rule", rule, []
        return None

    def _why_not(self, t: int) -> Unmatched:
        d = self.d
        if ("target", t) in d.ambiguous:
            return _ambiguous(d.ambiguous[("target", t)], self.tgt, self.src)
        return self._leftover(t, self.tgt, self.src, d.aligned.get(t, d.names.conflicts.get(t)),
                              d.names.ambiguous_t, d.names.ambiguous_s)

    def _match(self, s: int, t: int, how: str, lead: list[str], rest: list[str],
               forced=None) -> None:
        """Record a layer match; evidence reads: why (rule/name), what agrees, where."""
        slayer, tlayer = self.src.graph.layers[s], self.tgt.graph.layers[t]
        compat = self.compat(s, t)
        facts = [op_evidence(slayer.op, tlayer.op)] + list(compat.evidence)
        if how == "rule" and not compat.matches:
            facts.append("forced although " + (compat.reason() if compat.kind == "shape"
                                               else "the layers differ"))
        shared = self.src.tokens[s] & self.tgt.tokens[t]
        if how in ("structure", "role") and shared:
            facts.append(f"name tokens shared: {', '.join(sorted(shared))}")
        score = BASE_SCORE[how] * (WEAK_FACTOR if compat.kind == "weak" else 1.0)
        score -= CROSS_PENALTY if compat.cross else 0.0
        pairs, left = pair_params(slayer, tlayer, forced=forced,
                                  skip_source=self.src.ignored_params.keys(),
                                  skip_target=self.tgt.ignored_params.keys(),
                                  by_shape=how == "rule" and not compat.matches)
        self.layers.append(LayerMatch(
            target=tlayer.name, source=slayer.name, strategy="name" if how in ("exact", "suffix")
            else how, score=round(max(score, 0.0), 3),
            evidence=tuple(dict.fromkeys(lead + facts + rest)), params=pairs))
        self.target_left += [u for u in left if u.side == "target"]
        self.target_left += _ignored_params("target", tlayer, self.tgt)
        self.source_left.setdefault(slayer.name, []).extend(
            [u for u in left if u.side == "source"] + _ignored_params("source", slayer, self.src))

    # -- source side ------------------------------------------------------------------------
    def _unused_source(self, s: int, used_params: set[str]) -> list[Unmatched]:
        d, src = self.d, self.src
        params = tuple(p.name for p in src.graph.layers[s].params if p.name not in used_params)
        if not params:
            return []                    # every tensor feeds a target through pair rules
        if s in src.ignored_layers:
            return [_ignored("source", src, s)]
        if ("source", s) in d.ambiguous:
            return [_ambiguous(d.ambiguous[("source", s)], src, self.tgt, params)]
        other = self.aligned_s.get(s, self.conflict_s.get(s))
        return [self._leftover(s, src, self.tgt, other, d.names.ambiguous_s,
                               d.names.ambiguous_t, params)]

    # -- either side ------------------------------------------------------------------------
    def _leftover(self, i: int, me: Side, other: Side, counterpart: int | None,
                  mine: dict[int, tuple[int, ...]], theirs: dict[int, tuple[int, ...]],
                  params: tuple[str, ...] | None = None) -> Unmatched:
        """Why layer ``i`` of ``me`` has no match: ambiguous name, shape, or none at all."""
        params = params if params is not None else tuple(p.name for p in
                                                         me.graph.layers[i].params)
        if i in mine:
            labels = tuple(other.label(k) for k in mine[i])
            return Unmatched(me.side, me.label(i), params,
                             f"ambiguous between {' and '.join(labels)}", "ambiguous", labels)
        rivals = [k for k, c in theirs.items() if i in c]
        open_rivals = [k for k in rivals if k not in
                       (self.matched_s if me.side == "target" else self.matched_t)]
        if open_rivals:
            k = open_rivals[0]
            fits = ", ".join(me.label(j) for j in theirs[k])
            return Unmatched(me.side, me.label(i), params,
                             f"ambiguous: the name of {other.label(k)} fits {fits}", "ambiguous",
                             tuple(other.label(j) for j in open_rivals))
        if rivals and counterpart is None:
            return Unmatched(me.side, me.label(i), params,
                             f"no counterpart (the name of {other.label(rivals[0])} fits it too, "
                             f"but structure paired that layer with another)", "missing")
        if counterpart is None:
            return Unmatched(me.side, me.label(i), params, "no counterpart", "missing")
        s, t = (i, counterpart) if me.side == "source" else (counterpart, i)
        compat = self.compat(s, t)
        if compat.kind == "shape":
            return Unmatched(me.side, me.label(i), params,
                             compat.reason(source_first=me.side == "source"), "shape",
                             (other.label(counterpart),))
        return Unmatched(me.side, me.label(i), params,
                         f"no counterpart ({other.label(counterpart)!r} has the same place or "
                         f"name but is another kind of layer)", "missing",
                         (other.label(counterpart),))


def assemble(src: Side, tgt: Side, sigs: Signatures, d: "Decisions") -> Matching:
    return _Builder(src, tgt, sigs, d).build()


def _ignored(side: str, me: Side, i: int) -> Unmatched:
    layer = me.graph.layers[i]
    if i in me.held:                   # held out by a graph pass: not a rule, nothing ignored
        return Unmatched(side, layer.name, tuple(p.name for p in layer.params), me.held[i],
                         "missing")
    return Unmatched(side, layer.name, tuple(p.name for p in layer.params),
                     f"ignored by rule {me.ignored_layers[i]}", "ignored")


def _ignored_params(side: str, layer, me: Side) -> list[Unmatched]:
    return [Unmatched(side, layer.name, (p.name,), f"ignored by rule {me.ignored_params[p.name]}",
                      "ignored") for p in layer.params if p.name in me.ignored_params]


def _ambiguous(amb: Ambiguity, me: Side, other: Side,
               params: tuple[str, ...] | None = None) -> Unmatched:
    if params is None:
        params = tuple(p.name for p in me.graph.layers[amb.index].params)
    return Unmatched(amb.side, me.label(amb.index), params, amb.reason, "ambiguous",
                     tuple(other.label(k) for k in amb.candidates))


def check_expect(matching: Matching, rules: Rules) -> None:
    """``expect`` in the rules: the number of layer matches, exactly or at least."""
    found = len(matching.layers)
    exp = rules.expect
    matched = {m.target for m in matching.layers}
    missing = list(dict.fromkeys(u.layer for u in matching.unmatched
                                 if u.side == "target" and u.layer not in matched))
    hint = ("unmatched target layers: " + ", ".join(missing[:8]) +
            (" ..." if len(missing) > 8 else "")) if missing else None
    if exp.matched is not None and found != exp.matched:
        raise MatchError(f"expected {exp.matched} matched layers (rules key expect.matched), "
                         f"matched {found}", path=rules.origin, hint=hint)
    if exp.min_matched is not None and found < exp.min_matched:
        raise MatchError(f"expected at least {exp.min_matched} matched layers (rules key "
                         f"expect.min_matched), matched {found}", path=rules.origin, hint=hint)
