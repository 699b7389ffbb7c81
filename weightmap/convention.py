"""Conventions: how one framework lays out, names and defaults what it stores, as the facts the
core asks for instead of a framework's name.

Each adapter that reads models of a framework gives its ``Convention`` (``ADAPTER.convention``;
``registry.convention(graph.framework)`` finds it). A graph's tensors keep the layout and names
they are stored in; the convention says what they mean in the one canonical form the core speaks:

* **axes** of every parameter per (op, role), from one of two kernel families written once here
  (``channels_first``: ``(out, in, k...)``; ``channels_last``: ``(k..., in, out)``), and the
  layout of feature maps (``data_format``) and of what a layer outputs (``activation_axes``);
* **recurrent layers**: the gate order per op and the letters it uses, how biases are stored
  (``RecurrentLayout``), which tensors form which cell (``recurrent_cells``), and what besides
  the weights decides their function (activations, the GRU reset variant, extras);
* **depthwise kernels** as a rearrangement pattern (``transform/pattern.py``);
* **defaults and attribute names**: a normalisation's epsilon and how momentum is counted, the
  dtype of token ids, which padding is asymmetric, the leaf names of its parameters;
* **words**: how people call it (``display``) and how it says a fact (``describe_reset``),
  so that reports speak each framework's language without the core knowing any.

Conversions go canonical → canonical through these; the inverse (canonical → a target's layout)
is the same facts read the other way. The base class is the neutral convention of a graph whose
framework no adapter declares: no kernel layout, role-named recurrent cells, no defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .graph import Layer, Param

SPATIAL = {1: ("k",), 2: ("kh", "kw"), 3: ("kd", "kh", "kw")}
# spatial axes of what a layer outputs
ACT_SPATIAL = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
KERNEL_ROLES = ("kernel", "recurrent_kernel", "in_proj_kernel", "query_kernel", "key_kernel",
                "value_kernel", "output_kernel")
BIAS_ROLES = ("bias", "recurrent_bias", "query_bias", "key_bias", "value_bias", "output_bias",
              "in_proj_bias")
# Per-channel roles of normalisation layers (and PReLU), labelled "c".
CHANNEL_ROLES = frozenset({"gamma", "beta", "moving_mean", "moving_var", "alpha"})
RECURRENT_OPS = ("lstm", "gru", "simple_rnn")
PER_CHANNEL_OPS = frozenset({"batchnorm", "instancenorm", "groupnorm", "prelu"})
# the activations (gate, candidate[, output]) of a recurrent cell when nothing says otherwise
DEFAULT_ACTIVATIONS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh"),
                       "simple_rnn": ("tanh",)}

Units = tuple  # axis labels of an activation: str, or a tuple of str for several in one axis


def spatial_rank(op: str) -> int | None:
    """1, 2 or 3 for conv-like ops (conv2d, conv_transpose1d ...), else None."""
    if op[-2:] in ("1d", "2d", "3d") and ("conv" in op):
        return int(op[-2])
    return None


def channels_first_axes(op: str, role: str, ndim: int) -> tuple[str, ...] | None:
    """Kernels ``(out, in, k...)`` (a transposed conv ``(in, out, k...)``), dense ``(out,
    in)``, recurrent kernels with their directions first ``(dir, out, in)``."""
    if role not in KERNEL_ROLES:
        return None
    rank = spatial_rank(op)
    if rank is not None and ndim == rank + 2:
        if op.startswith("conv_transpose"):
            return ("in", "out") + SPATIAL[rank]
        return ("out", "in") + SPATIAL[rank]
    if ndim == 2:
        return ("out", "in")
    if ndim == 3 and op in RECURRENT_OPS:
        return ("dir", "out", "in")
    return None


def channels_last_axes(op: str, role: str, ndim: int) -> tuple[str, ...] | None:
    """Kernels ``(k..., in, out)`` (a transposed conv ``(k..., out, in)``, a depthwise one
    ``(k..., c, m)``), dense and recurrent kernels ``(in, out)``, a GRU's two biases stored as
    one ``(pair, out)``."""
    rank = spatial_rank(op)
    if role == "depthwise_kernel" and rank is not None and ndim == rank + 2:
        return SPATIAL[rank] + ("c", "m")
    if role == "pointwise_kernel" and rank is not None and ndim == rank + 2:
        return SPATIAL[rank] + ("in", "out")
    if role == "kernel" and rank is not None and ndim == rank + 2:
        if op.startswith("conv_transpose"):
            return SPATIAL[rank] + ("out", "in")
        if op.startswith("depthwise"):
            return SPATIAL[rank] + ("c", "m")
        return SPATIAL[rank] + ("in", "out")
    if role in ("kernel", "recurrent_kernel") and ndim == 2:
        return ("in", "out")
    if role == "bias" and ndim == 2 and op == "gru":
        return ("pair", "out")
    return None


KERNEL_FAMILIES = {"channels_first": channels_first_axes, "channels_last": channels_last_axes}


def feature_map_axes(fmt: str, ndim: int) -> Units | None:
    """Labels of an (n, c, spatial...) or (n, spatial..., c) tensor of ``ndim`` axes."""
    if ndim == 2:
        return ("n", "c")
    spatial = ACT_SPATIAL.get(ndim - 2)
    if spatial is None:
        return None
    return ("n", "c") + spatial if fmt == "channels_first" else ("n",) + spatial + ("c",)


@dataclass(frozen=True)
class RecurrentLayout:
    """How a convention stores a recurrent cell besides its kernels' axes.

    ``bias``: ``two`` — an input bias and a recurrent bias (roles bias, recurrent_bias);
    ``one`` — a single bias holding their sum (or, where a GRU keeps both, ``(2, G·H)`` rows
    [input; recurrent]); ``packed`` — one vector ``[input; recurrent]`` of ``2·G·H``.
    ``directions``: ``cells`` — each direction its own tensors; ``stacked`` — one tensor per
    role, directions on a leading axis."""

    bias: str = "two"
    directions: str = "cells"


@dataclass(frozen=True)
class RecurrentCell:
    """One direction of one level of a recurrent layer, in canonical slots: ``bias`` is the
    input bias, a single bias or a packed one (as the layout stores it); ``index`` is the
    position on a stacked directions axis (None where directions are separate tensors)."""

    direction: str                        # "forward" | "backward"
    kernel: Param | None
    recurrent_kernel: Param | None
    bias: Param | None = None
    recurrent_bias: Param | None = None
    index: int | None = None

    def params(self) -> tuple[Param, ...]:
        return tuple(p for p in (self.kernel, self.recurrent_kernel, self.bias,
                                 self.recurrent_bias) if p is not None)


CellsOf = tuple[list[tuple[int, RecurrentCell]], Mapping[int, tuple[Param, ...]]]


class Convention:
    """The facts of one naming and layout convention (see the module docstring). Subclasses
    set the class attributes and override the methods whose default does not hold."""

    name = "unknown"                      # the ParamGraph.framework value
    display = "unknown"                   # how people call it in a report
    kernels: str | None = None            # "channels_first" | "channels_last" | None (unknown)
    feature_maps = "channels_first"       # the data format of feature maps unless a layer says
    gate_orders: Mapping[str, str] = {}   # op -> gate letters along the stacked axis
    gate_letters: Mapping[str, str] = {}  # its letters -> canonical (i, f, c, o; z, r, h)
    recurrent = RecurrentLayout()
    # the depthwise kernel as a rearrangement pattern ("spatial" stands for its spatial axes)
    depthwise_kernel = "(c*m),1,spatial"
    eps_keys: tuple[str, ...] = ("eps", "epsilon")   # where a normalisation stores its epsilon
    default_eps: float | None = None      # a BatchNorm epsilon the file need not store
    momentum = "batch"                    # "batch": weight of the batch statistic; "average":
    #                                       weight of the running average (1 - the other)
    index_dtype = "int64"                 # token ids
    leaf_aliases: Mapping[str, str] = {}  # parameter leaf names -> the state-dict words
    # a bare state dict (a dict of arrays, a safetensors file) is named as it names tensors
    state_dicts = False
    # its state dicts list layers in the order the model registered them (not ran them)
    registration_order = False
    # its state dicts may hold Hugging Face Conv1D kernels stored (in, out)
    conv1d_family = False
    padding_idx = False                   # embeddings may keep a padding row (padding_idx)
    mask_zero = False                     # embeddings may mask index 0 for what follows
    hints: Mapping[str, str] = {}         # how to make a model of it say a fact, by topic

    # ---- layouts ---------------------------------------------------------------------------
    def axes(self, op: str, role: str, ndim: int) -> tuple[str, ...] | None:
        """Axis labels of a parameter, or None when the convention does not fix them."""
        labels = self._axes(op, role, ndim)
        if labels is not None and len(labels) != ndim:
            return None
        return labels

    def _axes(self, op: str, role: str, ndim: int) -> tuple[str, ...] | None:
        if ndim == 0:
            return ()
        if role in BIAS_ROLES and ndim == 1:
            return ("out",)
        if role in CHANNEL_ROLES and ndim == 1:
            return ("c",)
        if role == "embeddings" or (op == "embedding" and role == "kernel"):
            return ("vocab", "dim") if ndim == 2 else None
        family = KERNEL_FAMILIES.get(self.kernels or "")
        return family(op, role, ndim) if family is not None else None

    def data_format(self, attrs: Mapping[str, Any]) -> str:
        """``channels_first`` or ``channels_last`` of a layer's feature maps: its own
        ``data_format``, else the convention's."""
        fmt = attrs.get("data_format")
        return fmt if fmt in ("channels_first", "channels_last") else self.feature_maps

    def activation_axes(self, op: str, attrs: Mapping[str, Any], ndim: int) -> Units | None:
        """Labels of the output of a layer (``op`` with ``attrs``), or None when the
        convention does not fix them."""
        if op in RECURRENT_OPS:
            return self.recurrent_output_axes(attrs, ndim)
        if spatial_rank(op) is not None or op in PER_CHANNEL_OPS:
            return feature_map_axes(self.data_format(attrs), ndim)
        if ndim >= 2:          # dense, embedding, layer norms ...: features on the last axis
            return ("n",) + tuple(f"a{i}" for i in range(ndim - 2)) + ("c",)
        return None

    def recurrent_output_axes(self, attrs: Mapping[str, Any], ndim: int) -> Units | None:
        """A recurrent layer's output: ``(n, t, (dir, c))`` batch first, else time first; a
        single cell's ``(n, (dir, c))``."""
        features = ("dir", "c")
        if attrs.get("cell"):
            return ("n", features) if ndim == 2 else None
        if ndim != 3:
            return None
        return ("n", "t", features) if self.batch_first(attrs) else ("t", "n", features)

    def batch_first(self, attrs: Mapping[str, Any]) -> bool:
        """Whether a recurrent layer takes its sequences batch first."""
        return bool(attrs.get("batch_first"))

    def depthwise_pattern(self, rank: int) -> str:
        """The depthwise kernel's rearrangement pattern for ``rank`` spatial axes."""
        return self.depthwise_kernel.replace("spatial", ",".join(SPATIAL[rank]))

    # ---- recurrent layers ------------------------------------------------------------------
    def recurrent_cells(self, layer: Layer) -> CellsOf:
        """The cells of a recurrent layer as (level, cell) in stack order, and the parameters
        of each level outside its cells. By default one level whose directions the reader
        listed (``attrs["directions"]``: parameter names per direction; else the first half
        forward and the second backward when ``attrs["bidirectional"]``), cells by role."""
        by_name = {p.name: p for p in layer.params}
        groups = layer.attrs.get("directions")
        if groups:
            named = {d: [by_name[n] for n in groups.get(d, ()) if n in by_name]
                     for d in ("forward", "backward")}
        elif layer.attrs.get("bidirectional"):
            half = len(layer.params) // 2
            named = {"forward": list(layer.params[:half]),
                     "backward": list(layer.params[half:])}
        else:
            named = {"forward": list(layer.params), "backward": []}
        cells, extra = [], []
        for direction, params in named.items():
            if not params:
                continue
            slots: dict[str, Param] = {}
            for p in params:
                if p.role in ("kernel", "recurrent_kernel", "bias", "recurrent_bias") \
                        and p.role not in slots:
                    slots[p.role] = p
                else:
                    extra.append(p)
            cells.append((0, RecurrentCell(direction, slots.get("kernel"),
                                           slots.get("recurrent_kernel"), slots.get("bias"),
                                           slots.get("recurrent_bias"))))
        return cells, {0: tuple(extra)}

    def gate_order(self, layer: Layer) -> str | None:
        """The gate letters of a recurrent layer along its stacked axis, as stored."""
        return layer.attrs.get("gate_order") or self.gate_orders.get(layer.op)

    def recurrent_activations(self, layer: Layer) -> tuple[str, ...]:
        """(gate, candidate[, output]) activations of a recurrent layer."""
        return DEFAULT_ACTIVATIONS[layer.op]

    def gru_reset(self, layer: Layer, cells: tuple[RecurrentCell, ...]) -> str:
        """``after``: the reset gate multiplies (R·h + Rb); ``before``: it multiplies h."""
        return "after"

    def recurrent_extras(self, layer: Layer, units: int, cells: tuple[RecurrentCell, ...],
                         extra: tuple[Param, ...]) -> dict[str, Any]:
        """Whatever else decides a recurrent level's function (clipping, projections ...)."""
        return {}

    def describe_reset(self, after: bool) -> str:
        """The GRU reset variant in this convention's words."""
        return f"reset gate {'after' if after else 'before'} the recurrent kernel"

    # ---- normalisation, embeddings, padding, activations -----------------------------------
    def epsilon(self, layer: Layer) -> tuple[float | None, str]:
        """A normalisation's epsilon and how it is known: ``stored``, an assumed default, or
        unknown (None, ``not stored``)."""
        for key in self.eps_keys:
            value = layer.attrs.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value), "stored"
        if self.default_eps is not None:
            return self.default_eps, f"{self.name} default, not stored"
        return None, "not stored"

    def batch_momentum(self, layer: Layer) -> float | None:
        """A BatchNorm's momentum as the weight of the batch statistic, if stored."""
        m = layer.attrs.get("momentum")
        if not isinstance(m, (int, float)) or isinstance(m, bool):
            return None
        return 1.0 - float(m) if self.momentum == "average" else float(m)

    def padding(self, attrs: Mapping[str, Any]) -> str | None:
        """``same``: padded as TF's SAME (a stride above 1 pads the extra row and column at the
        end); ``symmetric``: explicit padding on both sides; ``none``: no padding in the conv
        itself; None: not known."""
        return None

    def bn_folded(self, layer: Layer, kernel: Param | None) -> bool:
        """Whether an exporter folded a BatchNorm into this conv or dense layer (its kernel
        ``kernel``), as the file shows it."""
        return False

    def activation(self, attrs: Mapping[str, Any]) -> Any:
        """The activation a dense or convolution layer applies to its output, by name (None
        or "linear" for none)."""
        return attrs.get("activation")

    def hint(self, topic: str, default: str = "") -> str:
        return self.hints.get(topic, default)


NEUTRAL = Convention()
