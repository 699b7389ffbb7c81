"""Read a small YAML or TOML document (a rules file, a migration spec) into plain data.

YAML through PyYAML's ``safe_load`` (no tags, no Python objects), TOML through the standard
library's ``tomllib`` (``tomli``, its backport, on Python 3.10). A mistake is one UsageError
naming the file, with the parser's line and column.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError

SUFFIXES = (".yaml", ".yml", ".toml")


def load(path: str | Path, what: str) -> Any:
    """The data in ``path`` (``what`` names the kind of file in messages, e.g. "rules file")."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such {what}", path=path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{what} suffix {suffix or '(none)'!r} is not .yaml, .yml or .toml",
                         path=path)
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            return _toml().loads(text)
        import yaml
        return yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} is not UTF-8 text: {exc}", path=path) from exc
    except Exception as exc:  # the parsers' own errors carry line and column
        raise UsageError(f"cannot parse {what}: {' '.join(str(exc).split())}",
                         path=path) from exc


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    import tomli   # the backport, declared for Python 3.10 in pyproject.toml
    return tomli
