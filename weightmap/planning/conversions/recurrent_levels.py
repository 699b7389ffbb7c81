"""Recurrent layers seen as levels and cells, whatever the convention stores.

A *level* is one layer of a stack; a *cell* is one direction of a level. What one graph layer
holds differs by convention:

* torch ``nn.LSTM(num_layers=2, bidirectional=True)`` is one layer of two levels, each with a
  forward cell (``weight_ih_l0`` ...) and a backward cell (``weight_ih_l0_reverse`` ...);
* Keras: every ``LSTM``/``GRU`` is one level; ``Bidirectional`` is one level of two cells (the
  reader lists the forward parameters, then the backward ones, in ``attrs["directions"]``);
* ONNX: every ``LSTM``/``GRU`` node is one level; ``W``, ``R``, ``B`` hold all its cells on a
  leading directions axis (``direction="reverse"`` is a lone backward cell).

``semantics`` gathers what makes two levels compute the same function besides their weights
(activations, the GRU reset variant, ONNX clip/input_forget/peepholes, torch projections), so
non-equivalent layers are refused instead of converted approximately.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import ConversionError
from ...graph import Layer, Param, ParamGraph
from ...layouts import GATE_ORDER

RECURRENT = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
_TORCH_NAME = re.compile(r"(?:^|\.)(weight|bias)_(ih|hh|hr)(?:_l(\d+))?(_reverse)?$")
_TORCH_SLOT = {("weight", "ih"): "kernel", ("weight", "hh"): "recurrent_kernel",
               ("bias", "ih"): "bias", ("bias", "hh"): "recurrent_bias"}
# torch's cell candidate "g" is Keras's "c"; the GRU's new gate "n" is Keras/ONNX "h"
_CANONICAL_GATE = {"g": "c", "n": "h"}
# default activations (gate, candidate[, output]) per op
_DEFAULT_ACT = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh"),
                "simple_rnn": ("tanh",)}


@dataclass(frozen=True)
class Cell:
    """One direction of one level. ``bias`` is torch ``bias_ih``, the Keras bias (``(G·H,)``, or
    ``(2, G·H)`` for a GRU with reset_after) or ONNX ``B``; ``index`` is the position on an ONNX
    directions axis (None elsewhere)."""

    direction: str                        # "forward" | "backward"
    kernel: Param | None
    recurrent_kernel: Param | None
    bias: Param | None = None
    recurrent_bias: Param | None = None
    index: int | None = None

    def params(self) -> tuple[Param, ...]:
        return tuple(p for p in (self.kernel, self.recurrent_kernel, self.bias,
                                 self.recurrent_bias) if p is not None)


@dataclass(frozen=True)
class Level:
    layer: Layer
    framework: str
    number: int                           # position in the layer's stack (torch l{k})
    cells: tuple[Cell, ...]
    units: int
    input_size: int
    extra: tuple[Param, ...] = ()         # parameters of the level outside its cells

    @property
    def op(self) -> str:
        return self.layer.op

    @property
    def gates(self) -> int:
        return GATES[self.op]

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(c.direction for c in self.cells)

    def params(self) -> tuple[Param, ...]:
        return tuple(p for c in self.cells for p in c.params()) + self.extra

    def label(self) -> str:
        many = self.layer.attrs.get("num_layers", 1) not in (None, 1) or self.number
        return f"{self.layer.name} level {self.number}" if many else self.layer.name

    def gate_order(self, raw: bool = False) -> str:
        """Gate letters along the stacked axis; canonical (torch g → c, n → h) unless raw."""
        order = self.layer.attrs.get("gate_order") or GATE_ORDER.get((self.framework, self.op))
        if self.op == "simple_rnn":
            return "h"
        if order is None:
            raise ConversionError(f"the gate order of {self.framework} {self.op} is unknown",
                                  tensor=self.layer.name)
        return order if raw else "".join(_CANONICAL_GATE.get(g, g) for g in order)


def levels(layer: Layer, graph: ParamGraph) -> list[Level]:
    """The levels of a recurrent layer, in stack order (empty for any other layer)."""
    if layer.op not in RECURRENT or not layer.params:
        return []
    fw = graph.framework
    if fw == "onnx":
        return _onnx_levels(layer)
    if fw == "keras":
        return _keras_levels(layer)
    return _torch_levels(layer, fw)


def _torch_levels(layer: Layer, fw: str) -> list[Level]:
    slots: dict[tuple[int, str], dict[str, Param]] = {}
    extra: dict[int, list[Param]] = {}
    for p in layer.params:
        m = _TORCH_NAME.search(p.name)
        if m is None:
            extra.setdefault(0, []).append(p)
            continue
        k = int(m.group(3) or 0)
        direction = "backward" if m.group(4) else "forward"
        slot = _TORCH_SLOT.get((m.group(1), m.group(2)), "projection")
        if slot == "projection":
            extra.setdefault(k, []).append(p)
        else:
            slots.setdefault((k, direction), {})[slot] = p
    out = []
    for k in sorted({k for k, _ in slots}):
        cells = tuple(Cell(d, **slots[(k, d)]) for d in ("forward", "backward")
                      if (k, d) in slots)
        out.append(_level(layer, fw, k, cells, tuple(extra.get(k, ()))))
    return out


def _keras_levels(layer: Layer) -> list[Level]:
    by_name = {p.name: p for p in layer.params}
    groups = layer.attrs.get("directions")
    if groups:
        named = {d: [by_name[n] for n in groups.get(d, ()) if n in by_name]
                 for d in ("forward", "backward")}
    elif layer.attrs.get("bidirectional"):
        half = len(layer.params) // 2
        named = {"forward": list(layer.params[:half]), "backward": list(layer.params[half:])}
    else:
        named = {"forward": list(layer.params), "backward": []}
    cells, extra = [], []
    for direction, params in named.items():
        if not params:
            continue
        roles = {}
        for p in params:
            if p.role in ("kernel", "recurrent_kernel", "bias") and p.role not in roles:
                roles[p.role] = p
            else:
                extra.append(p)
        cells.append(Cell(direction, roles.get("kernel"), roles.get("recurrent_kernel"),
                          roles.get("bias")))
    return [_level(layer, "keras", 0, tuple(cells), tuple(extra))]


def _onnx_levels(layer: Layer) -> list[Level]:
    w, r, b = (layer.param(role) for role in ("kernel", "recurrent_kernel", "bias"))
    if w is None or len(w.shape) != 3:
        raise ConversionError(f"ONNX {layer.op} without a 3-D W", tensor=layer.name)
    mode = layer.attrs.get("direction", "forward")
    names = {"bidirectional": ("forward", "backward"), "reverse": ("backward",)}.get(
        mode, ("forward",))
    if len(names) != w.shape[0]:
        raise ConversionError(f"direction={mode!r} but W holds {w.shape[0]} direction(s)",
                              tensor=w.name)
    cells = tuple(Cell(d, w, r, b, None, index=i) for i, d in enumerate(names))
    extra = tuple(p for p in layer.params if p.role == "other")
    return [_level(layer, "onnx", 0, cells, extra)]


def _level(layer: Layer, fw: str, k: int, cells: tuple[Cell, ...],
           extra: tuple[Param, ...]) -> Level:
    """Units and input size from the first cell: Keras kernels are (in, G·H) and (H, G·H),
    torch (G·H, in) and (G·H, H), ONNX (directions, G·H, in) and (directions, G·H, H)."""
    first = cells[0] if cells else None
    if first is None or first.kernel is None or first.recurrent_kernel is None:
        raise ConversionError(f"recurrent level {k} lacks its kernel or recurrent kernel",
                              tensor=layer.name)
    rk = first.recurrent_kernel.shape
    units = rk[0] if fw == "keras" else rk[-1]
    input_size = first.kernel.shape[0] if fw == "keras" else first.kernel.shape[-1]
    return Level(layer, fw, k, cells, units, input_size, extra)


def semantics(level: Level) -> dict[str, Any]:
    """What besides the weights decides the function a level computes."""
    a = level.layer.attrs
    out: dict[str, Any] = {"activations": _activations(level)}
    if level.op == "gru":
        out["reset"] = _gru_variant(level)
    if level.framework == "onnx":
        if a.get("clip") is not None:
            out["clip"] = float(a["clip"])
        if a.get("input_forget"):
            out["input_forget"] = True
        if level.op == "lstm" and _peepholes(level):
            out["peepholes"] = True
    if any(p.name.rsplit(".", 1)[-1].startswith("weight_hr") for p in level.extra) \
            or a.get("proj_size"):
        out["projection"] = a.get("proj_size") or True
    return out


def _activations(level: Level) -> tuple[str, ...]:
    a, op = level.layer.attrs, level.op
    default = _DEFAULT_ACT[op]
    if level.framework == "onnx":
        acts = [str(x).lower() for x in a.get("activations") or ()]
        per = len(default)
        if not acts:
            return default
        sets = {tuple(acts[i:i + per]) for i in range(0, len(acts), per)}
        return sets.pop() if len(sets) == 1 else tuple(acts)
    if level.framework == "keras":
        act = str(a.get("activation", "tanh")).lower()
        if op == "simple_rnn":
            return (act,)
        gate = str(a.get("recurrent_activation", "sigmoid")).lower()
        return (gate, act, act) if op == "lstm" else (gate, act)
    if op == "simple_rnn":
        return (str(a.get("nonlinearity", "tanh")).lower(),)
    return default


def _gru_variant(level: Level) -> str:
    """``after``: the reset gate multiplies (R·h + Rb) — torch, Keras reset_after=True, ONNX
    linear_before_reset=1; ``before``: it multiplies h first."""
    a = level.layer.attrs
    if level.framework == "onnx":
        return "after" if a.get("linear_before_reset") else "before"
    if level.framework == "keras":
        if "reset_after" in a:
            return "after" if a["reset_after"] else "before"
        bias = level.cells[0].bias
        return "after" if bias is None or len(bias.shape) == 2 else "before"
    return "after"


def _peepholes(level: Level) -> bool:
    """An ONNX LSTM's ``P`` input: (directions, 3·H), kept by the reader with role other."""
    dirs = len(level.cells)
    return any(p.shape == (dirs, 3 * level.units) for p in level.extra)


def describe_semantics(sem: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'/'.join(v) if isinstance(v, tuple) else v}"
                     for k, v in sorted(sem.items()))
