"""One small function per ONNX op that carries weights: node -> Draft (op kind, weight slots,
attributes). The table ``HANDLERS`` maps op types to them; a handler returns None when the node
does not fit its pattern (e.g. a Conv whose weight is computed), and the node becomes ``opaque``.

Defaults of omitted attributes are the ONNX specification's, written out so later stages never
need to know them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Callable

from .convention import CONVENTION

from .graphinfo import DEFAULT_DOMAINS, GraphInfo, node_attrs

DEFAULT_AXES = object()   # sentinel: take axis labels from the convention

# Inputs that hold shapes, axes, indices or scalar settings, not learned weights. An initializer
# used only in such places lands in the trailing "<unconsumed>" layer instead of a layer.
SHAPE_OPERANDS: dict[str, frozenset[int]] = {
    op: frozenset(pos) for op, pos in {
        "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Unsqueeze": {1},
        "Squeeze": {1}, "Pad": {1, 2, 3}, "Resize": {1, 2, 3}, "Upsample": {1},
        "ConstantOfShape": {0}, "Range": {0, 1, 2}, "Split": {1}, "TopK": {1},
        "OneHot": {1, 2}, "Gather": {1}, "GatherElements": {1}, "GatherND": {1},
        "ScatterND": {1}, "ScatterElements": {1}, "Trilu": {1}, "CumSum": {1}, "Clip": {1, 2},
        "Dropout": {1, 2}, "Shape": {0}, "Size": {0}, "CastLike": {1},
        "ReduceSum": {1}, "ReduceMean": {1}, "ReduceMax": {1}, "ReduceMin": {1},
        "ReduceProd": {1}, "ReduceL1": {1}, "ReduceL2": {1}, "ReduceLogSumExp": {1},
        "ReduceSumSquare": {1},
    }.items()
}


@dataclass
class Slot:
    """One weight input of a layer: the value name the node uses, its role, its axis labels."""

    name: str
    role: str
    axes: Any = DEFAULT_AXES
    pos: int | None = None            # input position on the node (None: from a merged node)


@dataclass
class Draft:
    op: str
    slots: list[Slot]
    attrs: dict[str, Any] = field(default_factory=dict)
    merged: tuple[int, ...] = ()      # indices of nodes folded into this layer


def _input(node: Any, pos: int) -> str:
    return node.input[pos] if pos < len(node.input) else ""


def _slots(info: GraphInfo, node: Any, roles: dict[int, str]) -> list[Slot]:
    """Slots for the positions in ``roles`` that hold initializers (or aliases of them)."""
    return [Slot(_input(node, pos), role, pos=pos) for pos, role in roles.items()
            if info.weight(_input(node, pos)) is not None]


def conv(info: GraphInfo, index: int, node: Any) -> Draft | None:
    w = info.weight(_input(node, 1))
    rank = len(w.shape) - 2 if w is not None else 0
    if rank not in (1, 2, 3):
        return None
    a = node_attrs(node)
    group = a.get("group", 1)
    # (C_out, C_in/group, k...): one input channel per group and group == C_in is depthwise.
    depthwise = w.shape[1] == 1 and group > 1 and rank <= 2
    attrs = _conv_attrs(a, w.shape, rank)
    attrs.update(in_channels=w.shape[1] * group, out_channels=w.shape[0])
    if depthwise:
        attrs["depth_multiplier"] = w.shape[0] // group
    op = f"depthwise_conv{rank}d" if depthwise else f"conv{rank}d"
    return Draft(op, _slots(info, node, {1: "kernel", 2: "bias"}), attrs)


def conv_transpose(info: GraphInfo, index: int, node: Any) -> Draft | None:
    w = info.weight(_input(node, 1))
    rank = len(w.shape) - 2 if w is not None else 0
    if rank not in (1, 2, 3):
        return None
    a = node_attrs(node)
    attrs = _conv_attrs(a, w.shape, rank)
    # (C_in, C_out/group, k...)
    attrs.update(in_channels=w.shape[0], out_channels=w.shape[1] * attrs["group"],
                 output_padding=a.get("output_padding", [0] * rank))
    if "output_shape" in a:
        attrs["output_shape"] = a["output_shape"]
    return Draft(f"conv_transpose{rank}d", _slots(info, node, {1: "kernel", 2: "bias"}), attrs)


def _conv_attrs(a: dict[str, Any], wshape: tuple[int, ...], rank: int) -> dict[str, Any]:
    return {"kernel_shape": a.get("kernel_shape", list(wshape[2:])),
            "strides": a.get("strides", [1] * rank), "pads": a.get("pads", [0] * 2 * rank),
            "dilations": a.get("dilations", [1] * rank), "group": a.get("group", 1),
            "auto_pad": a.get("auto_pad", "NOTSET")}


def gemm(info: GraphInfo, index: int, node: Any) -> Draft | None:
    """Y = alpha * op(A) @ op(B) + beta * C; B (out, in) when transB=1, else (in, out)."""
    b = info.weight(_input(node, 1))
    if b is None or len(b.shape) != 2 or info.weight(_input(node, 0)) is not None:
        return None
    a = node_attrs(node)
    trans_b = a.get("transB", 0)
    axes = ("out", "in") if trans_b else ("in", "out")
    out_f, in_f = (b.shape[0], b.shape[1]) if trans_b else (b.shape[1], b.shape[0])
    attrs = {"alpha": a.get("alpha", 1.0), "beta": a.get("beta", 1.0),
             "transA": a.get("transA", 0), "transB": trans_b,
             "in_features": in_f, "out_features": out_f}
    slots = [Slot(_input(node, 1), "kernel", axes, pos=1)]
    slots += _slots(info, node, {2: "bias"})
    return Draft("dense", slots, attrs)


def matmul(info: GraphInfo, index: int, node: Any) -> Draft | None:
    """x @ W (W: (in, out)) or W @ x (W: (out, in)); a following Add of a 1-D initializer of
    length out, fed only by this MatMul, is this dense layer's bias."""
    wa, wb = info.weight(_input(node, 0)), info.weight(_input(node, 1))
    if (wa is None) == (wb is None):
        return None
    pos, w = (1, wb) if wb is not None else (0, wa)
    if len(w.shape) != 2:
        return None
    axes = ("in", "out") if pos == 1 else ("out", "in")
    in_f, out_f = (w.shape[0], w.shape[1]) if pos == 1 else (w.shape[1], w.shape[0])
    draft = Draft("dense", [Slot(_input(node, pos), "kernel", axes, pos=pos)],
                  {"in_features": in_f, "out_features": out_f})
    bias = _bias_add(info, node, out_f) if pos == 1 else None
    if bias is not None:
        add_index, bias_name = bias
        draft.slots.append(Slot(bias_name, "bias"))
        draft.merged = (add_index,)
        draft.attrs["bias_node"] = info.nodes[add_index].name or f"Add_{add_index}"
    return draft


