"""Recurrent layers seen as levels and cells, whatever the convention stores.

A *level* is one layer of a stack; a *cell* is one direction of a level. What one graph layer
holds is its convention's to say (``Convention.recurrent_cells``): a layer of several levels
told apart by its names (torch ``nn.LSTM(num_layers=2, bidirectional=True)``: ``weight_ih_l0``,
``weight_ih_l0_reverse`` ...), one level whose reader listed each direction's tensors (Keras
``Bidirectional``), or one level holding every direction on a leading axis (an ONNX ``LSTM``).

``semantics`` gathers what makes two levels compute the same function besides their weights
(activations, the GRU reset variant, and the convention's extras: clipping, coupled gates,
peepholes, projections), so non-equivalent layers are refused instead of converted
approximately.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import registry
from ...convention import RECURRENT_OPS, Convention, RecurrentCell
from ...errors import ConversionError
from ...graph import Layer, Param, ParamGraph

RECURRENT = RECURRENT_OPS
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
Cell = RecurrentCell


@dataclass(frozen=True)
class Level:
    layer: Layer
    convention: Convention
    number: int                           # position in the layer's stack (torch l{k})
    cells: tuple[Cell, ...]
    units: int
    input_size: int
    extra: tuple[Param, ...] = ()         # parameters of the level outside its cells

    @property
    def framework(self) -> str:
        return self.convention.name

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
        """Gate letters along the stacked axis; canonical (``Convention.gate_letters``: torch's
        g → c, n → h) unless raw."""
        order = self.convention.gate_order(self.layer)
        if self.op == "simple_rnn":
            return "h"
        if order is None:
            raise ConversionError(f"the gate order of {self.framework} {self.op} is unknown",
                                  tensor=self.layer.name)
        letters = self.convention.gate_letters
        return order if raw else "".join(letters.get(g, g) for g in order)


def levels(layer: Layer, graph: ParamGraph) -> list[Level]:
    """The levels of a recurrent layer, in stack order (empty for any other layer)."""
    if layer.op not in RECURRENT or not layer.params:
        return []
    conv = registry.convention(graph.framework)
    cells, extra = conv.recurrent_cells(layer)
    by_level: dict[int, list[Cell]] = {}
    for k, cell in cells:
        by_level.setdefault(k, []).append(cell)
    return [_level(layer, conv, k, tuple(by_level[k]), tuple(extra.get(k, ())))
            for k in sorted(by_level)]


def _in_axis(p: Param, conv: Convention) -> int:
    """The index of a cell kernel's ``in`` axis: by its labels, else as its convention's
    kernels lie ((in, G·H) channels last, (G·H, in) otherwise)."""
    if p.axes is not None and "in" in p.axes:
        return p.axes.index("in")
    return 0 if conv.kernels == "channels_last" else -1


def _level(layer: Layer, conv: Convention, k: int, cells: tuple[Cell, ...],
           extra: tuple[Param, ...]) -> Level:
    """Units and input size from the first cell's kernels' ``in`` axes: (in, G·H) and (H, G·H)
    channels last, (G·H, in) and (G·H, H) channels first, with a leading directions axis
    where they are stacked."""
    first = cells[0] if cells else None
    if first is None or first.kernel is None or first.recurrent_kernel is None:
        raise ConversionError(f"recurrent level {k} lacks its kernel or recurrent kernel",
                              tensor=layer.name)
    rk, kernel = first.recurrent_kernel, first.kernel
    units = rk.shape[_in_axis(rk, conv)]
    input_size = kernel.shape[_in_axis(kernel, conv)]
    return Level(layer, conv, k, cells, units, input_size, extra)


def semantics(level: Level) -> dict[str, Any]:
    """What besides the weights decides the function a level computes."""
    conv = level.convention
    out: dict[str, Any] = {"activations": conv.recurrent_activations(level.layer)}
    if level.op == "gru":
        out["reset"] = conv.gru_reset(level.layer, level.cells)
    out.update(conv.recurrent_extras(level.layer, level.units, level.cells, level.extra))
    return out


def describe_semantics(sem: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'/'.join(v) if isinstance(v, tuple) else v}"
                     for k, v in sorted(sem.items()))
