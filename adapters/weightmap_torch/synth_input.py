"""An input made up for a torch model that comes without ``example_input``, so that its forward
can still be traced (execution order, the shapes entering each dense layer).

What a model eats is told by its **stem**, the module the input enters: the first module in
registration order of each kind, tried in this order: a convolution (``(1, in_channels,
*spatial)`` floats), an embedding (``(1, tokens)`` ids), a recurrent layer (``(1, steps,
input_size)`` or ``(steps, 1, ...)``), a linear layer (``(1, in_features)``). The spatial size
comes from the source graph where it is known (``ParamGraph.meta["input_shape"]``: an ONNX graph
input, a Keras model's input layer), then from a short list of usual sizes (``SPATIAL``; 224 x
224 first for images); the inputs are tried in order until one runs. A model none of them runs
keeps registration order, and the report says so with the hint to add ``example_input``.

Nothing here allocates weights: a meta-built model runs on stand-ins (``meta_trace``), a model
with real weights runs on CPU as it is (eval mode, no gradients, modes put back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from weightmap.errors import WeightmapError

from . import live_trace

# Usual input sizes, tried in this order after the source graph's (docs/matching.md).
SPATIAL = {1: ((256,), (1024,), (64,)),
           2: ((224, 224), (32, 32), (64, 64), (28, 28), (96, 96), (128, 128), (256, 256),
               (384, 384), (512, 512)),
           3: ((16, 112, 112), (8, 64, 64))}
TOKENS = (8, 1)               # sequence lengths for an embedding or recurrent stem
STEM_KINDS = ("conv", "embedding", "recurrent", "linear")
_MAX_REASON = 160


@dataclass(frozen=True)
class Stem:
    """The module the input enters."""

    path: str
    kind: str                     # one of STEM_KINDS
    channels: int                 # in_channels / input_size / in_features (0 for embeddings)
    rank: int = 0                 # spatial rank of a convolution
    batch_first: bool = True      # recurrent stems
    dtype: Any = None             # the stem weight's dtype (floating inputs follow it)


@dataclass(frozen=True)
class Candidate:
    shape: tuple[int, ...]
    dtype: Any
    why: str                      # where the size came from


@dataclass(frozen=True)
class Outcome:
    """A trace (or None) and what the graph and the report say about how the order was found."""

    trace: live_trace.Trace | None
    how: str                      # for graph.meta["trace_input"]
    decision: str | None = None   # for the report when the order is a fallback
    input: Candidate | None = None   # the input that ran (a verification's probe follows it)


def find_stems(model: Any, torch: Any) -> list[Stem]:
    """The first module of each kind in registration order, in ``STEM_KINDS`` order."""
    nn = torch.nn
    found: dict[str, Stem] = {}
    for path, mod in model.named_modules():
        stem = _stem_of(path, mod, nn)
        if stem is not None:
            found.setdefault(stem.kind, stem)
    return [found[k] for k in STEM_KINDS if k in found]


def _stem_of(path: str, mod: Any, nn: Any) -> Stem | None:
    if isinstance(mod, nn.modules.conv._ConvNd):
        return Stem(path, "conv", mod.in_channels, len(mod.kernel_size),
                    dtype=mod.weight.dtype)
    if isinstance(mod, nn.Embedding):
        return Stem(path, "embedding", 0)
    if isinstance(mod, nn.modules.rnn.RNNBase):
        return Stem(path, "recurrent", mod.input_size, batch_first=mod.batch_first,
                    dtype=mod.weight_ih_l0.dtype)
    if isinstance(mod, nn.Linear):
        return Stem(path, "linear", mod.in_features, dtype=mod.weight.dtype)
    return None


def candidates(stem: Stem, hint: Sequence[Any] | None, torch: Any) -> list[Candidate]:
    """Inputs to try, in order: the source graph's size first, then the usual ones."""
    floating = stem.dtype if stem.dtype is not None and stem.dtype.is_floating_point \
        else torch.float32
    if stem.kind == "embedding":
        known = _sequence_hint(hint)
        lengths = ([known] if known else []) + [n for n in TOKENS if n != known]
        return [Candidate((1, n), torch.int64, "sequence length from the source graph"
                          if n == known else "default sequence length") for n in lengths]
    if stem.kind == "linear":
        return [Candidate((1, stem.channels), floating, f"in_features of {stem.path}")]
    if stem.kind == "recurrent":
        return [Candidate((1, n, stem.channels) if stem.batch_first else (n, 1, stem.channels),
                          floating, "default sequence length") for n in TOKENS]
    known = _spatial_hint(hint, stem)
    sizes = ([known] if known else []) + [s for s in SPATIAL.get(stem.rank, ()) if s != known]
    return [Candidate((1, stem.channels) + tuple(s), floating,
                      "spatial size from the source graph" if s == known else "default size")
            for s in sizes]