def _bias_add(info: GraphInfo, node: Any, out_f: int) -> tuple[int, str] | None:
    out = node.output[0]
    users = info.consumers.get(out, [])
    if out in info.graph_outputs or len(users) != 1:
        return None
    add_index, pos = users[0]
    add = info.nodes[add_index]
    if add.op_type != "Add" or add.domain not in DEFAULT_DOMAINS or len(add.input) != 2:
        return None
    other = add.input[1 - pos]
    w = info.weight(other)
    if w is None or w.shape != (out_f,):
        return None
    return add_index, other


def batchnorm(info: GraphInfo, index: int, node: Any) -> Draft | None:
    a = node_attrs(node)
    slots = _slots(info, node, {1: "gamma", 2: "beta", 3: "moving_mean", 4: "moving_var"})
    attrs = {"epsilon": a.get("epsilon", 1e-5), "momentum": a.get("momentum", 0.9),
             "training_mode": a.get("training_mode", 0)}
    stats = [info.weight(_input(node, p)) for p in (1, 2, 3, 4)]
    sizes = {s.shape[0] for s in stats if s is not None and len(s.shape) == 1}
    if len(sizes) == 1:
        attrs["num_features"] = sizes.pop()
    return Draft("batchnorm", slots, attrs)


def recurrent(op: str) -> Callable[[GraphInfo, int, Any], Draft | None]:
    """LSTM / GRU / RNN: W (dirs, G*H, in), R (dirs, G*H, H), B (dirs, 2*G*H) = [Wb; Rb]."""
    def handler(info: GraphInfo, index: int, node: Any) -> Draft | None:
        w = info.weight(_input(node, 1))
        if w is None or len(w.shape) != 3:
            return None
        a = node_attrs(node)
        attrs: dict[str, Any] = {
            "hidden_size": a.get("hidden_size"), "direction": a.get("direction", "forward"),
            "num_directions": w.shape[0], "input_size": w.shape[2], "layout": a.get("layout", 0)}
        for key in ("activations", "activation_alpha", "activation_beta", "clip"):
            if key in a:
                attrs[key] = a[key]
        if op == "lstm":
            attrs["input_forget"] = a.get("input_forget", 0)
        if op == "gru":
            attrs["linear_before_reset"] = a.get("linear_before_reset", 0)
        if op in CONVENTION.gate_orders:
            attrs["gate_order"] = CONVENTION.gate_orders[op]
        roles = {1: "kernel", 2: "recurrent_kernel", 3: "bias"}
        return Draft(op, _slots(info, node, roles), attrs)
    return handler


