"""Explicit matching rules, from a YAML or TOML file (format: docs/rules.md).

``rename`` rewrites source layer names before name matching, ``ignore`` keeps layers or
parameters out of matching, ``pair`` forces a target layer/parameter to take a given source, and
``expect`` states how many layers must match. Every mistake in a file is a UsageError naming the
file and the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..io import documents
from ..errors import UsageError

_TOP_KEYS = ("rename", "ignore", "pair", "expect")
_SIDES = ("source", "target")


def glob_regex(glob: str) -> str:
    """A glob as an anchored regex; each ``*`` (any run, dots included) and ``?`` (one character)
    becomes a capturing group, so a rename can reuse what it matched."""
    out = []
    for ch in glob:
        out.append("(.*?)" if ch == "*" else "(.)" if ch == "?" else re.escape(ch))
    return "^" + "".join(out) + "$"


@dataclass(frozen=True)
class Rename:
    """``pattern`` is a regex searched in the name (``re.sub``), or with ``glob`` an anchored
    glob whose ``*``/``?`` in ``replace`` take what the pattern's wildcards matched, in order."""

    pattern: str
    replace: str
    glob: bool = False
    key: str = ""

    def apply(self, name: str) -> str:
        if not self.glob:
            return re.sub(self.pattern, self.replace, name)
        m = re.match(glob_regex(self.pattern), name)
        if m is None:
            return name
        captured = iter(m.groups())
        return re.sub(r"[*?]", lambda _: next(captured), self.replace)


@dataclass(frozen=True)
class Ignore:
    """A glob (anchored; ``*`` crosses dots) or, prefixed ``re:``, a regex searched in the name."""

    pattern: str
    side: str                                  # "source" | "target"
    key: str = ""

    def matches(self, name: str) -> bool:
        if self.pattern.startswith("re:"):
            return re.search(self.pattern[3:], name) is not None
        return re.match(glob_regex(self.pattern), name) is not None


@dataclass(frozen=True)
class Pair:
    """Force ``target`` (a layer or a parameter) to take ``sources``: one layer, several layers
    (stacked on the out axis into a fused target), or parameters. A rule naming a list of
    targets for one source gives one Pair per target, each with ``parts`` (all the targets, in
    order): the source is split on its out axis among them."""

    target: str
    sources: tuple[str, ...]
    key: str = ""
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expect:
    matched: int | None = None                 # exactly this many layer matches
    min_matched: int | None = None             # at least this many


@dataclass(frozen=True)
class Rules:
    rename: tuple[Rename, ...] = ()
    ignore: tuple[Ignore, ...] = ()
    pair: tuple[Pair, ...] = ()
    expect: Expect = Expect()
    origin: str = "<rules>"

    def ignores(self, side: str) -> tuple[Ignore, ...]:
        return tuple(rule for rule in self.ignore if rule.side == side)

    def renamed(self, name: str) -> str:
        for rule in self.rename:
            name = rule.apply(name)
        return name

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<rules>") -> "Rules":
        if data is None:
            return cls(origin=origin)
        _need(isinstance(data, Mapping), origin, "<top>", "a table/mapping", data)
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise UsageError(f"unknown rules key {unknown[0]!r}", path=origin,
                             hint=f"keys are {', '.join(_TOP_KEYS)}")
        return cls(rename=_renames(data.get("rename"), origin),
                   ignore=_ignores(data.get("ignore"), origin),
                   pair=_pairs(data.get("pair"), origin),
                   expect=_expect(data.get("expect"), origin), origin=origin)


def load_rules(path: str | Path) -> Rules:
    """Read a rules file: ``.yaml``/``.yml`` (PyYAML) or ``.toml`` (tomllib)."""
    return Rules.from_dict(documents.load(path, "rules file"), str(path))


def _need(ok: bool, origin: str, key: str, expected: str, found: Any) -> None:
    if not ok:
        raise UsageError(f"rules key {key!r}: expected {expected}, found "
                         f"{type(found).__name__} {found!r}", path=origin)


def _string(value: Any, origin: str, key: str) -> str:
    _need(isinstance(value, str) and value != "", origin, key, "a non-empty string", value)
    return value


def _items(value: Any, origin: str, key: str) -> list:
    if value is None:
        return []
    _need(isinstance(value, list), origin, key, "a list", value)
    return value


def _fields(entry: Any, origin: str, key: str, allowed: tuple[str, ...]) -> Mapping:
    _need(isinstance(entry, Mapping), origin, key, "a table/mapping", entry)
    extra = [k for k in entry if k not in allowed]
    if extra:
        raise UsageError(f"rules key {key + '.' + str(extra[0])!r} is not known", path=origin,
                         hint=f"{key} takes {', '.join(allowed)}")
    return entry


