"""One exception tree for everything weightmap refuses.

Every message says what was expected, what was found, where (file, tensor name) and what to do.
The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``.
"""
from __future__ import annotations

import unicodedata


def printable(text: object) -> str:
    """``text`` safe to print on a terminal, as one line: control characters (ESC, CR, LF ...),
    format characters (bidirectional overrides ...) and lone surrogates are written as
    ``\\x1b``, ``\\u202e``, ``\\ud800``. Names come from files: printed raw, they can rewrite
    the terminal or fail to encode."""
    text = str(text)
    if text.isprintable() and text.isascii():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    if unicodedata.category(c) == "Zs":
        return c                            # spaces of other scripts print as spaces
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


class WeightmapError(Exception):
    """Base of every error weightmap raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path: object = None, tensor: str | None = None,
                 hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.tensor = tensor
        self.hint = hint
        super().__init__(self._render())

    def located(self, path: object) -> "WeightmapError":
        """This error, naming ``path`` if it names no file yet (a reader's inner code often
        knows the problem but not the file): ``raise exc.located(path)``."""
        if self.path is not None:
            return self
        located = type(self)(self.message, path=path, tensor=self.tensor, hint=self.hint)
        located.__cause__ = self
        return located

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.tensor:
            where.append(f"tensor {self.tensor!r}")
        text = (": ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return printable(" ".join(text.split()))  # always one line, safe for a terminal


class UsageError(WeightmapError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class FormatError(WeightmapError):
    """A file is not in a format weightmap reads, or is truncated or corrupt."""

    exit_code = 3


class UnknownFormatError(FormatError):
    """No adapter recognises the file."""


class UnsafeInputError(FormatError):
    """A file asks for something weightmap never does: run code, read outside its folder."""

    exit_code = 4


class MissingDependencyError(WeightmapError):
    """An optional framework is needed for this operation but not installed."""

    exit_code = 5


class AdapterRegistryError(WeightmapError):
    """The adapter registry is inconsistent (e.g. two adapters under one name)."""


class MatchError(WeightmapError):
    """Source and target cannot be matched as required (strict checks, expected counts)."""

    exit_code = 6


class ConversionError(WeightmapError):
    """A tensor cannot be converted exactly between two conventions."""

    exit_code = 7


class UndecidableError(ConversionError):
    """A conversion needs a fact neither graph gives (whether a dense layer reads a flattened
    feature map, and of which shape): a guess could port it wrong without a sign, leaving the
    layer new would hide it, so the port stops and says what would tell."""


class PlanError(WeightmapError):
    """A plan is invalid: a shape contract does not hold, a referenced tensor is missing."""

    exit_code = 8


class OutputError(WeightmapError):
    """The output cannot be written: no space left, no permission, an I/O error."""

    exit_code = 9


class VerifyError(WeightmapError):
    """A ported model does not compute what its source computed (or could not be checked when
    a check was required): ``port --verify`` leaves no output."""

    exit_code = 10


class CoverageError(WeightmapError):
    """A port carries over less than it must: nothing at all, less than ``--min-coverage``, or
    a tensor left out under ``--strict``."""

    exit_code = 11


class MigrationError(WeightmapError):
    """One or more jobs of a migration failed (the others ran; the summary lists each)."""

    exit_code = 12
