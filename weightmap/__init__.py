"""weightmap: move trained weights from one model into a different one, across frameworks.

The core imports numpy and the light format libraries only; torch, TensorFlow and Keras are
imported inside their adapters, when a live model or a framework file format needs them.
"""
from __future__ import annotations

from typing import Any

from .errors import WeightmapError
from .graph import Layer, Param, ParamGraph

__version__ = "0.1.0"
__all__ = ["read", "inspect", "plan", "port", "verify", "load_partial", "Layer", "Param",
           "ParamGraph", "WeightmapError", "__version__"]


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


def verify(source: Any, target: Any, weights: Any, **options: Any):
    """Run ``source`` and ``target`` (with the ported ``weights``) on one probe, compare their
    outputs and paired layers; returns a VerifyResult (``.passed``, ``.summary()``,
    ``.to_dict()``). See docs/verify.md."""
    from .equivalence import verify as _verify
    return _verify(source, target, weights, **options)
