"""Read options: the caps readers declare (``limits``) and their other options, checked where a
user gives them (``weightmap.read(..., max_header_bytes=...)``, ``--limit NAME=VALUE``)."""
from __future__ import annotations

from typing import Any

from .. import registry
from ..errors import AdapterRegistryError, UsageError
from .modelfile import split_pyref
from .read import read


def reader_limits() -> dict[str, tuple[int, str]]:
    """The caps readers take as read options (``read(path, max_header_bytes=...)``), gathered
    from the adapters' ``limits``: name -> (default, what it caps). A name two adapters
    declare is an error, like a name two adapters register."""
    table: dict[str, tuple[int, str]] = {}
    owner: dict[str, str] = {}
    for adapter in registry.adapters().values():
        for name, spec in getattr(adapter, "limits", {}).items():
            if name in table:
                raise AdapterRegistryError(f"reader limit {name!r} is declared by the "
                                           f"{owner[name]} and {adapter.name} adapters")
            table[name], owner[name] = spec, adapter.name
    return table


def reader_options() -> dict[str, str]:
    """The read options other than caps the adapters declare (``read_options``): name ->
    what it does (``container=``, ``config=`` ...)."""
    out: dict[str, str] = {}
    for adapter in registry.adapters().values():
        out.update(getattr(adapter, "read_options", {}))
    return out


def check_read_options(call: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Read options given as keywords to ``call`` (``weightmap.read(path, container=...,
    max_header_bytes=...)``): a name no adapter declares is a UsageError naming the valid
    keywords; a cap that is not a positive integer one naming the cap."""
    from ..options import check_keywords
    if not options:
        return {}
    limits = reader_limits()
    check_keywords(call, options, allowed=[*reader_options(), *limits])
    caps = parse_limits([f"{k}={v}" for k, v in options.items() if k in limits])
    return {**{k: v for k, v in options.items() if k not in limits}, **caps}


def parse_limits(items: Any) -> dict[str, int]:
    """``["max_header_bytes=1000000", ...]`` (the CLI's ``--limit NAME=VALUE``) -> read options.
    A name no reader declares, or a value that is not a positive integer, is a UsageError
    listing the valid names."""
    if not items:
        return {}
    known = reader_limits()
    valid = ", ".join(f"{name} (default {default})" for name, (default, _) in
                      sorted(known.items()))
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if name not in known:
            raise UsageError(f"unknown reader limit {name!r}" if sep else
                             f"a limit is written NAME=VALUE, found {str(item)!r}",
                             hint=f"valid names: {valid}")
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if number <= 0:
            raise UsageError(f"reader limit {name} must be a positive integer, found "
                             f"{value.strip()!r}", hint=f"valid names: {valid}")
        out[name] = number
    return out


def read_checkpoint(source: str, limits: dict[str, int]) -> Any:
    """``source`` read with the reader ``limits`` when it is a checkpoint (a graph, which
    ``read`` and ``api.port`` take as it is); a model file or no limits: ``source`` unchanged
    (a model built by its own code has no file to cap)."""
    if not limits or split_pyref(source)[0] is not None:
        return source
    return read(source, **limits)
