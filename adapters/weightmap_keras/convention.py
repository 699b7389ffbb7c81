"""Keras's convention (Keras 3 and tf_keras alike): how Keras lays out, names and defaults what
it stores.

Kernels ``(k..., in, out)`` (a depthwise one ``(k..., c, m)``), feature maps channels last
unless a layer says ``data_format`` (or a normalisation ``axis=1``); LSTM gates ``i, f, c, o``,
GRU ``z, r, h``, one bias per cell (their sum; a GRU with ``reset_after=True`` keeps both as
``(2, 3H)`` rows), ``Bidirectional`` listing each direction's weights; sequences batch first;
no single BatchNorm epsilon default (1e-3, applications 1.001e-5: unknown unless stored),
momentum as the running average's weight; ``padding="same"`` pads like TF's SAME; token ids
int32; ``Embedding(mask_zero=True)`` masks index 0 for the recurrent layers after it.
"""
from __future__ import annotations

from typing import Any, Mapping

from weightmap.convention import Convention, RecurrentCell, RecurrentLayout
from weightmap.graph import Layer


class KerasConvention(Convention):
    name = "keras"
    display = "Keras"
    kernels = "channels_last"
    feature_maps = "channels_last"
    gate_orders = {"lstm": "ifco", "gru": "zrh"}
    recurrent = RecurrentLayout(bias="one", directions="cells")
    depthwise_kernel = "spatial,c,m"
    default_eps = None
    momentum = "average"
    index_dtype = "int32"
    # Keras / TF parameter leaf names -> the state-dict words, so leaves compare across
    # conventions
    leaf_aliases = {"kernel": "weight", "gamma": "weight", "beta": "bias",
                    "moving_mean": "running_mean", "moving_variance": "running_var",
                    "embeddings": "weight"}
    mask_zero = True
    hints = {"no_tensors": "a Keras model has weights once it is built: call it on an input or "
                           "model.build(input_shape) in its file, or define example_input in the "
                           "file (weightmap builds the model on it)",
             "prelu_shared_axes": "Keras shared_axes=[1, 2]",
             "dataflow": "use a Keras model saved with its config (.keras, a full .h5)"}

    def data_format(self, attrs: Mapping[str, Any]) -> str:
        """A layer's ``data_format``; a normalisation over ``axis=1`` normalises channels
        first."""
        fmt = attrs.get("data_format")
        if fmt in ("channels_first", "channels_last"):
            return fmt
        if attrs.get("axis") in (1, (1,), [1]):
            return "channels_first"
        return "channels_last"

    def recurrent_output_axes(self, attrs: Mapping[str, Any], ndim: int):
        if attrs.get("bidirectional") and attrs.get("merge_mode", "concat") != "concat":
            return None                # summed / averaged directions have no dir axis
        features = ("dir", "c")
        return ("n", "t", features) if ndim == 3 else ("n", features) if ndim == 2 else None

    def batch_first(self, attrs: Mapping[str, Any]) -> bool:
        return True

    def recurrent_activations(self, layer: Layer) -> tuple[str, ...]:
        act = str(layer.attrs.get("activation", "tanh")).lower()
        if layer.op == "simple_rnn":
            return (act,)
        gate = str(layer.attrs.get("recurrent_activation", "sigmoid")).lower()
        return (gate, act, act) if layer.op == "lstm" else (gate, act)

    def gru_reset(self, layer: Layer, cells: tuple[RecurrentCell, ...]) -> str:
        """``reset_after``; without it, a ``(2, 3H)`` bias says True (Keras 2 and 3 default)."""
        if "reset_after" in layer.attrs:
            return "after" if layer.attrs["reset_after"] else "before"
        bias = cells[0].bias
        return "after" if bias is None or len(bias.shape) == 2 else "before"

    def describe_reset(self, after: bool) -> str:
        return f"reset_after={after}"

    def padding(self, attrs: Mapping[str, Any]) -> str | None:
        return "same" if str(attrs.get("padding", "")).lower() == "same" else None

    def activation(self, attrs: Mapping[str, Any]) -> Any:
        """A serialized activation object names a built-in by its ``config.name``; any other
        by its module and class."""
        act = attrs.get("activation")
        if isinstance(act, dict):
            return act.get("config", {}).get("name") \
                if act.get("module", "keras.activations").startswith("keras") \
                else f"{act.get('module')}.{act.get('class_name')}"
        return act


CONVENTION = KerasConvention()
