"""ONNX's convention: how an ONNX graph lays out and names what it stores.

Kernels ``(out, in, k...)`` like torch, feature maps channels first unless the reader saw a
channels-last input; an ``LSTM``/``GRU`` node holds every direction of its level in ``W``, ``R``,
``B`` on a leading directions axis, ``B`` packing the input and recurrent biases ``[Wb; Rb]``,
gates ``i, o, f, c`` and ``z, r, h``, its own attributes for activations, ``clip``,
``input_forget``, ``linear_before_reset`` (the GRU reset variant) and ``layout`` (batch first);
peepholes are its ``P`` input. BatchNorm epsilon 1e-5 unless stored, momentum as the running
average's weight.
"""
from __future__ import annotations

from typing import Any, Mapping

from weightmap.convention import (Convention, RecurrentCell, RecurrentLayout, CellsOf,
                                  DEFAULT_ACTIVATIONS)
from weightmap.errors import ConversionError
from weightmap.graph import Layer, Param


FUSED_MARK = "FuseBatchNormIntoConv"
EXPORTER_CONSTANT = "onnx::"        # torch.onnx.export(dynamo=False)'s name for a folded constant


class OnnxConvention(Convention):
    name = "onnx"
    display = "ONNX"
    kernels = "channels_first"
    feature_maps = "channels_first"
    gate_orders = {"lstm": "iofc", "gru": "zrh"}
    recurrent = RecurrentLayout(bias="packed", directions="stacked")
    depthwise_kernel = "(c*m),1,spatial"
    default_eps = 1e-5
    momentum = "average"
    hints = {"fused_bias": "export the target with its conv biases, e.g. "
                           "torch.onnx.export(dynamo=False)",
             "dataflow": "use an ONNX file"}

    def recurrent_output_axes(self, attrs: Mapping[str, Any], ndim: int):
        # Y: (T, dirs, N, H), or (N, T, dirs, H) with layout=1
        return ("n", "t", "dir", "c") if attrs.get("layout") == 1 else ("t", "dir", "n", "c")

    def batch_first(self, attrs: Mapping[str, Any]) -> bool:
        return attrs.get("layout") == 1

    def bn_folded(self, layer: Layer, kernel: Param | None) -> bool:
        """The dynamo exporter marks the node (``FuseBatchNormIntoConv``); the TorchScript
        exporter (``dynamo=False``) leaves no mark, but a kernel it computed by folding is a
        constant it names itself (``onnx::Conv_N``), where a plain export keeps the
        parameter's name (``conv1.weight``)."""
        return FUSED_MARK in str(layer.attrs.get("rewrite_rule", "")) or (
            kernel is not None and kernel.name.startswith(EXPORTER_CONSTANT))

    def recurrent_cells(self, layer: Layer) -> CellsOf:
        """One level; ``W``, ``R``, ``B`` hold all its cells on a leading directions axis
        (``direction="reverse"`` is a lone backward cell)."""
        w, r, b = (layer.param(role) for role in ("kernel", "recurrent_kernel", "bias"))
        if w is None or len(w.shape) != 3:
            raise ConversionError(f"ONNX {layer.op} without a 3-D W", tensor=layer.name)
        mode = layer.attrs.get("direction", "forward")
        names = {"bidirectional": ("forward", "backward"), "reverse": ("backward",)}.get(
            mode, ("forward",))
        if len(names) != w.shape[0]:
            raise ConversionError(f"direction={mode!r} but W holds {w.shape[0]} direction(s)",
                                  tensor=w.name)
        cells = [(0, RecurrentCell(d, w, r, b, None, index=i)) for i, d in enumerate(names)]
        return cells, {0: tuple(p for p in layer.params if p.role == "other")}

    def recurrent_activations(self, layer: Layer) -> tuple[str, ...]:
        default = DEFAULT_ACTIVATIONS[layer.op]
        acts = [str(x).lower() for x in layer.attrs.get("activations") or ()]
        if not acts:
            return default
        per = len(default)
        sets = {tuple(acts[i:i + per]) for i in range(0, len(acts), per)}
        return sets.pop() if len(sets) == 1 else tuple(acts)

    def gru_reset(self, layer: Layer, cells: tuple[RecurrentCell, ...]) -> str:
        return "after" if layer.attrs.get("linear_before_reset") else "before"

    def recurrent_extras(self, layer: Layer, units: int, cells: tuple[RecurrentCell, ...],
                         extra: tuple[Param, ...]) -> dict[str, Any]:
        a, out = layer.attrs, {}
        if a.get("clip") is not None:
            out["clip"] = float(a["clip"])
        if a.get("input_forget"):
            out["input_forget"] = True
        # peepholes: the P input, (directions, 3·H), kept by the reader with role other
        if layer.op == "lstm" and any(p.shape == (len(cells), 3 * units) for p in extra):
            out["peepholes"] = True
        return out

    def describe_reset(self, after: bool) -> str:
        return f"linear_before_reset={int(after)}"


CONVENTION = OnnxConvention()