def _renames(value: Any, origin: str) -> tuple[Rename, ...]:
    out = []
    for i, entry in enumerate(_items(value, origin, "rename")):
        key = f"rename[{i}]"
        entry = _fields(entry, origin, key, ("pattern", "glob", "replace"))
        if ("pattern" in entry) == ("glob" in entry):
            raise UsageError(f"rules key {key!r}: give exactly one of 'pattern' (regex) or "
                             f"'glob'", path=origin)
        replace = entry.get("replace")
        _need(isinstance(replace, str), origin, f"{key}.replace", "a string", replace)
        if "glob" in entry:
            glob = _string(entry["glob"], origin, f"{key}.glob")
            wild = sum(ch in "*?" for ch in glob)
            if sum(ch in "*?" for ch in replace) > wild:
                raise UsageError(f"rules key {key + '.replace'!r}: {replace!r} uses more "
                                 f"wildcards than the glob {glob!r} captures", path=origin)
            out.append(Rename(glob, replace, glob=True, key=key))
        else:
            pattern = _regex(entry["pattern"], origin, f"{key}.pattern")
            _check_template(pattern, replace, origin, f"{key}.replace")
            out.append(Rename(pattern, replace, key=key))
    return tuple(out)


def _check_template(pattern: str, replace: str, origin: str, key: str) -> None:
    """Refuse a replacement that refers to a group the pattern does not have, now rather than
    at the first name it happens to match."""
    compiled = re.compile(pattern)
    names = {index: name for name, index in compiled.groupindex.items()}
    dummy = "".join(f"(?P<{names[i]}>)" if i in names else "()"
                    for i in range(1, compiled.groups + 1))
    try:
        re.match(dummy, "").expand(replace)
    except (re.error, IndexError) as exc:
        raise UsageError(f"rules key {key!r}: bad replacement {replace!r}: {exc}",
                         path=origin) from exc


def _regex(value: Any, origin: str, key: str) -> str:
    text = _string(value, origin, key)
    try:
        re.compile(text)
    except re.error as exc:
        raise UsageError(f"rules key {key!r}: bad regular expression {text!r}: {exc}",
                         path=origin) from exc
    return text


def _ignores(value: Any, origin: str) -> tuple[Ignore, ...]:
    if value is None:
        return ()
    if isinstance(value, list):        # a bare list applies to both sides
        by_side = {side: (value, "ignore") for side in _SIDES}
    else:
        entry = _fields(value, origin, "ignore", _SIDES)
        by_side = {side: (entry.get(side), f"ignore.{side}") for side in _SIDES}
    out = []
    for side, (patterns, key) in by_side.items():
        for i, pattern in enumerate(_items(patterns, origin, key)):
            text = _string(pattern, origin, f"{key}[{i}]")
            if text.startswith("re:"):
                _regex(text[3:], origin, f"{key}[{i}]")
            out.append(Ignore(text, side, key=f"{key}[{i}]"))
    return tuple(out)


def _pairs(value: Any, origin: str) -> tuple[Pair, ...]:
    out = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(_items(value, origin, "pair")):
        key = f"pair[{i}]"
        entry = _fields(entry, origin, key, ("target", "source"))
        target = entry.get("target")
        targets = [target] if isinstance(target, str) else target
        _need(isinstance(targets, list) and bool(targets), origin, f"{key}.target",
              "a name or a non-empty list of names", target)
        targets = [_string(t, origin, f"{key}.target" if isinstance(target, str)
                           else f"{key}.target[{k}]") for k, t in enumerate(targets)]
        source = entry.get("source")
        sources = [source] if isinstance(source, str) else source
        _need(isinstance(sources, list) and bool(sources), origin, f"{key}.source",
              "a name or a non-empty list of names", source)
        names = tuple(_string(s, origin, f"{key}.source[{k}]") for k, s in enumerate(sources))
        if len(targets) > 1 and len(names) != 1:
            raise UsageError(f"rules key {key!r}: a list of targets takes one source (split "
                             f"among them), found {len(names)} source names", path=origin)
        for name in targets:
            if name in seen:
                raise UsageError(f"rules key {key + '.target'!r}: {name!r} is already paired "
                                 f"by {seen[name]}", path=origin)
            seen[name] = key
            out.append(Pair(name, names, key=key,
                            parts=tuple(targets) if len(targets) > 1 else ()))
    return tuple(out)


def _expect(value: Any, origin: str) -> Expect:
    if value is None:
        return Expect()
    entry = _fields(value, origin, "expect", ("matched", "min_matched"))
    counts = {}
    for name in ("matched", "min_matched"):
        v = entry.get(name)
        if v is not None:
            _need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, origin,
                  f"expect.{name}", "a whole number >= 0", v)
        counts[name] = v
    return Expect(**counts)
