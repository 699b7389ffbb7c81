"""The options of matching and planning, as one schema, and the check of every keyword a public
function is given.

``weightmap.port``, ``plan`` and ``load_partial`` take their own arguments (``out``,
``freeze``, ``force`` ...) as explicit keyword-only parameters. Every other keyword is a *plan
option*, declared once in ``PlanOptions`` below: its default, what it does, the check of its
value (which also reads the text the command line gives it) and its command-line spelling. A
keyword that is neither is a ``UsageError`` naming the valid ones, with the closest as a
suggestion — never silently dropped. The options that are set are recorded in the plan's
``options`` (and the manifest's ``policy.options``); graph passes and conversions read them from
the mapping they are given (``options.get("conv1d_layout")``).

Adding an option is one line in ``PlanOptions``::

    fuse_norms: Any = option((), "what it does, one sentence", check=check_fuse, metavar="WHAT")

which gives ``weightmap.port(..., fuse_norms=...)``, ``plan`` and ``load_partial`` the keyword,
and the command line ``--fuse-norms WHAT`` (repeatable; the check receives the list of texts),
as ``adapt`` below does. Document
it in docs/api.md and docs/cli.md: a test keeps both complete.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping

from .conversions.adapt import check_option as check_adapt
from .conversions.transformer_layout import check_option as check_conv1d_layout
from .errors import UsageError


def option(default: Any, doc: str, *, check: Callable[[Any], Any] | None = None,
           metavar: str | None = None) -> Any:
    """A ``PlanOptions`` field: ``check(value)`` returns the value to record (normalised) or
    raises UsageError; ``metavar`` names it on the command line (``None``: Python only)."""
    return field(default=default, metadata={"doc": doc, "check": check, "metavar": metavar})


@dataclass(frozen=True)
class PlanOptions:
    """Options of matching and planning, recorded in the plan."""

    conv1d_layout: Any = option(
        None, 'the stored layout of GPT-2-style Conv1D kernels in a state dict: "in,out" '
        '(Hugging Face Conv1D) or "out,in" (nn.Linear), for both sides, or per side as '
        '{"source": ..., "target": ...} (on the command line SIDE=LAYOUT); see '
        'docs/conversions/transformers.md', check=check_conv1d_layout, metavar="LAYOUT")
    adapt: Any = option(
        (), 'make target tensors of another size fit, as timm does: "pos_embed" (position '
        'embeddings resampled to the target\'s grid), "in_chans" (the stem kernel for another '
        'number of input channels); a name, a list, or several --adapt; status "adapted"; see '
        'docs/conversions/adapt.md', check=check_adapt, metavar="NAME")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            if check is not None and value is not None and value != f.default:
                object.__setattr__(self, f.name, check(value))

    def as_dict(self) -> dict[str, Any]:
        """The options that are set (differ from their default), as the plan records them."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    @classmethod
    def specs(cls) -> tuple[Any, ...]:
        """The schema: one dataclass field per option (``.name``, ``.default``,
        ``.metadata["doc"]``, ``["check"]``, ``["metavar"]``)."""
        return fields(cls)

    @classmethod
    def of_call(cls, call: Callable[..., Any], given: Mapping[str, Any]) -> "PlanOptions":
        """The plan options among the keywords ``call`` received in its ``**options``; any
        other keyword is a UsageError naming what ``call`` takes."""
        check_keywords(call, given, allowed={f.name for f in fields(cls)})
        return cls(**given)


def keywords(call: Callable[..., Any], extra: Iterable[str] = ()) -> list[str]:
    """The keywords ``call`` takes by name (its explicit parameters, ``self`` and the ``*``
    catch-alls left out), then ``extra``."""
    names = [p.name for p in inspect.signature(call).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names + [n for n in extra if n not in names]


def check_keywords(call: Callable[..., Any], given: Iterable[str],
                   allowed: Iterable[str] = ()) -> None:
    """UsageError for the first keyword in ``given`` that is not in ``allowed``: it names
    ``call``, suggests the closest valid keyword and lists them all."""
    allowed = set(allowed)
    unknown = [name for name in given if name not in allowed]
    if not unknown:
        return
    valid = keywords(call, sorted(allowed))
    name = unknown[0]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6) or _abbreviated(name, valid)
    more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
    raise UsageError(f"{call.__name__}() got an unknown keyword {name!r}{more}",
                     hint=(f"did you mean {close[0]!r}? " if close else "")
                     + f"valid keywords: {', '.join(valid)}")


def _abbreviated(name: str, valid: Iterable[str]) -> list[str]:
    """The valid keyword one of whose words abbreviates ``name`` (``tol`` for ``tolerance``,
    ``verify_tol`` for ``verify_tolerance``), which string similarity misses."""
    *head, last = name.split("_")
    for candidate in valid:
        *lead, tail = candidate.split("_")
        if len(tail) >= 3 and last.startswith(tail) and lead[len(lead) - len(head):] == head:
            return [candidate]
    return []


def check_flags(call: Callable[..., Any], **flags: Any) -> None:
    """``call``'s yes/no parameters are True or False (or None where that is their default):
    ``force="no"`` would otherwise count as yes."""
    defaults = inspect.signature(call).parameters
    for name, value in flags.items():
        if isinstance(value, bool) or (value is None and defaults[name].default is None):
            continue
        raise UsageError(f"{call.__name__}() takes {name}=True or False"
                         + (" (or None)" if defaults[name].default is None else "")
                         + f", not {value!r}")
