"""The conversion registry and what a conversion receives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import ConversionError, PlanError
from ..graph import Layer, Param, ParamGraph
from ..plan import TensorPlan

Converter = Callable[["LayerPair"], list[TensorPlan]]
_REGISTRY: dict[tuple[str, str], Converter] = {}


@dataclass(frozen=True)
class LayerPair:
    """A matched layer pair with everything a conversion may look at."""

    source: Layer
    target: Layer
    source_graph: ParamGraph
    target_graph: ParamGraph
    pairs: tuple[tuple[str, tuple[str, ...]], ...]   # (target param, source params)
    match: Mapping[str, Any] = field(default_factory=dict, hash=False)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def source_framework(self) -> str:
        return self.source_graph.framework

    @property
    def target_framework(self) -> str:
        return self.target_graph.framework

    def sources_of(self, target_name: str) -> tuple[Param, ...]:
        for tname, snames in self.pairs:
            if tname == target_name:
                by_name = {p.name: p for p in self.source.params}
                return tuple(by_name[s] if s in by_name else self.source_graph.param(s)
                             for s in snames)
        return ()

    def plan(self, tparam: Param, status: str, sources=(), steps=(), notes=(),
             value=None) -> TensorPlan:
        return TensorPlan(target=tparam.name, layer=self.target.name, shape=tparam.shape,
                          dtype=tparam.dtype, status=status,
                          sources=tuple(p.name for p in sources), steps=tuple(steps),
                          notes=tuple(notes), match=dict(self.match), value=value)


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
