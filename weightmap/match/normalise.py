"""Name normalisation, wrapper prefixes, dotted suffixes and name tokens.

Names from different frameworks meet here in one form: dotted (Keras '/' becomes '.'), without
``:0`` suffixes, without wrapper prefixes that cover the whole graph (``module.`` from
DataParallel, ``_orig_mod.`` from torch.compile, ``model.`` from Lightning).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

from .. import registry

# Wrappers that prefix every name of a checkpoint; stripped only when common to the whole graph.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")

_DEVICE_SUFFIX = re.compile(r":\d+$")
_SEPARATORS = re.compile(r"[/.]+")
_TOKEN_SPLIT = re.compile(r"[^0-9A-Za-z]+")


def clean(name: str) -> str:
    """``model/block1_conv1/kernel:0`` → ``model.block1_conv1.kernel``."""
    name = _DEVICE_SUFFIX.sub("", name)
    return _SEPARATORS.sub(".", name).strip(".")


def normalize_param_name(name: str) -> str:
    """A parameter name in the state-dict words every convention's leaf names map to
    (``registry.leaf_aliases``): ``fc1/kernel:0`` → ``fc1.weight``."""
    head, _, leaf = clean(name).rpartition(".")
    leaf = registry.leaf_aliases().get(leaf, leaf)
    return f"{head}.{leaf}" if head else leaf


def common_prefixes(names: Sequence[str], declared: Iterable[str] = ()) -> tuple[str, ...]:
    """The wrapper prefixes every name carries, outermost first (applied repeatedly).

    ``declared`` are prefixes a reader reported (``ParamGraph.meta["prefixes"]``); they are
    stripped under the same condition: every name must carry them, and none may become empty.
    """
    candidates = tuple(dict.fromkeys(tuple(clean(p) + "." for p in declared if clean(p))
                                     + WRAPPER_PREFIXES))
    found: list[str] = []
    current = list(names)
    while current:
        for prefix in candidates:
            if all(n.startswith(prefix) and len(n) > len(prefix) for n in current):
                found.append(prefix)
                current = [n[len(prefix):] for n in current]
                break
        else:
            break
    return tuple(found)


def strip_prefixes(name: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def dotted_suffixes(name: str) -> list[str]:
    """Every proper dotted suffix that holds a non-numeric part: ``a.b.0.c`` → ``b.0.c``, ``0.c``,
    ``c``. A bare index (``0``) says nothing about which layer it is, so it is never a suffix."""
    parts = name.split(".")
    out = []
    for k in range(1, len(parts)):
        tail = parts[k:]
        if any(not p.isdigit() for p in tail):
            out.append(".".join(tail))
    return out


def suffix_candidates(names: Mapping[int, str], others: Mapping[int, str]) -> dict[int, list[int]]:
    """For each id in ``names``: the ids in ``others`` whose name is a dotted suffix of it, or of
    which it is a dotted suffix (exact equality excluded)."""
    by_name: dict[str, list[int]] = {}
    by_suffix: dict[str, list[int]] = {}
    for oid, other in others.items():
        by_name.setdefault(other, []).append(oid)
        for suf in dotted_suffixes(other):
            by_suffix.setdefault(suf, []).append(oid)
    out: dict[int, list[int]] = {}
    for nid, name in names.items():
        found = list(by_suffix.get(name, ()))
        for suf in dotted_suffixes(name):
            found.extend(by_name.get(suf, ()))
        if found:
            out[nid] = sorted(set(found))
    return out


def tokens(name: str) -> frozenset[str]:
    """Lower-case name parts; a number is qualified by the word before it (``features.12`` →
    ``features``, ``features#12``) so that bare indices of unrelated schemes do not meet."""
    out: list[str] = []
    previous = ""
    for part in _TOKEN_SPLIT.split(name.lower()):
        if not part:
            continue
        if part.isdigit():
            out.append(f"{previous}#{part}")
        else:
            out.append(part)
            previous = part
    return frozenset(out)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Token overlap (Jaccard), 0..1."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)
