"""Turn a flat, ordered state dict (the names of a state dict: ``weight``, ``bias``,
``running_mean``, ``weight_ih_l0`` ...) into layers.

Grouping comes from the dotted names (``features.0.weight`` + ``features.0.bias`` → layer
``features.0``); roles come from the last name part; op kinds from the set of roles and shapes.
Anything that fits no rule becomes an ``opaque`` layer: kept, never dropped. Inferred op kinds are
marked ``attrs["inferred"] = True`` so later stages know the file did not say so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..convention import Convention
from ..graph import Layer, Param, TensorData

# A recurrent layer's tensor by its leaf name: weight/bias, ih (input) / hh (recurrent) / hr
# (projection), the level l<k> (absent in a single cell) and _reverse for the backward direction.
# The one parser of these names: the state-dict grouping below and the torch adapter use it.
RECURRENT_NAME = re.compile(r"^(weight|bias)_(ih|hh|hr)(?:_l(\d+))?(_reverse)?$")
RECURRENT_SLOTS = {("weight", "ih"): "kernel", ("weight", "hh"): "recurrent_kernel",
                   ("bias", "ih"): "bias", ("bias", "hh"): "recurrent_bias"}


def _rnn(suffix: str) -> re.Match | None:
    """A level's input or recurrent tensor (``weight_ih_l0`` ...), not a projection or a cell's."""
    m = RECURRENT_NAME.match(suffix)
    return m if m is not None and m.group(2) != "hr" and m.group(3) is not None else None
_SUFFIX_ROLE = {
    "weight": "kernel", "bias": "bias", "running_mean": "moving_mean",
    "running_var": "moving_var", "num_batches_tracked": "num_batches_tracked",
    "in_proj_weight": "in_proj_kernel", "in_proj_bias": "in_proj_bias",
}
_EMBED_HINT = re.compile(r"(^|[._])(embed|embeds|embedding|embeddings|wte|wpe|tok|token|"
                         r"word_embeddings|position_embeddings|token_type_embeddings|"
                         r"shared|lookup)($|[._])", re.I)
_PRELU_HINT = re.compile(r"prelu", re.I)
_RMS_HINT = re.compile(r"rms", re.I)


@dataclass(frozen=True)
class Entry:
    """One tensor of a state dict as a reader found it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: TensorData | None
    tied_to: str | None = None


def split_name(name: str) -> tuple[str, str]:
    """``features.0.weight`` → (``features.0``, ``weight``)."""
    head, _, last = name.rpartition(".")
    return head, last


def group(entries: Iterable[Entry], convention: Convention) -> list[Layer]:
    """Group ordered entries into layers, keeping the order of first appearance; axis labels
    as ``convention`` lays out its tensors."""
    buckets: dict[str, list[Entry]] = {}
    for e in entries:
        buckets.setdefault(split_name(e.name)[0], []).append(e)
    return [_layer(prefix, items, convention) for prefix, items in buckets.items()]


def _layer(prefix: str, items: list[Entry], convention: Convention) -> Layer:
    suffixes = {split_name(e.name)[1]: e for e in items}
    op, attrs = _infer_op(prefix, suffixes)
    params = []
    for e in items:
        role = _role(op, split_name(e.name)[1])
        params.append(Param(name=e.name, role=role, shape=e.shape, dtype=e.dtype,
                            axes=convention.axes(op, role, len(e.shape)), data=e.data,
                            tied_to=e.tied_to))
    return Layer(name=prefix or "<root>", op=op, params=tuple(params), attrs=attrs)


def _role(op: str, suffix: str) -> str:
    m = _rnn(suffix)
    if m:
        return RECURRENT_SLOTS[(m.group(1), m.group(2))]
    if op == "batchnorm" and suffix == "weight":
        return "gamma"
    if op == "batchnorm" and suffix == "bias":
        return "beta"
    if op in ("layernorm", "groupnorm", "instancenorm", "rmsnorm") and suffix == "weight":
        return "gamma"
    if op in ("layernorm", "groupnorm", "instancenorm") and suffix == "bias":
        return "beta"
    if op == "embedding" and suffix == "weight":
        return "embeddings"
    if op == "prelu" and suffix == "weight":
        return "alpha"
    if op == "opaque":
        return "other" if suffix not in ("weight", "bias") else _SUFFIX_ROLE[suffix]
    return _SUFFIX_ROLE.get(suffix, "other")


def _infer_op(prefix: str, by_suffix: dict[str, Entry]) -> tuple[str, dict]:
    attrs: dict = {"inferred": True}
    names = set(by_suffix)
    rnn = [s for s in names if _rnn(s)]
    if rnn:
        return _infer_rnn(by_suffix, attrs)
    if "running_mean" in names or "running_var" in names:
        attrs["num_features"] = by_suffix.get("running_mean", by_suffix.get("running_var")).shape[0]
        return "batchnorm", attrs
    if "in_proj_weight" in names:
        return "attention", attrs
    weight = by_suffix.get("weight")
    if weight is None or not names <= {"weight", "bias"}:
        return "opaque", attrs
    nd = len(weight.shape)
    if nd == 2:
        if "bias" not in names and _EMBED_HINT.search(prefix):
            return "embedding", attrs
        return "dense", attrs
    if nd in (3, 4, 5):
        return f"conv{nd - 2}d", attrs
    if nd == 1:
        if _PRELU_HINT.search(prefix):
            return "prelu", attrs
        if "bias" not in names and _RMS_HINT.search(prefix):
            return "rmsnorm", attrs
        return "layernorm", attrs
    return "opaque", attrs


def _infer_rnn(by_suffix: dict[str, Entry], attrs: dict) -> tuple[str, dict]:
    hh = by_suffix.get("weight_hh_l0")
    if hh is None or len(hh.shape) != 2 or hh.shape[1] == 0 or hh.shape[0] % hh.shape[1]:
        return "opaque", attrs
    gates = hh.shape[0] // hh.shape[1]
    op = {4: "lstm", 3: "gru", 1: "simple_rnn"}.get(gates, "opaque")
    layers = {int(m.group(3)) for m in map(_rnn, by_suffix) if m}
    attrs.update(units=hh.shape[1], num_layers=max(layers) + 1,
                 bidirectional=any(s.endswith("_reverse") for s in by_suffix))
    return op, attrs
