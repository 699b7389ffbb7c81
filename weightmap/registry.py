"""Where adapters come from: a built-in table plus the ``weightmap.adapters`` entry-point group.

An adapter is an object with a ``name`` and any of these capabilities:

``convention``
    The ``weightmap.convention.Convention`` of the graphs it reads (``ParamGraph.framework``
    names it): every layout, gate order, default and attribute name of its framework that
    the core needs. An adapter whose graphs follow another's convention (safetensors: torch's
    names) declares none.
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

from .convention import NEUTRAL, Convention
from .errors import AdapterRegistryError

ENTRY_POINT_GROUP = "weightmap.adapters"

# name -> "module:attribute"; these ship with weightmap (see adapters/ in the source tree).
# The only place in weightmap/ that names the frameworks: everything else asks the adapters
# (their conventions, output kinds, readers, writers, runners) through this registry.
BUILTIN = {
    "safetensors": "weightmap_safetensors:ADAPTER",
    "torch": "weightmap_torch:ADAPTER",
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


@lru_cache(maxsize=1)
def conventions() -> dict[str, Convention]:
    """The conventions the adapters declare, by name (registration order); one name declared
    by two adapters is an error."""
    table: dict[str, Convention] = {}
    owner: dict[str, str] = {}
    for adapter in adapters().values():
        conv = getattr(adapter, "convention", None)
        if conv is None:
            continue
        if conv.name in table and table[conv.name] is not conv:
            raise AdapterRegistryError(f"convention {conv.name!r} is declared by the "
                                       f"{owner[conv.name]} and {adapter.name} adapters")
        table[conv.name], owner[conv.name] = conv, adapter.name
    return table


def convention(name: str) -> Convention:
    """The convention a graph's ``framework`` names (the neutral one for ``unknown``)."""
    if name == NEUTRAL.name:
        return NEUTRAL
    table = conventions()
    if name not in table:
        raise AdapterRegistryError(f"no adapter declares the convention {name!r}; known: "
                                   f"{', '.join(sorted(table))}",
                                   hint="install the adapter that reads its files")
    return table[name]


@lru_cache(maxsize=1)
def leaf_aliases() -> dict[str, str]:
    """Parameter leaf names -> the state-dict words (``kernel`` -> ``weight``), from every
    convention's ``leaf_aliases``, so that leaves compare across conventions; a leaf two
    conventions map to different words is an error."""
    table: dict[str, str] = {}
    for conv in conventions().values():
        for leaf, word in conv.leaf_aliases.items():
            if table.setdefault(leaf, word) != word:
                raise AdapterRegistryError(f"the leaf name {leaf!r} means {table[leaf]!r} in one "
                                           f"convention and {word!r} in {conv.name!r}")
    return table


def state_dict_convention() -> Convention:
    """The convention a bare state dict's names follow (``weight``, ``running_mean``,
    ``weight_ih_l0`` ...): the first that declares ``state_dicts``, else the neutral one."""
    return next((c for c in conventions().values() if c.state_dicts), NEUTRAL)


@lru_cache(maxsize=1)
def output_kinds() -> dict[str, tuple[Any, Any]]:
    """Every output kind the adapters declare (``outputs``), by name: (kind, adapter). A kind
    declared twice is an error."""
    table: dict[str, tuple[Any, Any]] = {}
    for adapter in adapters().values():
        for kind in getattr(adapter, "outputs", ()):
            if kind.name in table:
                raise AdapterRegistryError(f"output kind {kind.name!r} is declared by the "
                                           f"{table[kind.name][1].name} and {adapter.name} "
                                           f"adapters")
            table[kind.name] = (kind, adapter)
    return table
