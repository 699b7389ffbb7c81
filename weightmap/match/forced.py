"""``pair`` rules resolved against the two graphs: which target layers are forced, and how."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..errors import UsageError
from .params import role_of
from .prepare import Side
from .result import ParamPair
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
    more: tuple[int, ...] = ()          # further source layers, stacked after ``source``
    part: tuple[int, tuple[int, ...]] | None = None   # (index, target layers) of a split source


def resolve_pairs(rules: Rules, src: Side, tgt: Side) -> dict[int, Forced]:
    """Target layer index → what the rules force into it. Layer rules first, then parameter
    rules (which add to a layer rule, or stand alone)."""
    forced: dict[int, Forced] = {}
    layer_rules = [r for r in rules.pair if tgt.find_layer(r.target) is not None]
    param_rules = [r for r in rules.pair if tgt.find_layer(r.target) is None]
    for rule in layer_rules:
        t = tgt.find_layer(rule.target)
        _not_ignored(tgt, t, rule, rules.origin, "target")
        found = []
        for k, name in enumerate(rule.sources):
            s = src.find_layer(name)
            if s is None:
                raise _unknown(name, src, rules.origin, rule.key + (
                    f".source[{k}]" if len(rule.sources) > 1 else ".source"), "layer")
            _not_ignored(src, s, rule, rules.origin, "source")
            found.append(s)
        forced[t] = Forced(source=found[0], keys=[rule.key], layer_level=True,
                           more=tuple(found[1:]), part=_part(rule, tgt, rules.origin))
    for rule in param_rules:
        if rule.parts:
            raise UsageError(f"rules key {rule.key + '.target'!r}: a list of targets names "
                             f"target layers; {rule.target!r} is not one", path=rules.origin)
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


def _part(rule: Pair, tgt: Side, origin: str) -> tuple[int, tuple[int, ...]] | None:
    """(index, target layer indices) for a rule splitting one source among several targets."""
    if not rule.parts:
        return None
    layers = []
    for k, name in enumerate(rule.parts):
        t = tgt.find_layer(name)
        if t is None:
            raise _unknown(name, tgt, origin, f"{rule.key}.target[{k}]", "layer")
        layers.append(t)
    return rule.parts.index(rule.target), tuple(layers)


def rule_params(f: Forced, src: Side, tgt: Side, t: int) -> dict[str, ParamPair]:
    """The parameter pairs a layer rule fixes beyond one to one: the same-role parameters of
    several source layers stacked on the out axis (note ``concat``), or this target's share of
    a source split among several targets (note ``slice:START:STOP`` on the source's out axis,
    sizes from the targets, in the rule's order)."""
    target = tgt.graph.layers[t]
    out: dict[str, ParamPair] = {}
    if f.more:
        layers = [src.graph.layers[i] for i in (f.source, *f.more)]
        for p in target.params:
            parts = [next((q for q in l.params if role_of(q) == role_of(p)), None)
                     for l in layers]
            if all(q is not None for q in parts):
                out[p.name] = ParamPair(p.name, tuple(q.name for q in parts), "concat")
    elif f.part is not None:
        index, siblings = f.part
        source = src.graph.layers[f.source]
        for p in target.params:
            sizes = [_out_size(tgt.graph.layers[i], role_of(p)) for i in siblings]
            q = next((q for q in source.params if role_of(q) == role_of(p)), None)
            if q is not None and None not in sizes:
                start = sum(sizes[:index])
                out[p.name] = ParamPair(p.name, (q.name,), f"slice:{start}:{start + sizes[index]}")
    return out


def _out_size(layer, role: str) -> int | None:
    p = next((q for q in layer.params if role_of(q) == role), None)
    if p is None or p.axes is None or "out" not in p.axes:
        return None
    return p.shape[p.axes.index("out")]


def _not_ignored(side: Side, index: int, rule: Pair, origin: str, which: str,
                 param: str | None = None) -> None:
    # a layer a graph pass holds out of matching (fused qkv against q/k/v) may be paired
    by = (None if index in side.held else side.ignored_layers.get(index)) or \
        side.ignored_params.get(param or "")
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