def _spatial_hint(hint: Sequence[Any] | None, stem: Stem) -> tuple[int, ...] | None:
    """The per-sample source input shape without its channel axis, when it has the stem's rank
    and channel count (channels first, else last) and every size is known."""
    if not hint or len(hint) != stem.rank + 1 or any(not isinstance(d, int) or d <= 0
                                                     for d in hint):
        return None
    if hint[0] == stem.channels:
        return tuple(hint[1:])
    if hint[-1] == stem.channels:
        return tuple(hint[:-1])
    return None


def _sequence_hint(hint: Sequence[Any] | None) -> int | None:
    if hint and len(hint) == 1 and isinstance(hint[0], int) and hint[0] > 0:
        return hint[0]
    return None


def describe(shape: tuple[int, ...], dtype: Any) -> str:
    return f"({', '.join(map(str, shape))}) {str(dtype).removeprefix('torch.')}"


def synthesize(model: Any, torch: Any, hint: Sequence[Any] | None, origin: str,
               run: Callable[[list[Any]], tuple[live_trace.Trace, int]],
               device: str = "cpu") -> Outcome:
    """Trace ``model`` on the first candidate input ``run`` gets through; ``run`` takes the
    inputs (made on ``device``) and returns (trace, index of the one that ran) or raises."""
    holders = sum(1 for m in model.modules() if next(m.parameters(recurse=False), None)
                  is not None or next(m.buffers(recurse=False), None) is not None)
    if holders < 2:
        return Outcome(None, "registration order (one layer: nothing to order)")
    stems = find_stems(model, torch)
    if not stems:
        return _fallback(origin, "it has no convolution, embedding, recurrent or linear layer "
                                 "to make an input for")
    tried = [(stem, c) for stem in stems for c in candidates(stem, hint, torch)]
    inputs = [_zeros(c, torch, device) for _, c in tried]
    try:
        trace, index = run(inputs)
    except WeightmapError as exc:
        shapes = ", ".join(describe(c.shape, c.dtype) for _, c in tried[:6]) + \
            (", ..." if len(tried) > 6 else "")
        reason = " ".join(exc.message.removeprefix("running example_input through the model "
                                                   "failed: ").split())
        names = " or ".join(repr(stem.path) for stem in stems)
        return _fallback(origin, f"it did not run on a synthesized input for its stem {names} "
                                 f"(tried {shapes}; {reason[:_MAX_REASON]})")
    stem, chosen = tried[index]
    return Outcome(trace, f"synthesized input {describe(chosen.shape, chosen.dtype)} for the "
                          f"stem {stem.path!r} ({chosen.why})", input=chosen)


def _zeros(c: Candidate, torch: Any, device: str) -> Any:
    return torch.zeros(c.shape, dtype=c.dtype, device=device)


def _fallback(origin: str, why: str) -> Outcome:
    return Outcome(None, f"registration order: {why}",
                   f"{origin}: layers are in registration order (the order the model creates "
                   f"them), not execution order: {why}; layers that run in another order than "
                   f"they are created may be paired wrongly: define example_input in the model "
                   f"file (a tensor, a tuple of positional arguments or a dict of keyword "
                   f"arguments)")


def run_live(model: Any, torch: Any) -> Callable[[list[Any]], tuple[live_trace.Trace, int]]:
    """A ``run`` for a model with real weights: each input in turn, as ``live_trace.run``."""
    def run(inputs: list[Any]) -> tuple[live_trace.Trace, int]:
        first: WeightmapError | None = None
        for i, x in enumerate(inputs):
            try:
                return live_trace.run(model, x, torch), i
            except WeightmapError as exc:
                first = first or exc
        assert first is not None
        raise first
    return run
