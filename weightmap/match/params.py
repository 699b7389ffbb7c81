"""Within a matched layer pair: which source parameter(s) feed each target parameter.

Parameters pair by role (kernel↔kernel, gamma↔gamma ...). Recurrent biases differ by convention:
torch has ``bias_ih`` + ``bias_hh``, Keras one bias (an LSTM's is their sum; a GRU with
``reset_after=True`` stacks them as ``(2, 3u)``); the pair's ``note`` says how they combine.
Whatever stays over is reported with its reason.
"""
from __future__ import annotations

from typing import AbstractSet, Iterable, Mapping

from ..graph import Layer, Param
from .normalise import normalize_param_name
from .result import ParamPair, Unmatched
from .signature import RECURRENT_OPS, ROLE_ALIASES, family

BOOKKEEPING = "no counterpart (bookkeeping buffer)"


def role_of(param: Param) -> str:
    return ROLE_ALIASES.get(param.role, param.role)


def pair_params(source: Layer, target: Layer, *,
                forced: Mapping[str, tuple[str, ...] | ParamPair] | None = None,
                skip_source: AbstractSet[str] = frozenset(),
                skip_target: AbstractSet[str] = frozenset(), by_shape: bool = False,
                ) -> tuple[tuple[ParamPair, ...], tuple[Unmatched, ...]]:
    """Pair the parameters of ``target`` with those of ``source``.

    ``forced`` maps target parameter names to source parameter names, or to a ready
    ``ParamPair`` (from ``pair`` rules); ``skip_*`` are parameters kept out (ignored by rules,
    reported elsewhere). ``by_shape``: parameters no role pairs are paired by equal shape, in
    order (a rule pairing layers the readers classified differently: their roles differ).
    """
    forced = forced or {}
    pairs = [pp if isinstance(pp, ParamPair) else ParamPair(t, tuple(pp))
             for t, pp in forced.items()]
    used = {s for pp in pairs for s in pp.sources}
    tgt = [p for p in target.params if p.name not in skip_target and p.name not in forced]
    src = [p for p in source.params if p.name not in skip_source and p.name not in used]
    if family(target.op) in RECURRENT_OPS and family(source.op) in RECURRENT_OPS:
        more, tgt, src = _recurrent_biases(target.op, tgt, src)
        pairs += more
    more, tgt, src = _by_role(tgt, src)
    pairs += more
    if by_shape:
        more, tgt, src = _by_shape(tgt, src)
        pairs += more
    order = {p.name: i for i, p in enumerate(target.params)}
    pairs.sort(key=lambda pp: order.get(pp.target, len(order)))
    leftovers = [_left("target", target, p, source) for p in tgt]
    leftovers += [_left("source", source, p, target) for p in src]
    return tuple(pairs), tuple(leftovers)


def _by_role(tgt: list[Param], src: list[Param]):
    pairs: list[ParamPair] = []
    src_by_role: dict[str, list[Param]] = {}
    for p in src:
        src_by_role.setdefault(role_of(p), []).append(p)
    left_t = []
    for role, group in _groups(tgt):
        pool = src_by_role.get(role, [])
        pair_group = _pair_unknown if role == UNKNOWN_ROLE else _pair_group
        for t, s in pair_group(group, pool):
            if s is None:
                left_t.append(t)
            else:
                pairs.append(ParamPair(t.name, (s.name,)))
                pool.remove(s)
    remaining = {q.name for pool in src_by_role.values() for q in pool}
    left_s = [p for p in src if p.name in remaining]
    return pairs, left_t, left_s


def _by_shape(tgt: list[Param], src: list[Param]):
    """Leftovers of equal shape (as stored, or as sorted dims), each once, in order."""
    pairs: list[ParamPair] = []
    free = list(src)
    left_t = []
    for t in tgt:
        same = next((s for s in free if s.shape == t.shape), None) or \
            next((s for s in free if sorted(s.shape) == sorted(t.shape)), None)
        if same is None:
            left_t.append(t)
        else:
            free.remove(same)
            pairs.append(ParamPair(t.name, (same.name,)))
    return pairs, left_t, free


def _groups(params: Iterable[Param]) -> list[tuple[str, list[Param]]]:
    out: dict[str, list[Param]] = {}
    for p in params:
        out.setdefault(role_of(p), []).append(p)
    return list(out.items())


