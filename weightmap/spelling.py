"""How a message names an option: in the words of whoever is calling.

One option has three spellings: the Python keyword (``source_model="m.py"``), the command
line's (``--source-model=m.py``) and a migration spec's key (``source_model: m.py``). A
message telling a user what to pass must use the one they can type. Errors are raised deep in
the library, which does not know who called it; the caller says it once, on entry: the
command line (``cli.main``) and a migration's job runner set the spelling for what they run,
and everything else speaks Python.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

PYTHON, CLI, SPEC = "python", "cli", "spec"
# command-line options whose value is optional: written --verify=warn (with a space the value
# could be taken for the next argument)
OPTIONAL_VALUE = frozenset({"verify"})
# options the command line spells otherwise than by their keyword
CLI_NAMES = {"direct_io": "--no-direct-io", "target": "--to", "verify_tol": "--tol"}
_SPELLING: contextvars.ContextVar[str] = contextvars.ContextVar("weightmap_spelling",
                                                                default=PYTHON)


def current() -> str:
    return _SPELLING.get()


@contextlib.contextmanager
def spelled(how: str) -> Iterator[None]:
    """Messages raised inside name options the ``how`` way (``CLI``, ``SPEC``, ``PYTHON``)."""
    token = _SPELLING.set(how)
    try:
        yield
    finally:
        _SPELLING.reset(token)


def option(name: str, value: Any = None) -> str:
    """The option ``name`` (its Python keyword) with ``value`` (a placeholder like ``KEY``, a
    string, True), as the caller writes it: ``container=KEY`` / ``--container=KEY`` /
    ``container: KEY``; a flag (``value`` True) ``opaque_globals=True`` / ``--opaque-globals``
    / ``opaque_globals: true``; without ``value`` the name alone (``out`` / ``--out``)."""
    how = _SPELLING.get()
    if how == CLI:
        flag = CLI_NAMES.get(name, "--" + name.replace("_", "-"))
        if value is True or value is None:
            return flag
        return f"{flag}={value}" if name in OPTIONAL_VALUE else f"{flag} {value}"
    if value is None:
        return name
    if how == SPEC:
        return f"{name}: {str(value).lower() if isinstance(value, bool) else value}"
    placeholder = isinstance(value, str) and value[:1].isupper()     # KEY, FILE.py[:NAME]
    return f"{name}={value!r}" if isinstance(value, str) and not placeholder \
        else f"{name}={value}"


def choose(python: str, cli: str, spec: str | None = None) -> str:
    """One of three texts, by the caller's spelling, where one value is written differently
    (``conv1d_layout={"source": "in,out"}`` against ``--conv1d-layout source=in,out``)."""
    how = _SPELLING.get()
    return cli if how == CLI else (spec or python) if how == SPEC else python


def limit(name: str) -> str:
    """How to raise the reader cap ``name``: ``--limit NAME=N`` on the command line (a spec
    has no key for it: its file is converted alone first), ``NAME=N`` as a Python keyword."""
    return f"{name}=N" if _SPELLING.get() == PYTHON else f"--limit {name}=N"
