"""What a conversion and a plan pass receive."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ... import registry
from ...convention import Convention
from ...graph import Layer, Param, ParamGraph
from ..plan import TensorPlan

Converter = Callable[["LayerPair"], list[TensorPlan]]
# A pass over the whole plan after the per-layer conversions (planning/passes.py lists them in
# order): for conversions that span layers (e.g. a fused conv feeding a target Conv + BatchNorm).
PlanPass = Callable[["PlanContext"], None]
# A pass over (source, target) before matching, for facts the readers cannot know alone (e.g.
# that a state dict's ``c_attn`` kernels are stored (in, out)); it returns the (possibly
# refined) pair of graphs; names and tensor data never change.
GraphPass = Callable[[ParamGraph, ParamGraph, Mapping[str, Any]], tuple[ParamGraph, ParamGraph]]


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

    @property
    def source_convention(self) -> Convention:
        return registry.convention(self.source_graph.framework)

    @property
    def target_convention(self) -> Convention:
        return registry.convention(self.target_graph.framework)

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