def _pair_group(tgt: list[Param], pool: list[Param]) -> list[tuple[Param, Param | None]]:
    """One role: one-to-one when both sides hold one; else by leaf name (``weight_ih_l1`` ↔
    ``weight_ih_l1``), then in order."""
    if len(tgt) == 1 and len(pool) == 1:
        return [(tgt[0], pool[0])]
    free = list(pool)
    out: list[tuple[Param, Param | None]] = []
    waiting = []
    for t in tgt:
        leaf = _leaf(t.name)
        same = next((s for s in free if _leaf(s.name) == leaf), None)
        if same is None:
            waiting.append(t)
        else:
            free.remove(same)
            out.append((t, same))
    for t in waiting:
        out.append((t, free.pop(0) if free else None))
    return out


UNKNOWN_ROLE = "other"          # tensors of layers of unknown kind: nothing says how they match


def _pair_unknown(tgt: list[Param], pool: list[Param]) -> list[tuple[Param, Param | None]]:
    """Tensors without a known role pair only where the shapes agree: by leaf name, then in
    order (a ViT's ``cls_token`` yes, its ``pos_embed`` at another resolution no)."""
    pool = list(pool)
    chosen: dict[str, Param] = {}
    for rule in (lambda t, s: _leaf(s.name) == _leaf(t.name), lambda t, s: True):
        for t in tgt:
            same = None if t.name in chosen else next(
                (s for s in pool if s.shape == t.shape and rule(t, s)), None)
            if same is not None:
                chosen[t.name] = same
                pool.remove(same)
    return [(t, chosen.get(t.name)) for t in tgt]


def _leaf(name: str) -> str:
    return normalize_param_name(name).rpartition(".")[2]


def _recurrent_biases(op: str, tgt: list[Param], src: list[Param]):
    """torch ``bias_ih``/``bias_hh`` (roles bias, recurrent_bias) against a single bias."""
    tb = [p for p in tgt if p.role == "bias"]
    trb = [p for p in tgt if p.role == "recurrent_bias"]
    sb = [p for p in src if p.role == "bias"]
    srb = [p for p in src if p.role == "recurrent_bias"]
    pairs: list[ParamPair] = []
    if len(tb) == 1 and not trb and len(sb) == 1 and len(srb) == 1:
        note = "stack" if len(tb[0].shape) == 2 else "sum"
        pairs.append(ParamPair(tb[0].name, (sb[0].name, srb[0].name), note))
        taken_t, taken_s = {tb[0].name}, {sb[0].name, srb[0].name}
    elif len(tb) == 1 and len(trb) == 1 and len(sb) == 1 and not srb:
        taken_t, taken_s = {tb[0].name, trb[0].name}, {sb[0].name}
        if len(sb[0].shape) == 2:                       # Keras GRU reset_after: [input; recurrent]
            pairs += [ParamPair(tb[0].name, (sb[0].name,), "row:0"),
                      ParamPair(trb[0].name, (sb[0].name,), "row:1")]
        elif family(op) == "gru":                       # reset_after=False: no exact equivalent
            pairs.append(ParamPair(tb[0].name, (sb[0].name,)))
            taken_t = {tb[0].name}
        else:                                           # one bias = b_ih + b_hh: b_hh = 0
            pairs += [ParamPair(tb[0].name, (sb[0].name,)), ParamPair(trb[0].name, (), "zeros")]
    else:
        return [], tgt, src
    return (pairs, [p for p in tgt if p.name not in taken_t],
            [p for p in src if p.name not in taken_s])


def _left(side: str, layer: Layer, p: Param, other: Layer) -> Unmatched:
    twin = next((q for q in other.params if q.role == UNKNOWN_ROLE == p.role
                 and _leaf(q.name) == _leaf(p.name) and q.shape != p.shape), None)
    if twin is not None:                    # same name, another size: a shape mismatch
        return Unmatched(side=side, layer=layer.name, params=(p.name,),
                         reason=f"tensor shape {p.shape} vs {twin.shape}", kind="shape",
                         candidates=(twin.name,))
    if p.role == "num_batches_tracked":
        reason = BOOKKEEPING
    elif p.role == "recurrent_bias" and family(layer.op) == "gru":
        reason = (f"no counterpart (the {'source' if side == 'target' else 'target'} GRU has "
                  f"one bias; reset_after=False has no exact equivalent)")
    else:
        role = role_of(p)
        more = "no further" if any(role_of(q) == role for q in other.params) else "no"
        reason = (f"no counterpart ({'source' if side == 'target' else 'target'} layer "
                  f"{other.name!r} has {more} {role} parameter)")
    return Unmatched(side=side, layer=layer.name, params=(p.name,), reason=reason, kind="missing")
