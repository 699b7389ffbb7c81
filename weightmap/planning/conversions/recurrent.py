"""LSTM, GRU and simple RNN between conventions (CONVERSIONS.md, "Recurrent").

Each target tensor is planned from the *cells* (level × direction, see recurrent_levels.py) it
holds, through the canonical form: kernels as ``(G·H, in)``, biases as the input bias ``bx``, the
recurrent bias ``bh``, their sum ``b`` or the pair ``[bx; bh]``, all in the *source's* gate order.
How each side stores a cell is its convention's (``Convention.recurrent``, the kernels' axis
labels): the source side reads it into the canonical form (``piece``: a transpose for ``(in,
G·H)`` kernels, one direction taken off a stacked axis, biases summed, split or unpacked), the
target side permutes gate blocks into its own order and lays the tensor out its way (transposed
kernels, directions stacked, a single, two or a packed ``[Wb; Rb]`` bias).

* One bias vs two: an LSTM (or a GRU with the reset gate before the recurrent kernel) uses only
  ``bx + bh``, so a single bias becomes ``b_ih`` with ``b_hh = 0`` (synthetic, exact), and two
  are summed. A GRU with its reset gate after the recurrent kernel keeps both.
* Layers whose function differs whatever the weights (GRU reset variants, activations, and the
  convention's extras: clipping, coupled gates, peepholes, projections) are refused with a
  ConversionError: the planner keeps the target layer new and reports why.
* A matched pair whose stacks differ (torch ``num_layers=2`` against two Keras layers) is left to
  the ``recurrent_stacks`` plan pass (recurrent_stack.py), which pairs levels across layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...errors import ConversionError, PlanError
from ...graph import Param
from ..plan import Pending, TensorPlan
from ...transform import Step, check_steps
from .base import LayerPair
from .generic import cast_steps, plan_param
from .recurrent_levels import Cell, Level, describe_semantics, levels, semantics

DEFERRED = "stacked recurrent layers: levels are paired across layers by the recurrent_stacks pass"
STACKS = Pending("recurrent_stacks")

# make(target param, status, sources, steps, notes, value) -> TensorPlan
MakePlan = Callable[..., TensorPlan]


@dataclass(frozen=True)
class Piece:
    """Source tensor(s) and steps giving one part of one cell in the intermediate form; no
    sources means zeros (a bias the source does not have)."""

    sources: tuple[Param, ...]
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()
    # the values are copied but mean something else (Keras's one bias as torch b_ih)
    rewrites: bool = False

    @property
    def zero(self) -> bool:
        return not self.sources

    def then(self, *steps: Step, notes: tuple[str, ...] = ()) -> "Piece":
        return Piece(self.sources, self.steps + tuple(steps), self.notes + notes, self.rewrites)


# ------------------------------------------------------------------ source side: cell parts
def orientation(p: Param, level: Level) -> tuple[str, ...]:
    """A cell kernel's (out, in) or (in, out), its directions axis left out: by its labels,
    else as its convention's kernels lie."""
    if p.axes is not None and "in" in p.axes and "out" in p.axes:
        return tuple(a for a in p.axes if a in ("in", "out"))
    return ("in", "out") if level.convention.kernels == "channels_last" else ("out", "in")


_TRANSPOSE = Step("transpose", {"perm": [1, 0]})


def piece(level: Level, cell: Cell, part: str) -> Piece:
    """``part`` of ``cell`` in the canonical form: K, R (kernels), bx, bh, b (= bx + bh) or pair
    (= [bx; bh]), read as the level's convention stores it (``RecurrentLayout``)."""
    stacked = cell.index is not None
    where = (f"direction {cell.index} ({cell.direction})",) \
        if stacked and len(level.cells) > 1 else ()
    take = (Step("take", {"axis": 0, "index": cell.index}),) if stacked else ()
    if part in ("K", "R"):
        p = cell.kernel if part == "K" else cell.recurrent_kernel
        flip = (_TRANSPOSE,) if orientation(p, level) == ("in", "out") else ()
        return Piece((p,), take + flip, where)
    bias = level.convention.recurrent.bias
    if bias == "two" and not stacked:
        return _two_biases(cell, part)
    if bias == "one" and not stacked:
        return _one_bias(level, cell, part)
    if bias == "packed":
        return _packed_bias(level, cell, part, take, where)
    raise ConversionError(f"internal: {level.framework} stores {bias} biases per stacked "
                          f"direction, which no conversion reads", tensor=level.layer.name)


