"""``pair`` rules resolved against the two graphs: which target layers are forced, and how."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..errors import UsageError
from .prepare import Side
from .rules import Pair, Rules


@dataclass
class Forced:
    """What rules force into one target layer. ``layer_level``: a layer rule pairs the whole
    layer; otherwise only ``params`` are forced and the layer is matched as usual, falling back
    to the layer of the first forced source when nothing else matches it."""

    source: int                                             # source layer index
    keys: list[str] = field(default_factory=list)           # rule keys, for the evidence
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target param -> sources
    layer_level: bool = False


def resolve_pairs(rules: Rules, src: Side, tgt: Side) -> dict[int, Forced]:
    """Target layer index → what the rules force into it. Layer rules first, then parameter
    rules (which add to a layer rule, or stand alone)."""
    forced: dict[int, Forced] = {}
    layer_rules = [r for r in rules.pair if tgt.find_layer(r.target) is not None]
    param_rules = [r for r in rules.pair if tgt.find_layer(r.target) is None]
    for rule in layer_rules:
        t = tgt.find_layer(rule.target)
        _not_ignored(tgt, t, rule, rules.origin, "target")
        if len(rule.sources) != 1:
            raise UsageError(f"rules key {rule.key + '.source'!r}: a target layer takes one "
                             f"source layer, found {len(rule.sources)} names", path=rules.origin)
        s = src.find_layer(rule.sources[0])
        if s is None:
            raise _unknown(rule.sources[0], src, rules.origin, rule.key + ".source", "layer")
        _not_ignored(src, s, rule, rules.origin, "source")
        forced[t] = Forced(source=s, keys=[rule.key], layer_level=True)
    for rule in param_rules:
        found = tgt.find_param(rule.target)
        if found is None:
            raise _unknown(rule.target, tgt, rules.origin, rule.key + ".target",
                           "layer or parameter")
        t, tname = found
        _not_ignored(tgt, t, rule, rules.origin, "target", tname)
        sources = []
        for k, name in enumerate(rule.sources):
            hit = src.find_param(name)
            if hit is None:
                raise _unknown(name, src, rules.origin, f"{rule.key}.source[{k}]", "parameter")
            _not_ignored(src, hit[0], rule, rules.origin, "source", hit[1])
            sources.append(hit)
        entry = forced.setdefault(t, Forced(source=sources[0][0]))
        entry.keys.append(rule.key)
        entry.params[tname] = tuple(name for _, name in sources)
    return forced


def _not_ignored(side: Side, index: int, rule: Pair, origin: str, which: str,
                 param: str | None = None) -> None:
    by = side.ignored_layers.get(index) or side.ignored_params.get(param or "")
    if by:
        raise UsageError(f"rules key {rule.key!r} pairs {param or side.label(index)!r}, which "
                         f"{by} ignores", path=origin,
                         hint=f"drop one of the two rules for this {which} name")


def _unknown(name: str, side: Side, origin: str, key: str, what: str) -> UsageError:
    known = [l.name for l in side.graph.layers] + [p.name for p in side.graph.params()]
    close = difflib.get_close_matches(name, known, n=3)
    return UsageError(f"rules key {key!r}: no {side.side} {what} named {name!r}", path=origin,
                      hint=f"did you mean {', '.join(close)}?" if close else
                      "names are as `weightmap inspect` lists them")
