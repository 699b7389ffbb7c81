"""weightmap: move trained weights from one model into a different one, across frameworks.

The core imports numpy and the light format libraries only; torch, TensorFlow and Keras are
imported inside their adapters, when a live model or a framework file format needs them.
"""
from __future__ import annotations

from typing import Any

from .errors import WeightmapError
from .graph import Layer, Param, ParamGraph

__version__ = "0.1.0"
__all__ = ["read", "inspect", "plan", "port", "load_partial", "convert", "migrate", "Layer",
           "Param", "ParamGraph", "WeightmapError", "__version__"]


def read(source: Any, **options: Any) -> ParamGraph:
    """Read a checkpoint path, ``model.py[:NAME]`` or live model into a ParamGraph (specs only)."""
    from .sources import read as _read
    return _read(source, **options)


def inspect(source: Any, **options: Any) -> dict[str, Any]:
    """The description ``weightmap inspect --json`` prints: format, totals, layers; no tensor data."""
    return read(source, **options).describe()


def plan(source: Any, target: Any, **options: Any):
    """Match source to target and return the checked Plan (writes nothing)."""
    from .api import plan as _plan
    return _plan(source, target, **options)


def port(source: Any, target: Any, out: Any = None, **options: Any):
    """Port source weights into target, write them in the target's format, return the report."""
    from .api import port as _port
    return _port(source, target, out, **options)


def load_partial(model: Any, checkpoint: Any, **options: Any):
    """Load what fits of ``checkpoint`` into the live torch/Keras ``model`` in place."""
    from .api import load_partial as _load_partial
    return _load_partial(model, checkpoint, **options)


def convert(source: Any, out: Any, **options: Any):
    """Rewrite one checkpoint (same architecture) into ``out``: renames, prefixes stripped,
    tensors kept or dropped, dtype casts; returns the report (see ``weightmap.surgery``)."""
    from .surgery import convert as _convert
    return _convert(source, out, **options)


def migrate(spec: Any, **options: Any):
    """Run every job of a migration spec (file or dict) and return the summary (see
    ``weightmap.migration``); one job's failure does not stop the others."""
    from .migration import migrate as _migrate
    return _migrate(spec, **options)
