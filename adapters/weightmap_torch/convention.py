"""torch's convention: how torch lays out, names and defaults what it stores.

Kernels ``(out, in, k...)``, feature maps channels first; LSTM gates ``i, f, g, o`` and GRU
``r, z, n`` (``g`` is the canonical cell candidate ``c``, ``n`` the GRU's new gate ``h``), an input
and a recurrent bias per cell, the levels and directions of ``nn.LSTM(num_layers=...,
bidirectional=True)`` told by the names ``weight_ih_l1_reverse`` ...; BatchNorm epsilon 1e-5 when
a state dict does not store it, momentum as the batch statistic's weight; ``padding=k//2``
pads both sides; a state dict lists modules in the order the model registered them, and may hold
Hugging Face ``Conv1D`` kernels stored (in, out).
"""
from __future__ import annotations

from typing import Any, Mapping

from weightmap.convention import (Convention, RecurrentCell, RecurrentLayout, CellsOf,
                                  DEFAULT_ACTIVATIONS)
from weightmap.graph import Layer, Param
from weightmap.reading.statedict import RECURRENT_NAME, RECURRENT_SLOTS


def recurrent_slot(name: str) -> tuple[str, int, str] | None:
    """(slot, level, direction) of a recurrent tensor by its leaf name (slot ``projection``
    for ``weight_hr``), None for any other name."""
    m = RECURRENT_NAME.match(name.rpartition(".")[2])
    if m is None:
        return None
    slot = RECURRENT_SLOTS.get((m.group(1), m.group(2)), "projection")
    return slot, int(m.group(3) or 0), "backward" if m.group(4) else "forward"


class TorchConvention(Convention):
    name = "torch"
    display = "torch"
    kernels = "channels_first"
    feature_maps = "channels_first"
    gate_orders = {"lstm": "ifgo", "gru": "rzn"}
    gate_letters = {"g": "c", "n": "h"}
    recurrent = RecurrentLayout(bias="two", directions="cells")
    depthwise_kernel = "(c*m),1,spatial"
    default_eps = 1e-5
    momentum = "batch"
    index_dtype = "int64"
    state_dicts = True
    registration_order = True
    conv1d_family = True
    padding_idx = True
    hints = {"dataflow": "give the torch model file an example_input (its forward is traced)",
             "pad_before": "F.pad, nn.ZeroPad2d"}

    def activation_axes(self, op: str, attrs: Mapping[str, Any], ndim: int):
        if op == "attention" and ndim == 3:      # nn.MultiheadAttention
            return ("n", "t", "c") if attrs.get("batch_first") else ("t", "n", "c")
        return super().activation_axes(op, attrs, ndim)

    def recurrent_cells(self, layer: Layer) -> CellsOf:
        """Levels and directions from the names: ``weight_ih_l{k}[_reverse]`` ...; a
        projection ``weight_hr_l{k}`` (and any other tensor) is outside the cells."""
        slots: dict[tuple[int, str], dict[str, Param]] = {}
        extra: dict[int, list[Param]] = {}
        for p in layer.params:
            found = recurrent_slot(p.name)
            if found is None:
                extra.setdefault(0, []).append(p)
                continue
            slot, k, direction = found
            if slot == "projection":
                extra.setdefault(k, []).append(p)
            else:
                slots.setdefault((k, direction), {})[slot] = p
        cells = [(k, RecurrentCell(d, **slots[(k, d)])) for k in sorted({k for k, _ in slots})
                 for d in ("forward", "backward") if (k, d) in slots]
        return cells, {k: tuple(v) for k, v in extra.items()}

    def recurrent_activations(self, layer: Layer) -> tuple[str, ...]:
        if layer.op == "simple_rnn":
            return (str(layer.attrs.get("nonlinearity", "tanh")).lower(),)
        return DEFAULT_ACTIVATIONS[layer.op]

    def recurrent_extras(self, layer: Layer, units: int, cells: tuple[RecurrentCell, ...],
                         extra: tuple[Param, ...]) -> dict[str, Any]:
        """An LSTM with ``proj_size`` projects its hidden state (``weight_hr``)."""
        if any(p.name.rsplit(".", 1)[-1].startswith("weight_hr") for p in extra) \
                or layer.attrs.get("proj_size"):
            return {"projection": layer.attrs.get("proj_size") or True}
        return {}

    def padding(self, attrs: Mapping[str, Any]) -> str | None:
        """``symmetric`` for a conv that pads by itself, the same on both sides of each axis;
        ``none`` for one that pads nothing itself (``padding=0``)."""
        pad = attrs.get("padding")
        if pad is None or isinstance(pad, str):
            return None
        return "symmetric" if any(p != 0 for p in (pad if isinstance(pad, (list, tuple))
                                                   else (pad,))) else "none"


CONVENTION = TorchConvention()
