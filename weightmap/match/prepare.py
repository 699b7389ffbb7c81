"""One graph as the matcher sees it: normalised names, tokens, signatures, ignored parts."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import ParamGraph
from .normalise import clean, common_prefixes, normalize_param_name, strip_prefixes, tokens
from .rules import Ignore, Rules
from .signature import Compat, LayerSig, compare, layer_signature


@dataclass
class Side:
    """Per-layer facts of one graph, indexed by layer position."""

    graph: ParamGraph
    side: str                                   # "source" | "target"
    names: list[str]                            # normalised names (renamed first, for source)
    tokens: list[frozenset[str]]
    sig_ids: list[int]
    prefixes: tuple[str, ...]
    ignored_layers: dict[int, str] = field(default_factory=dict)   # index -> rule text
    ignored_params: dict[str, str] = field(default_factory=dict)   # param name -> rule text
    # layers a graph pass holds out of layer matching (attrs["match_held"]: why), e.g. a fused
    # qkv projection whose counterpart is three layers; also listed in ignored_layers
    held: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def label(self, i: int) -> str:
        return self.graph.layers[i].name

    def find_layer(self, name: str) -> int | None:
        """A layer by its stored or normalised name."""
        for i, layer in enumerate(self.graph.layers):
            if layer.name == name or self.names[i] == name:
                return i
        return None

    def find_param(self, name: str) -> tuple[int, str] | None:
        """(layer index, stored param name) by stored name or torch-style normalised name."""
        wanted = normalize_param_name(name)
        for i, layer in enumerate(self.graph.layers):
            for p in layer.params:
                if p.name == name or self._param_norm(p.name) == wanted:
                    return i, p.name
        return None

    def _param_norm(self, name: str) -> str:
        return strip_prefixes(normalize_param_name(name), self.prefixes)


class Signatures:
    """Layer signatures interned to ids shared by both sides, and a cache of comparisons."""

    def __init__(self) -> None:
        self.ids: dict[LayerSig, int] = {}
        self.sigs: list[LayerSig] = []
        self._cache: dict[tuple[int, int], Compat] = {}

    def intern(self, sig: LayerSig) -> int:
        if sig not in self.ids:
            self.ids[sig] = len(self.sigs)
            self.sigs.append(sig)
        return self.ids[sig]

    def compat(self, source_id: int, target_id: int) -> Compat:
        key = (source_id, target_id)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = compare(self.sigs[source_id], self.sigs[target_id])
        return found


def prepare(graph: ParamGraph, side: str, rules: Rules, sigs: Signatures) -> Side:
    layers = graph.layers
    stored = [rules.renamed(l.name) if side == "source" else l.name for l in layers]
    cleaned = [clean(n) for n in stored]
    prefixes = common_prefixes(cleaned, graph.meta.get("prefixes") or ())
    names = [strip_prefixes(n, prefixes) for n in cleaned]
    out = Side(graph=graph, side=side, names=names, tokens=[tokens(n) for n in names],
               sig_ids=[], prefixes=prefixes)
    _mark_ignored(out, rules.ignores(side))
    _mark_held(out)
    for i, layer in enumerate(layers):
        skip = {p.name for p in layer.params if p.name in out.ignored_params}
        out.sig_ids.append(sigs.intern(layer_signature(layer, skip)))
    return out


def _mark_held(side: Side) -> None:
    for i, layer in enumerate(side.graph.layers):
        why = layer.attrs.get("match_held")
        if why and i not in side.ignored_layers:
            side.held[i] = side.ignored_layers[i] = str(why)


def _mark_ignored(side: Side, rules: tuple[Ignore, ...]) -> None:
    if not rules:
        return
    for i, layer in enumerate(side.graph.layers):
        hit = _first_hit(rules, (layer.name, side.names[i]))
        if hit is not None:
            side.ignored_layers[i] = hit
            continue
        for p in layer.params:
            hit = _first_hit(rules, (p.name, normalize_param_name(p.name),
                                     side._param_norm(p.name)))
            if hit is not None:
                side.ignored_params[p.name] = hit
        if layer.params and all(p.name in side.ignored_params for p in layer.params):
            side.ignored_layers[i] = side.ignored_params[layer.params[0].name]


def _first_hit(rules: tuple[Ignore, ...], names: tuple[str, ...]) -> str | None:
    for rule in rules:
        if any(rule.matches(n) for n in names):
            return f"{rule.key} {rule.pattern!r}"
    return None