def _two_biases(cell: Cell, part: str) -> Piece:
    """An input and a recurrent bias (torch's ``bias_ih``, ``bias_hh``)."""
    bx, bh = cell.bias, cell.recurrent_bias
    if part in ("bx", "bh"):
        p = bx if part == "bx" else bh
        return Piece((p,)) if p is not None else Piece((), notes=("the source has no bias",))
    present = tuple(p for p in (bx, bh) if p is not None)
    if not present:
        return Piece((), notes=("the source has no bias",))
    if part == "b":
        return Piece(present, (Step("sum", {}),) if len(present) == 2 else (),
                     ("b_ih + b_hh -> bias",))
    if len(present) != 2:
        raise ConversionError("a cell with only one of its input and recurrent biases",
                              tensor=present[0].name)
    return Piece(present, (Step("stack", {"axis": 0}),), ("b_ih, b_hh -> [input; recurrent]",))


def _one_bias(level: Level, cell: Cell, part: str) -> Piece:
    """A single bias: their sum, or rows [input; recurrent] where a GRU keeps both."""
    bias, gh = cell.bias, level.gates * level.units
    if bias is None:
        return Piece((), notes=("the source has no bias",))
    if len(bias.shape) == 2:                           # [input; recurrent] rows
        if part in ("bx", "bh"):
            row = 0 if part == "bx" else 1
            what = "input" if row == 0 else "recurrent"
            return Piece((bias,), (Step("take", {"axis": 0, "index": row}),),
                         (f"bias row {row} ({what}) -> {'b_ih' if row == 0 else 'b_hh'}",))
        if part == "b":
            return Piece((bias,), (Step("sum_axis", {"axis": 0}),
                                   Step("reshape", {"shape": [gh]})), ("bias rows summed",))
        return Piece((bias,))
    if part == "bx":
        return Piece((bias,), notes=("bias -> b_ih, b_hh=0",), rewrites=True)
    if part == "bh":
        return Piece((), notes=("b_hh=0 (the source's single bias went to b_ih)",))
    if part == "b":
        return Piece((bias,))
    return Piece((bias,), (Step("zero_pad", {"axis": 0, "before": 0, "after": gh}),
                           Step("reshape", {"shape": [2, gh]})), ("bias -> Wb, Rb=0",))


def _packed_bias(level: Level, cell: Cell, part: str, take: tuple[Step, ...],
                 where: tuple[str, ...]) -> Piece:
    """One vector [input; recurrent] of 2·G·H (ONNX's ``B = [Wb; Rb]``)."""
    gh = level.gates * level.units
    if cell.bias is None:
        return Piece((), notes=("the source has no bias",))
    src = (cell.bias,)
    if part in ("bx", "bh"):
        lo = 0 if part == "bx" else gh
        return Piece(src, take + (Step("slice", {"axis": 0, "start": lo, "stop": lo + gh}),),
                     where + (f"B = [Wb; Rb]: {'Wb -> b_ih' if lo == 0 else 'Rb -> b_hh'}",))
    pair = take + (Step("reshape", {"shape": [2, gh]}),)
    if part == "b":
        return Piece(src, pair + (Step("sum_axis", {"axis": 0}), Step("reshape", {"shape": [gh]})),
                     where + ("B = [Wb; Rb]: Wb + Rb -> bias",))
    return Piece(src, pair, where + ("B = [Wb; Rb] -> [input; recurrent]",))


# ------------------------------------------------------------------ target side
def _gates(src: Level, tgt: Level, axis: int) -> tuple[Step, ...]:
    so, to = src.gate_order(), tgt.gate_order()
    perm = [so.index(g) for g in to]
    if perm == sorted(perm):
        return ()
    return (Step("gate_permute", {"axis": axis, "perm": perm, "units": src.units}),)


def _gate_note(src: Level, tgt: Level) -> tuple[str, ...]:
    raw = (src.gate_order(raw=True), tgt.gate_order(raw=True))
    if raw[0] == raw[1]:
        return ()
    same = " (same order, g = c)" if src.gate_order() == tgt.gate_order() else ""
    return (f"gates {raw[0]}->{raw[1]}{same}",)


