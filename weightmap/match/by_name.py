"""Step 2: pairs from names — exact normalised names, then unique dotted suffixes.

A name pair must also be compatible (same op family, same canonical shapes); otherwise it is a
``conflict``: left to structure, and reported as a shape mismatch if it stays unpaired. A suffix
that fits several layers makes them ``ambiguous``: structure must decide among the candidates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet

from .normalise import suffix_candidates
from .prepare import Side, Signatures


@dataclass
class NameResult:
    pairs: dict[int, tuple[int, str]] = field(default_factory=dict)     # t -> (s, evidence)
    exact: set[int] = field(default_factory=set)                         # t paired by equality
    conflicts: dict[int, int] = field(default_factory=dict)              # t -> s (incompatible)
    ambiguous_t: dict[int, tuple[int, ...]] = field(default_factory=dict)  # t -> candidate s
    ambiguous_s: dict[int, tuple[int, ...]] = field(default_factory=dict)  # s -> candidate t


def match_names(src: Side, tgt: Side, sigs: Signatures, src_free: AbstractSet[int],
                tgt_free: AbstractSet[int]) -> NameResult:
    out = NameResult()
    _exact(src, tgt, sigs, src_free, tgt_free, out)
    taken_s = {s for s, _ in out.pairs.values()} | set(out.conflicts.values())
    taken_t = set(out.pairs) | set(out.conflicts)
    _suffix(src, tgt, sigs, {i for i in src_free if i not in taken_s},
            {j for j in tgt_free if j not in taken_t}, out)
    return out


def _unique_index(side: Side, free: AbstractSet[int]) -> dict[str, int]:
    seen: dict[str, list[int]] = {}
    for i in sorted(free):
        seen.setdefault(side.names[i], []).append(i)
    return {name: ids[0] for name, ids in seen.items() if len(ids) == 1}


def _exact(src: Side, tgt: Side, sigs: Signatures, src_free, tgt_free, out: NameResult) -> None:
    by_name = _unique_index(src, src_free)
    for name, t in sorted(_unique_index(tgt, tgt_free).items(), key=lambda kv: kv[1]):
        s = by_name.get(name)
        if s is None:
            continue
        opaque = not sigs.compat(src.sig_ids[s], tgt.sig_ids[t]).matches and \
            _opaque_alike(src.graph.layers[s], tgt.graph.layers[t])
        if sigs.compat(src.sig_ids[s], tgt.sig_ids[t]).matches or opaque:
            text = f"name {name!r}"
            if src.label(s) != tgt.label(t):
                text += f" (stored {src.label(s)!r} / {tgt.label(t)!r})"
            if opaque:
                text += ("; layers of unknown kind: their tensors pair by name where the shapes "
                         "agree")
            out.pairs[t] = (s, text)
            out.exact.add(t)
        else:
            out.conflicts[t] = s


def _suffix(src: Side, tgt: Side, sigs: Signatures, src_free, tgt_free, out: NameResult) -> None:
    t_names = {j: tgt.names[j] for j in sorted(tgt_free)}
    s_names = {i: src.names[i] for i in sorted(src_free)}
    t_cands = suffix_candidates(t_names, s_names)
    s_cands = suffix_candidates(s_names, t_names)
    for t, cands in sorted(t_cands.items()):
        if len(cands) > 1:
            out.ambiguous_t[t] = tuple(cands)
            continue
        s = cands[0]
        if s_cands.get(s) != [t]:
            continue                           # s is contested: s's own entry says by whom
        if sigs.compat(src.sig_ids[s], tgt.sig_ids[t]).matches:
            shorter = min(src.names[s], tgt.names[t], key=len)
            out.pairs[t] = (s, f"name suffix {shorter!r}")
        else:
            out.conflicts[t] = s
    for s, cands in sorted(s_cands.items()):
        if len(cands) > 1:
            out.ambiguous_s[s] = tuple(cands)


def _opaque_alike(source, target) -> bool:
    """Two layers of unknown kind (a ViT's own ``cls_token`` and ``pos_embed``) with the same
    name that hold a tensor of the same leaf name and shape: they pair, tensor by tensor."""
    if source.op != "opaque" or target.op != "opaque":
        return False
    shapes = {(leaf(p.name), p.shape) for p in source.params}
    return any((leaf(p.name), p.shape) in shapes for p in target.params)


def leaf(name: str) -> str:
    return name.rpartition(".")[2]
