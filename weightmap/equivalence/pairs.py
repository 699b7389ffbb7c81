"""Which activations to compare, and up to where the two models compute the same thing.

The plan says, per target tensor, which source tensors it derives from. Source and target
layers joined by that relation form connected components: a conv and its BatchNorm on both
sides (a conv bias folded into the BatchNorm's mean), an ONNX Conv with its BatchNorm fused in
and the torch Conv + BatchNorm it was unfused into, two Keras LSTM layers and one stacked torch
LSTM. Inside a component the intermediate outputs differ by design; its *last* source layer and
its *last* target layer (in execution order) compute the same thing, and that is the pair
compared. A layer fused on one side and split into parallel layers on the other (a ``qkv``
against ``q, k, v``) is compared against the split layers' outputs side by side. A target tensor
tied to another (one tensor, two names) joins nothing: its values follow its holder.

Where the models compute different things on purpose (a new head, a deeper target, layers left
new, source layers dropped), pairs are compared only up to the first target layer that keeps a
new tensor, or the first source layer none of whose tensors is used, in execution order;
outputs are compared only when there is no such layer at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..graph import ParamGraph

# Tensors that keep counts, not values the forward pass uses.
BOOKKEEPING_ROLES = frozenset({"num_batches_tracked"})
# Plan statuses whose tensor keeps the target's own value (wholly or in part).
NEW_STATUSES = frozenset({"new", "partial"})


@dataclass(frozen=True)
class Entry:
    """One target tensor of a plan (or a manifest), as verification reads it."""

    target: str
    layer: str
    status: str
    sources: tuple[str, ...] = ()       # in the order the tensor stacks them (a merged qkv)
    steps: tuple[Mapping[str, Any], ...] = ()    # its transforms ({"op": ..., args})
    notes: tuple[str, ...] = ()         # the plan's notes ("decision: ..." among them)

    @property
    def start(self) -> int | None:
        """Where the tensor's part of its one source begins, when its first step slices it
        (a q taken from a fused qkv)."""
        first = self.steps[0] if self.steps else {}
        return first.get("start") if first.get("op") == "slice" else None


@dataclass(frozen=True)
class Pair:
    source: str                        # the component's last source layer
    target: str                        # the component's last target layer
    source_layers: tuple[str, ...]     # in graph order, or in the order the one layer on
    target_layers: tuple[str, ...]     # the other side stacks them (see ``parts``)

    def parts(self, side: str) -> tuple[str, ...]:
        """One layer split into parallel parts on the other side (a fused qkv against q, k,
        v): the parts, in the order the fused layer stacks them, when ``side`` holds several
        layers and the other side one; else ()."""
        mine, theirs = (self.source_layers, self.target_layers) if side == "source" else \
            (self.target_layers, self.source_layers)
        return mine if len(mine) > 1 and len(theirs) == 1 else ()


@dataclass
class Pairing:
    pairs: list[Pair]
    new_targets: dict[str, str] = field(default_factory=dict)     # layer -> a tensor kept new
    unused_sources: list[str] = field(default_factory=list)       # layers none of it used
    synthetic: list[str] = field(default_factory=list)            # target tensors made up


def entries_from_plan(plan: Any) -> list[Entry]:
    return [Entry(t.target, t.layer, t.status, tuple(t.sources),
                  tuple(s.to_dict() for s in t.steps), tuple(t.notes)) for t in plan.tensors]


def entries_from_manifest(manifest: Mapping[str, Any]) -> list[Entry]:
    return [Entry(name, e.get("layer", ""), e.get("status", "new"), tuple(e.get("source", ())),
                  tuple(e.get("transforms", ())), tuple(e.get("notes", ())))
            for name, e in manifest.get("params", {}).items()]


def pair_layers(entries: Sequence[Entry], source: ParamGraph, target: ParamGraph) -> Pairing:
    """Components of the "derives from" relation, each as its (last source, last target) pair
    in graph order (``sequence`` re-sorts them once the runs say what ran when)."""
    src_layer = {p.name: layer.name for layer in source.layers for p in layer.params}
    tgt_param = {p.name: p for p in target.params()}
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    used_sources: set[str] = set()
    new_targets: dict[str, str] = {}
    stacked: dict[str, dict[str, int]] = {}       # target layer -> source layer -> position
    starts: dict[str, int] = {}                    # target layer -> where its slice begins
    for e in entries:
        param = tgt_param.get(e.target)
        if param is None or param.role in BOOKKEEPING_ROLES:
            continue
        if e.status in NEW_STATUSES:
            new_targets.setdefault(e.layer, e.target)
        if param.tied_to:
            continue
        if e.start is not None:
            starts.setdefault(e.layer, e.start)
        for s in e.sources:
            if s in src_layer:
                used_sources.add(src_layer[s])
                positions = stacked.setdefault(e.layer, {})
                positions.setdefault(src_layer[s], len(positions))
                parent[find(("t", e.layer))] = find(("s", src_layer[s]))
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    s_rank = {l.name: i for i, l in enumerate(source.layers)}
    t_rank = {l.name: i for i, l in enumerate(target.layers)}
    pairs = []
    for members in groups.values():
        s_layers = sorted((n for side, n in members if side == "s"), key=s_rank.get)
        t_layers = sorted((n for side, n in members if side == "t"), key=t_rank.get)
        if not (s_layers and t_layers):
            continue
        last_s, last_t = s_layers[-1], t_layers[-1]
        # parts in the order the one layer on the other side stacks them (a name-sorted
        # file lists k_proj before q_proj; a model may compute v first)
        if len(t_layers) == 1:
            order = stacked.get(last_t, {})
            s_layers.sort(key=lambda n: order.get(n, len(order)))
        elif len(s_layers) == 1 and all(l in starts for l in t_layers):
            t_layers.sort(key=starts.get)
        pairs.append(Pair(last_s, last_t, tuple(s_layers), tuple(t_layers)))
    pairs.sort(key=lambda p: t_rank[p.target])
    unused = [l.name for l in source.layers if l.name not in used_sources
              and _computes(l)]
    synthetic = [e.target for e in entries if e.status == "synthetic"]
    return Pairing(pairs, new_targets, unused, synthetic)


def _computes(layer) -> bool:
    """Does this source layer hold tensors the forward pass uses? (Not only bookkeeping, not
    only the shape operands and unused initializers an ONNX reader gathers in one layer.)"""
    aside = set(layer.attrs.get("shape_operands", ())) | set(layer.attrs.get("unused", ()))
    return any(p.role not in BOOKKEEPING_ROLES and p.name not in aside for p in layer.params)


@dataclass(frozen=True)
class Sequenced:
    """The pairs in target execution order, and where comparing stops."""

    pairs: list[Pair]
    comparable: int                     # pairs[:comparable] compute the same thing
    stop_reason: str | None             # why pairs beyond (and the outputs) are not compared


def sequence(pairing: Pairing, source_order: Sequence[str], target_order: Sequence[str]
             ) -> Sequenced:
    """Sort the pairs by target execution order and find the first one past a new target layer
    or a dropped source layer (each order lists the layers that ran, first call first)."""
    t_pos = _positions(target_order)
    s_pos = _positions(source_order)
    pairs = sorted(pairing.pairs, key=lambda p: t_pos.get(p.target, len(t_pos)))
    new = sorted((t_pos[l], l, t) for l, t in pairing.new_targets.items() if l in t_pos)
    dropped = sorted((s_pos[l], l) for l in pairing.unused_sources if l in s_pos)
    for k, pair in enumerate(pairs):
        tp, sp = t_pos.get(pair.target), s_pos.get(pair.source)
        blocking_t = [(l, t) for p, l, t in new if tp is not None and p <= tp]
        blocking_s = [l for p, l in dropped if sp is not None and p < sp]
        if blocking_t:
            layer, tensor = blocking_t[0]
            return Sequenced(pairs, k, f"the target's {layer} is new ({tensor} keeps its "
                                       f"own value)")
        if blocking_s:
            return Sequenced(pairs, k, f"the source's {blocking_s[0]} has no counterpart in "
                                       f"the target")
    if new:
        return Sequenced(pairs, len(pairs), f"the target's {new[0][1]} is new ({new[0][2]} "
                                            f"keeps its own value)")
    if dropped:
        return Sequenced(pairs, len(pairs), f"the source's {dropped[0][1]} has no "
                                            f"counterpart in the target")
    return Sequenced(pairs, len(pairs), None)


def _positions(order: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, name in enumerate(order):
        out.setdefault(name, i)
    return out