def _layout_note(src: Level, tgt: Level) -> tuple[str, ...]:
    """Kernels stored (in, G·H) on one side and (G·H, in) on the other."""
    so = orientation(src.cells[0].kernel, src)
    to = orientation(tgt.cells[0].kernel, tgt)
    return () if so == to else (f"kernel {','.join(so)} -> {','.join(to)}",)


def _bias_targets(src: Level, tgt: Level, scell: Cell, tcell: Cell, note: tuple[str, ...]
                  ) -> list[tuple[Param, Piece]]:
    """The target cell's biases as its convention stores them."""
    bias, g0 = tgt.convention.recurrent.bias, _gates(src, tgt, 0)
    if bias == "two":
        out = []
        for tparam, part in ((tcell.bias, "bx"), (tcell.recurrent_bias, "bh")):
            if tparam is not None:
                p = piece(src, scell, part)
                out.append((tparam, p if p.zero else p.then(*g0, notes=note)))
        return out
    if tcell.bias is None:
        return []
    if bias == "one":
        pair = len(tcell.bias.shape) == 2
        p = piece(src, scell, "pair" if pair else "b")
        return [(tcell.bias, p if p.zero else p.then(*_gates(src, tgt, 1 if pair else 0),
                                                     notes=note))]
    p = piece(src, scell, "pair")                        # packed [Wb; Rb]
    gh = tgt.gates * tgt.units
    return [(tcell.bias, p if p.zero else p.then(*_gates(src, tgt, 1),
                                                 Step("reshape", {"shape": [2 * gh]}),
                                                 notes=note))]


def _cell_targets(src: Level, tgt: Level, scell: Cell, tcell: Cell
                  ) -> list[tuple[Param, Piece]]:
    """A target whose directions are separate tensors: one target tensor per cell part."""
    g0, note = _gates(src, tgt, 0), _gate_note(src, tgt)
    out = []
    for tparam, part in ((tcell.kernel, "K"), (tcell.recurrent_kernel, "R")):
        if tparam is not None:
            flip = (_TRANSPOSE,) if orientation(tparam, tgt) == ("in", "out") else ()
            out.append((tparam, piece(src, scell, part).then(
                *g0, *flip, notes=note + _layout_note(src, tgt))))
    return out + _bias_targets(src, tgt, scell, tcell, note)


def _stacked_targets(src: Level, tgt: Level, pairs: list[tuple[Cell, Cell]]
                     ) -> list[tuple[Param, Piece]]:
    """A target holding every direction of the level in one tensor per part (ONNX W, R, B)."""
    first = tgt.cells[0]
    if tgt.convention.recurrent.bias != "packed" and first.bias is not None:
        raise ConversionError(f"internal: {tgt.framework} stacks directions of "
                              f"{tgt.convention.recurrent.bias} biases, which no conversion "
                              f"writes", tensor=tgt.layer.name)
    note = _gate_note(src, tgt)
    out = []
    for tparam, part in ((first.kernel, "K"), (first.recurrent_kernel, "R")):
        flip = (_TRANSPOSE,) if orientation(tparam, tgt) == ("in", "out") else ()
        out.append((tparam, _lift([piece(src, s, part).then(*_gates(src, tgt, 0), *flip,
                                                            notes=note) for s, _ in pairs])))
    if first.bias is not None:
        out.append((first.bias, _lift([p for s, t in pairs
                                       for _, p in _bias_targets(src, tgt, s, t, note)])))
    return out


def _lift(pieces: list[Piece]) -> Piece:
    """Per-direction pieces → one piece with a leading directions axis."""
    n = len(pieces)
    notes = tuple(dict.fromkeys(x for p in pieces for x in p.notes))
    if all(p.zero for p in pieces):
        return Piece((), notes=notes)
    if any(p.zero for p in pieces):
        raise ConversionError("some directions of the source have biases and others not",
                              tensor=next(p for p in pieces if not p.zero).sources[0].name)
    first = pieces[0]
    takes = [p.steps[0] if p.steps and p.steps[0].op == "take" else None for p in pieces]
    if all(t is not None and t.args["axis"] == 0 and t.args["index"] == i
           for i, t in enumerate(takes)) and len({p.sources for p in pieces}) == 1 \
            and first.sources[0].shape[0] == n and _same_rest(pieces, 1):
        return Piece(first.sources, tuple(_shift(s, n) for s in first.steps[1:]), notes)
    if all(len(p.sources) == 1 for p in pieces) and _same_rest(pieces, 0):
        return Piece(tuple(p.sources[0] for p in pieces),
                     (Step("stack", {"axis": 0}),) + tuple(_shift(s, n) for s in first.steps),
                     notes)
    k = len(first.sources)
    if all(len(p.sources) == k and p.steps and p.steps[0].op == "stack"
           and p.steps[0].args["axis"] == 0 for p in pieces) and _same_rest(pieces, 1):
        shape = [n, k] + list(first.sources[0].shape)
        return Piece(tuple(s for p in pieces for s in p.sources),
                     (Step("stack", {"axis": 0}), Step("reshape", {"shape": shape}))
                     + tuple(_shift(s, n) for s in first.steps[1:]), notes)
    raise ConversionError("cannot combine the source's directions into one tensor",
                          tensor=first.sources[0].name)


