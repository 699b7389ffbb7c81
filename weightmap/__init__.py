"""weightmap: move trained weights from one model into a different one, across frameworks.

The core imports numpy and the light format libraries only; torch, TensorFlow and Keras are
imported inside their adapters, when a live model or a framework file format needs them.
"""
from __future__ import annotations

from typing import Any

from .errors import WeightmapError
from .graph import Layer, Param, ParamGraph

__version__ = "0.1.0"
__all__ = ["read", "inspect", "plan", "port", "verify", "load_partial", "convert", "migrate",
           "Layer", "Param", "ParamGraph", "WeightmapError", "__version__"]
# The pipeline's entry points (weightmap/api.py; verify: weightmap/equivalence; convert:
# weightmap/surgery; migrate: weightmap/migration), imported when first used: their signatures
# and docstrings are the API's own (docs/api.md, docs/verify.md, docs/migrate.md).
_PIPELINE = {"plan": "api", "port": "api", "load_partial": "api", "verify": "equivalence",
             "convert": "surgery", "migrate": "migration"}


def read(source: Any, *, example_input: Any = None, **options: Any) -> ParamGraph:
    """Read a checkpoint path, ``model.py[:NAME]`` or live model into a ParamGraph (specs only;
    tensor data is read when asked). ``example_input``: for a live torch model, an input to
    trace its execution order with. ``**options``: the read options the adapters declare —
    ``container=``, ``opaque_globals=`` (torch), ``config=`` (Keras), ``shape_inference=``
    (ONNX) — and reader caps for a trusted file, e.g. ``max_header_bytes=67108864``
    (docs/api.md); any other keyword is a UsageError naming the valid ones."""
    from .reading.limits import check_read_options
    from .reading.read import read as _read
    options = check_read_options(read, options)
    if example_input is not None:
        options["example_input"] = example_input
    return _read(source, **options)


def inspect(source: Any, **options: Any) -> dict[str, Any]:
    """The description ``weightmap inspect --json`` prints: format, totals, layers; no tensor
    data. ``**options`` as for ``read``."""
    from .reading.limits import check_read_options
    from .reading.read import read as _read
    return _read(source, **check_read_options(inspect, options)).describe()


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        import importlib
        return getattr(importlib.import_module(f".{_PIPELINE[name]}", __name__), name)
    raise AttributeError(f"module 'weightmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PIPELINE})
