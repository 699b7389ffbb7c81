"""Which layers feed which: ``attrs["fed_by"]``, and an order of layers that does not depend on
how a model happened to be written.

Readers that see a model's data flow (a Keras model config, an ONNX graph, a traced torch
forward) give each layer ``attrs["fed_by"]``: the layers with weights whose outputs reach its
input through layers without weights (activations, pooling, additions, concatenations ...);
``()`` for a layer fed by the model's inputs alone.

Two writings of one network can list its layers in different orders: Keras creates a
ResNet block's shortcut conv before the main branch and lists them interleaved (conv1, conv2,
conv0, conv3, bn0, bn3), torchvision registers and runs the shortcut after it, other code runs
it first. ``branch_order`` gives every such writing the same order: a topological order of
``fed_by`` that follows a chain of layers while it lasts and, where branches start, takes the
longer branch first (ties in the given order). A sequence alignment of two models in that order
pairs their main branches and their shortcuts.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .graph import Layer

FED_BY = "fed_by"


def fed_by(inputs: Mapping[str, Sequence[str]], weighted: Iterable[str]
           ) -> dict[str, tuple[str, ...]]:
    """For each weighted node, the weighted nodes reaching it through unweighted ones.

    ``inputs`` maps every node (weighted or not) to the nodes feeding it; unknown names are
    the model's inputs. Each result keeps the order the producers are first met in."""
    weighted = set(weighted)
    memo: dict[str, tuple[str, ...]] = {}

    def reach(node: str) -> tuple[str, ...]:
        """The weighted nodes whose output is ``node``'s output, or reaches it unweighted."""
        if node in weighted:
            return (node,)
        if node in memo:
            return memo[node]
        memo[node] = ()                        # a cycle (never in a model) ends here
        found: dict[str, None] = {}
        for src in inputs.get(node, ()):
            found.update(dict.fromkeys(reach(src)))
        memo[node] = tuple(found)
        return memo[node]

    out = {}
    for node in inputs:
        if node in weighted:
            found: dict[str, None] = {}
            for src in inputs[node]:
                found.update(dict.fromkeys(reach(src)))
            out[node] = tuple(found)
    return out


def feeds(layers: Sequence[Layer], first: str, second: str) -> bool:
    """Whether ``first``'s output reaches ``second`` (through any layers), by ``fed_by``;
    False where ``fed_by`` is not known."""
    fed = {l.name: l.attrs.get(FED_BY, ()) for l in layers}
    todo, seen = [second], {second}
    while todo:
        for src in fed.get(todo.pop(), ()):
            if src == first:
                return True
            if src not in seen:
                seen.add(src)
                todo.append(src)
    return False


def consumers(layers: Sequence[Layer]) -> dict[str, list[str]]:
    """Layer name -> the layers its output feeds (from ``fed_by``; empty without it)."""
    out: dict[str, list[str]] = {l.name: [] for l in layers}
    for layer in layers:
        for src in layer.attrs.get(FED_BY, ()):
            if src in out and src != layer.name:
                out[src].append(layer.name)
    return out


def branch_order(layers: Sequence[Layer]) -> list[Layer]:
    """``layers`` in branch order (see the module doc). A layer without ``fed_by`` stays right
    after the layer it followed; without any ``fed_by`` nothing moves."""
    known = [l for l in layers if FED_BY in l.attrs]
    if not known:
        return list(layers)
    rank = {l.name: i for i, l in enumerate(known)}
    preds = {l.name: [p for p in dict.fromkeys(l.attrs[FED_BY]) if p in rank and p != l.name]
             for l in known}
    succs: dict[str, list[str]] = {n: [] for n in rank}
    for name, ps in preds.items():
        for p in ps:
            succs[p].append(name)
    chain: dict[str, int] = {}

    def chain_length(name: str) -> int:
        """Layers from ``name`` on while each has one successor fed by it alone."""
        length, node, seen = 0, name, set()
        while node not in seen:
            seen.add(node)
            length += 1
            nxt = succs[node]
            if len(nxt) != 1 or len(preds[nxt[0]]) != 1:
                break
            node = nxt[0]
        return length

    waiting = {n: len(ps) for n, ps in preds.items()}
    ready = [n for n, k in waiting.items() if k == 0]
    order: list[str] = []
    last: str | None = None
    while ready:
        follow = [n for n in succs[last] if n in ready] if last is not None else []
        pool = follow or ready
        for n in pool:
            if n not in chain:
                chain[n] = chain_length(n)
        pick = max(pool, key=lambda n: (chain[n], -rank[n]))
        ready.remove(pick)
        order.append(pick)
        last = pick
        for s in succs[pick]:
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
    if len(order) != len(known):                 # a cycle: keep the given order
        return list(layers)
    by_name = {l.name: l for l in known}
    return _keep_unknown_in_place([by_name[n] for n in order], layers)


def _keep_unknown_in_place(ordered: list[Layer], layers: Sequence[Layer]) -> list[Layer]:
    """Put each layer without ``fed_by`` back right after the layer it followed in
    ``layers`` (a torch module the forward never called, whose weights its parent uses)."""
    after: dict[str | None, list[Layer]] = {}
    previous: str | None = None
    for layer in layers:
        if FED_BY not in layer.attrs:
            after.setdefault(previous, []).append(layer)
        previous = layer.name
    out: list[Layer] = []

    def place(layer: Layer) -> None:
        out.append(layer)
        for follower in after.get(layer.name, ()):
            place(follower)

    for follower in after.get(None, ()):
        place(follower)
    for layer in ordered:
        place(layer)
    return out
