"""Does a manifest (or plan) describe the weights it is used to verify?

``weightmap verify`` pairs layers with the manifest beside the weights. A manifest left there
by another port (a feature-extraction port's, beside the full port's weights; the weights
written again by an edited plan) would pair the wrong layers and still pass, so it is checked
first: its tensors must be the weights' (names, shapes) and the target's, and the SHA-256 of
the smallest tensors (up to ``DIGEST_BUDGET`` bytes, every bias and norm of a CNN) must be
the ones it recorded. The digests of the largest tensors are left out: verification should
not read a multi-gigabyte file twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..graph import ParamGraph

DIGEST_BUDGET = 16 << 20        # bytes of the smallest tensors whose digests are compared


def described(data: Mapping[str, Any]
              ) -> dict[str, tuple[tuple[int, ...], tuple[str, str] | None]]:
    """{tensor: (shape, (digest algorithm, hex) or None)} of a manifest (``params``) or a plan
    (``tensors``)."""
    from ..emit.readback import recorded_digest
    if "params" in data:
        return {name: (tuple(e.get("shape", ())), recorded_digest(e))
                for name, e in data["params"].items()}
    return {t["target"]: (tuple(t.get("shape", ())), None) for t in data.get("tensors", ())}


def mismatch(data: Mapping[str, Any], target: ParamGraph, weights: Path | None = None
             ) -> str | None:
    """Why the manifest or plan ``data`` does not describe ``target`` (and the ``weights``
    written for it), or None when it does."""
    mine = described(data)
    held = {p.name: p for p in target.params()}
    why = _differs(mine, {n: p.shape for n, p in held.items()}, "the target",
                   optional={n for n, p in held.items() if p.tied_to})
    if why or weights is None:
        return why
    from ..reading.read import read
    written = {p.name: p for p in read(weights).params()}
    why = _differs(mine, {n: p.shape for n, p in written.items()}, "the weights")
    return why or _digests(mine, written)


def _differs(mine: Mapping[str, tuple], theirs: Mapping[str, tuple], what: str,
             optional: set[str] = frozenset()) -> str | None:
    lacking = [n for n in mine if n not in theirs]
    if lacking:
        return f"{what} has no {lacking[0]}{_more(lacking)}"
    unlisted = [n for n in theirs if n not in mine and n not in optional]
    if unlisted:
        return f"it lists no {unlisted[0]} of {what}{_more(unlisted)}"
    for name, (shape, _) in mine.items():
        if tuple(theirs[name]) != shape:
            return f"{name} is {tuple(theirs[name])} in {what}, {shape} in it"
    return None


def _more(names: list[str]) -> str:
    return f" (nor {len(names) - 1} more)" if len(names) > 1 else ""


def _digests(mine: Mapping[str, tuple], written: Mapping[str, Any]) -> str | None:
    from ..emit.readback import ALGORITHM_NAMES, digest, digest_available
    budget = DIGEST_BUDGET
    for p in sorted(written.values(), key=lambda p: (p.nbytes, p.name)):
        recorded = mine[p.name][1]
        if recorded is None or not digest_available(recorded[0]):
            continue
        if p.nbytes > budget:
            break
        budget -= p.nbytes
        algorithm, hexdigest = recorded
        if digest(p, algorithm)[algorithm] != hexdigest:
            return (f"the {ALGORITHM_NAMES[algorithm]} of {p.name} in the weights is not the one it "
                    "recorded")
    return None