def gather(info: GraphInfo, index: int, node: Any) -> Draft | None:
    data = info.weight(_input(node, 0))
    if data is None or len(data.shape) != 2 or node_attrs(node).get("axis", 0) != 0:
        return None
    return Draft("embedding", [Slot(_input(node, 0), "embeddings", pos=0)],
                 {"num_embeddings": data.shape[0], "embedding_dim": data.shape[1]})


def norm(op: str, defaults: dict[str, Any]) -> Callable[[GraphInfo, int, Any], Draft | None]:
    """LayerNormalization / InstanceNormalization / GroupNormalization: scale, bias."""
    def handler(info: GraphInfo, index: int, node: Any) -> Draft | None:
        a = node_attrs(node)
        attrs = {k: a.get(k, v) for k, v in defaults.items()}
        attrs.update({k: v for k, v in a.items() if k not in attrs})
        return Draft(op, _slots(info, node, {1: "gamma", 2: "beta"}), attrs)
    return handler


def prelu(info: GraphInfo, index: int, node: Any) -> Draft | None:
    slope = info.weight(_input(node, 1))
    if slope is None:
        return None
    return Draft("prelu", _slots(info, node, {1: "alpha"}), {"slope_shape": list(slope.shape)})


def opaque(info: GraphInfo, index: int, node: Any) -> Draft | None:
    """Any other node consuming initializers: kept, its weights in input order (role other)."""
    skip = SHAPE_OPERANDS.get(node.op_type, frozenset()) \
        if node.domain in DEFAULT_DOMAINS else frozenset()
    slots = [Slot(name, "other", None, pos=pos) for pos, name in enumerate(node.input)
             if pos not in skip and info.weight(name) is not None]
    return Draft("opaque", slots, node_attrs(node)) if slots else None


HANDLERS: dict[str, Callable[[GraphInfo, int, Any], Draft | None]] = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batchnorm,
    "LSTM": recurrent("lstm"),
    "GRU": recurrent("gru"),
    "RNN": recurrent("simple_rnn"),
    "Gather": gather,
    "LayerNormalization": norm("layernorm", {"epsilon": 1e-5, "axis": -1, "stash_type": 1}),
    "InstanceNormalization": norm("instancenorm", {"epsilon": 1e-5}),
    "GroupNormalization": norm("groupnorm", {"epsilon": 1e-5, "stash_type": 1}),
    "PRelu": prelu,
}


def draft_for(info: GraphInfo, index: int, node: Any) -> Draft | None:
    """The layer a node makes, or None when it consumes no weights."""
    handler = HANDLERS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
    draft = handler(info, index, node) if handler else None
    if draft is None:
        return opaque(info, index, node)
    covered = {s.pos for s in draft.slots}
    skip = SHAPE_OPERANDS.get(node.op_type, frozenset())
    # Weights the handler has no role for (LSTM initial_h, peepholes ...) are kept as "other".
    draft.slots += [Slot(name, "other", None, pos=pos) for pos, name in enumerate(node.input)
                    if pos not in covered and pos not in skip and info.weight(name) is not None]
    return draft


def layer_drafts(info: GraphInfo) -> Iterator[tuple[int, Any, Draft]]:
    """``(node index, node, draft)`` of every node that makes a layer, in graph order: the walk
    the reader builds layers from and the writer replays to find each parameter's node input.
    Identity alias nodes and nodes merged into an earlier layer (a MatMul's bias Add) are
    skipped."""
    skip = set(info.alias_nodes)
    for index, node in enumerate(info.nodes):
        if index in skip:
            continue
        draft = draft_for(info, index, node)
        if draft is None or not draft.slots:
            continue
        skip.update(draft.merged)
        yield index, node, draft