def _same_rest(pieces: list[Piece], start: int) -> bool:
    ref = [s.to_dict() for s in pieces[0].steps[start:]]
    return all([s.to_dict() for s in p.steps[start:]] == ref for p in pieces)


def _shift(step: Step, n: int) -> Step:
    """The same step on tensors with one more leading axis of size ``n``."""
    args = dict(step.args)
    if step.op == "transpose":
        args["perm"] = [0] + [p + 1 for p in args["perm"]]
    elif step.op == "reshape":
        args["shape"] = [n] + list(args["shape"])
    elif "axis" in args:
        args["axis"] = args["axis"] + 1
    elif step.op != "cast":
        raise ConversionError(f"internal: cannot lift a {step.op!r} step over directions")
    return Step(step.op, args)


# ------------------------------------------------------------------ one level into another
def check_levels(src: Level, tgt: Level) -> None:
    """ConversionError unless ``src`` can be converted exactly into ``tgt``."""
    where = tgt.layer.name
    if src.op != tgt.op:
        raise ConversionError(f"{src.label()} is a {src.op}, {tgt.label()} a {tgt.op}",
                              tensor=where)
    if src.directions != tgt.directions:
        raise ConversionError(f"{src.label()} has directions {'/'.join(src.directions)}, "
                              f"{tgt.label()} {'/'.join(tgt.directions)}", tensor=where,
                              hint="bidirectional layers pair only with bidirectional ones")
    if (src.units, src.input_size) != (tgt.units, tgt.input_size):
        raise ConversionError(f"{src.label()} has {src.units} units on {src.input_size} inputs, "
                              f"{tgt.label()} {tgt.units} on {tgt.input_size}", tensor=where)
    ss, ts = semantics(src), semantics(tgt)
    if ss != ts:
        raise ConversionError(_differs(src, tgt, ss, ts), tensor=where,
                              hint=_hint(src, tgt, ss, ts))
    if any(c.bias is not None for c in src.cells) and all(c.bias is None for c in tgt.cells):
        raise ConversionError(f"{tgt.label()} has no biases, {src.label()} has: they would be "
                              f"dropped", tensor=where, hint="give the target layer biases")


def _differs(src: Level, tgt: Level, ss: dict, ts: dict) -> str:
    keys = sorted(k for k in set(ss) | set(ts) if ss.get(k) != ts.get(k))
    text = (f"{src.framework} {src.label()} ({_describe(src, ss, keys)}) and {tgt.framework} "
            f"{tgt.label()} ({_describe(tgt, ts, keys)}) compute different functions; no weights "
            f"make them equal")
    if "reset" in keys:
        sc, tc = src.convention, tgt.convention
        text += (f"; a GRU whose reset gate comes before the recurrent kernel "
                 f"({sc.display} {sc.describe_reset(False)}, {tc.display} "
                 f"{tc.describe_reset(False)}) applies it to h, one whose reset gate comes "
                 f"after ({sc.display} {sc.describe_reset(True)}, {tc.display} "
                 f"{tc.describe_reset(True)}) to the recurrent kernel's output")
    return text


def _describe(level: Level, sem: dict, keys: list[str]) -> str:
    """The differing semantics in the words of the level's own framework."""
    words = []
    for k in keys:
        v = sem.get(k)
        if k == "reset":
            words.append(level.convention.describe_reset(v == "after"))
        else:
            words.append(describe_semantics({k: v}) if v is not None else f"no {k}")
    return ", ".join(words)


