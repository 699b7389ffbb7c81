"""Where adapters come from: a built-in table plus the ``weightmap.adapters`` entry-point group.

An adapter is an object with a ``name`` and any of these capabilities:

``sniff(path, head) -> str | None``
    The format name if the adapter reads this file (``head`` holds its first bytes), else None.
    Must be cheap: magic bytes, a file name, a header at most.
``read(path, fmt, **options) -> ParamGraph``
    Reads the file's specs (no tensor bytes) into a graph with lazy data handles.
``limits`` and ``read_options``
    The read options it takes: caps, ``{name: (default, what it caps)}``, and others,
    ``{name: what it does}`` (``weightmap.read`` refuses any keyword no adapter declares).
``accepts(obj) -> bool`` and ``read_live(obj, **options) -> ParamGraph``
    For live objects (a torch module, a Keras model, a dict of tensors). ``accepts`` must not
    import a framework: it looks at the object's type names.
``lazy_construction(path)``
    A context in which a model file builds its model without weights (torch: the meta
    device), or None.
``model_file_context(path)``
    A context entered around running any model file (Keras: TensorFlow's start-up logs stay
    off stderr).

``run_file(path, fmt, *, graph, weights=None) -> Runner`` and
``run_live(obj, *, graph, weights=None, example_input=None, owned=False[, rebuild]) -> Runner``
    Execute a model of this framework for verification (``weightmap.equivalence.runner`` has
    the Runner protocol): a file the adapter reads (a format that holds no architecture is a
    VerifyError saying so; nothing from a checkpoint is ever executed), or a live object it
    accepts; ``weights`` (a file, or a graph's tensors) loaded into it first. A model built
    lazily (``lazy_construction``) comes with ``rebuild=``, building it normally.

Importing an adapter module must not import its framework; the framework is imported inside the
functions that need it. Two adapters under one name is an error, not a silent override.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable

from .errors import AdapterRegistryError

ENTRY_POINT_GROUP = "weightmap.adapters"

# name -> "module:attribute"; these ship with weightmap (see adapters/ in the source tree).
BUILTIN = {
    "torch": "weightmap_torch:ADAPTER",
    "safetensors": "weightmap_safetensors:ADAPTER",
    "keras": "weightmap_keras:ADAPTER",
    "onnx": "weightmap_onnx:ADAPTER",
}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise AdapterRegistryError(f"adapter {ref!r} cannot be loaded: {exc}",
                                   hint="reinstall weightmap or the package providing it") from exc
    return obj


def build(builtin: dict[str, str], external: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The adapter table from both sources; a name registered twice is refused."""
    table: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, pairs in (("built-in", builtin.items()), ("entry point", external)):
        for name, ref in pairs:
            if name in table:
                raise AdapterRegistryError(
                    f"adapter {name!r} is registered twice ({origin[name]} and {source} {ref})",
                    hint="uninstall one of the packages that provide it")
            adapter = _load(ref)
            if getattr(adapter, "name", None) != name:
                raise AdapterRegistryError(
                    f"adapter registered as {name!r} calls itself {getattr(adapter, 'name', None)!r}")
            table[name] = adapter
            origin[name] = f"{source} {ref}"
    return table


def _entry_points() -> list[tuple[str, str]]:
    return [(ep.name, ep.value) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


@lru_cache(maxsize=1)
def adapters() -> dict[str, Any]:
    """All registered adapters by name (loaded once)."""
    return build(BUILTIN, _entry_points())


def get(name: str) -> Any:
    table = adapters()
    if name not in table:
        raise AdapterRegistryError(f"no adapter named {name!r}; known: {', '.join(sorted(table))}")
    return table[name]
