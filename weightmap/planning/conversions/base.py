"""The conversion registry and what a conversion receives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...errors import ConversionError, PlanError
from ...graph import Layer, Param, ParamGraph
from ..plan import TensorPlan

Converter = Callable[["LayerPair"], list[TensorPlan]]
_REGISTRY: dict[tuple[str, str], Converter] = {}
# Passes run over the whole plan after the per-layer conversions, in registration order: for
# conversions that span layers (e.g. a fused conv feeding a target Conv + BatchNorm).
PlanPass = Callable[["PlanContext"], None]
PASSES: list[tuple[str, PlanPass]] = []
# Graph passes run on (source, target) before matching, in registration order: for facts the
# readers cannot know alone, e.g. that a state dict's ``c_attn`` kernels are stored (in, out).
# Each returns the (possibly refined) pair of graphs; names and tensor data never change.
GraphPass = Callable[[ParamGraph, ParamGraph, Mapping[str, Any]], tuple[ParamGraph, ParamGraph]]
GRAPH_PASSES: list[tuple[str, GraphPass]] = []


@dataclass(frozen=True)
class LayerPair:
    """A matched layer pair with everything a conversion may look at."""

    source: Layer
    target: Layer
    source_graph: ParamGraph
    target_graph: ParamGraph
    pairs: tuple[tuple[str, tuple[str, ...], str], ...]   # (target param, source params, note)
    match: Mapping[str, Any] = field(default_factory=dict, hash=False)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def source_framework(self) -> str:
        return self.source_graph.framework

    @property
    def target_framework(self) -> str:
        return self.target_graph.framework

    def note_of(self, target_name: str) -> str:
        """The matcher's note on how several sources combine ("sum", "stack", "row:0" ...)."""
        return next((note for tname, _, note in self.pairs if tname == target_name), "")

    def sources_of(self, target_name: str) -> tuple[Param, ...]:
        for tname, snames, _ in self.pairs:
            if tname == target_name:
                by_name = {p.name: p for p in self.source.params}
                return tuple(by_name[s] if s in by_name else self.source_graph.param(s)
                             for s in snames)
        return ()

    def plan(self, tparam: Param, status: str, sources=(), steps=(), notes=(),
             value=None, **typed: Any) -> TensorPlan:
        """A plan of ``tparam`` in this pair; ``typed``: ``reason``, ``pending``,
        ``fitted_layout`` (``TensorPlan``)."""
        return TensorPlan(target=tparam.name, layer=self.target.name, shape=tparam.shape,
                          dtype=tparam.dtype, status=status,
                          sources=tuple(p.name for p in sources), steps=tuple(steps),
                          notes=tuple(notes), match=dict(self.match), value=value, **typed)


@dataclass
class PlanContext:
    """What a plan pass sees and may change: the tensor plans (in target order, replace entries
    by index), the graphs, the matching, and a list of decisions to report."""

    tensors: list[TensorPlan]
    source_graph: ParamGraph
    target_graph: ParamGraph
    matching: Any
    options: Mapping[str, Any]
    decisions: list[str]

    def index(self) -> dict[str, int]:
        return {t.target: i for i, t in enumerate(self.tensors)}


def register_pass(name: str) -> Callable[[PlanPass], PlanPass]:
    """Register a whole-plan pass under ``name`` (run after every layer conversion)."""
    def wrap(fn: PlanPass) -> PlanPass:
        if any(n == name for n, _ in PASSES):
            raise PlanError(f"plan pass {name!r} registered twice")
        PASSES.append((name, fn))
        return fn
    return wrap


def register(source: str, target: str) -> Callable[[Converter], Converter]:
    """Register a conversion for ``"framework:op"`` keys (``*`` matches any framework)."""
    def wrap(fn: Converter) -> Converter:
        key = (source, target)
        if key in _REGISTRY:
            raise PlanError(f"conversion {source} -> {target} registered twice")
        _REGISTRY[key] = fn
        return fn
    return wrap


def lookup(pair: LayerPair) -> Converter:
    sf, so = pair.source_framework, pair.source.op
    tf, to = pair.target_framework, pair.target.op
    for key in ((f"{sf}:{so}", f"{tf}:{to}"), (f"*:{so}", f"{tf}:{to}"),
                (f"{sf}:{so}", f"*:{to}"), (f"*:{so}", f"*:{to}"), ("*:*", "*:*")):
        if key in _REGISTRY:
            return _REGISTRY[key]
    raise ConversionError(f"no conversion from {sf}:{so} to {tf}:{to}")


def convert(pair: LayerPair) -> list[TensorPlan]:
    return lookup(pair)(pair)


def register_graph_pass(name: str) -> Callable[[GraphPass], GraphPass]:
    """Register a pass over (source, target) graphs, run before matching."""
    def wrap(fn: GraphPass) -> GraphPass:
        if any(n == name for n, _ in GRAPH_PASSES):
            raise PlanError(f"graph pass {name!r} registered twice")
        GRAPH_PASSES.append((name, fn))
        return fn
    return wrap


def prepare_graphs(source: ParamGraph, target: ParamGraph,
                   options: Mapping[str, Any] | None = None) -> tuple[ParamGraph, ParamGraph]:
    """Both graphs after every registered graph pass."""
    for _name, graph_pass in GRAPH_PASSES:
        source, target = graph_pass(source, target, options or {})
    return source, target