def _hint(src: Level, tgt: Level, ss: dict, ts: dict) -> str:
    if ss.get("reset") != ts.get("reset"):
        after = ss.get("reset") == "after"
        return (f"build both GRUs with the same variant: the source's "
                f"{src.convention.describe_reset(after)} is the target's "
                f"{tgt.convention.describe_reset(after)}")
    return "build the target layer with the source's activations and options"


def convert_level(src: Level, tgt: Level, make: MakePlan) -> list[TensorPlan]:
    """Plans for every cell parameter of ``tgt`` from ``src`` (ConversionError if not exact)."""
    check_levels(src, tgt)
    by_dir = {c.direction: c for c in src.cells}
    pairs = [(by_dir[t.direction], t) for t in tgt.cells]
    if tgt.convention.recurrent.directions == "stacked":
        planned = _stacked_targets(src, tgt, pairs)
    else:
        planned = [x for s, t in pairs for x in _cell_targets(src, tgt, s, t)]
    extra = _level_note(src, tgt)
    return [_finish(tparam, p, make, extra) for tparam, p in planned]


def _level_note(src: Level, tgt: Level) -> tuple[str, ...]:
    if src.label() == src.layer.name and tgt.label() == tgt.layer.name:
        return ()
    return (f"{tgt.label()} <- {src.label()}",)


def _finish(tparam: Param, p: Piece, make: MakePlan, extra: tuple[str, ...]) -> TensorPlan:
    notes = extra + p.notes
    if p.zero:
        return make(tparam, "synthetic", (), (), notes, 0.0)
    try:
        steps = _simplify(p.sources, list(p.steps), tparam.name)
        steps += cast_steps(p.sources[0], tparam)
        shape = check_steps(steps, [s.shape for s in p.sources], tparam.name)
    except PlanError as exc:
        raise ConversionError(exc.message, tensor=tparam.name) from None
    if tuple(shape) != tuple(tparam.shape):
        raise ConversionError(f"the conversion gives shape {tuple(shape)}, the target holds "
                              f"{tparam.shape}", tensor=tparam.name)
    status = "transformed" if p.rewrites or any(s.op != "cast" for s in steps) \
        else "transferred"
    if any(s.op == "cast" for s in steps):
        notes += (f"dtype {p.sources[0].dtype} -> {tparam.dtype}",)
    return make(tparam, status, p.sources, steps, tuple(dict.fromkeys(notes)), None)


def _simplify(sources, steps: list[Step], where: str) -> list[Step]:
    """Drop steps that change nothing: a reshape to the same shape, an identity transpose or
    gate permutation; merge adjacent transposes (Keras → Keras kernels) and reshapes."""
    out: list[Step] = []
    shapes = [[tuple(s.shape) for s in sources]]      # shapes[i]: the tensors before out[i]
    for step in steps:
        if step.op == "transpose" and out and out[-1].op == "transpose":
            first = out.pop()
            shapes.pop()
            step = Step("transpose", {"perm": [first.args["perm"][i] for i in step.args["perm"]]})
        if step.op == "reshape" and out and out[-1].op == "reshape":
            out.pop()                                  # only the last of two reshapes counts
            shapes.pop()
        if step.op in ("transpose", "gate_permute") and \
                list(step.args["perm"]) == sorted(step.args["perm"]):
            continue
        now = shapes[-1]
        if step.op == "reshape" and len(now) == 1 and now[0] == tuple(step.args["shape"]):
            continue
        out.append(step)
        shapes.append([tuple(check_steps([step], now, where))])
    return out


# ------------------------------------------------------------------ registered conversions
def convert_layers(pair: LayerPair) -> list[TensorPlan]:
    src_levels = levels(pair.source, pair.source_graph)
    tgt_levels = levels(pair.target, pair.target_graph)
    if len(src_levels) != len(tgt_levels):
        return [pair.plan(p, "new", notes=(f"{DEFERRED} ({len(tgt_levels)} level(s) here, "
                                           f"{len(src_levels)} in {pair.source.name!r})",),
                          pending=STACKS) for p in pair.target.params]

    def make(tparam, status, sources, steps, notes, value):
        return pair.plan(tparam, status, sources=sources, steps=steps, notes=notes, value=value)

    planned: dict[str, TensorPlan] = {}
    for s, t in zip(src_levels, tgt_levels):
        planned.update((tp.target, tp) for tp in convert_level(s, t, make))
    return [planned.get(p.name) or plan_param(pair, p) for p in pair.target.params]

