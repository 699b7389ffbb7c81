"""What a port must carry over, checked on the plan before anything is written.

* always: something — a port in which no target tensor takes a value from the source fails;
* ``min_coverage=F``: at least the share F (0..1) of the target's elements carried over
  (transferred, transformed, synthetic, partial or adapted, as the manifest's
  ``element_coverage``);
* ``strict``: every target tensor carried over or ignored by a rule, and every source tensor
  used or ignored by a rule.

Each failure is a ``CoverageError`` (exit code 11) listing what is missing: the first few names
with their shapes, and how many in all.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import CoverageError, UsageError
from .plans import FROM_SOURCE, Plan
from .spelling import option

SHOWN = 5


def check_min_coverage(value: Any) -> float | None:
    """``min_coverage`` as a share in [0, 1] (the command line gives text)."""
    if value is None:
        return None
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise UsageError(f"{option('min_coverage')} is {value!r}; it is a share of the "
                         "target's elements between 0 and 1",
                         hint=f"e.g. {option('min_coverage', 0.95)}")
    return share


def check(plan: Plan, *, min_coverage: float | None = None, strict: bool = False) -> None:
    """Raise CoverageError when ``plan`` carries over less than it must (see the module)."""
    min_coverage = check_min_coverage(min_coverage)
    new = [t for t in plan.tensors if t.status == "new"]
    if plan.tensors and not any(t.status in FROM_SOURCE for t in plan.tensors):
        raise CoverageError(
            f"nothing carried over: none of the target's {len(plan.tensors)} tensors takes a "
            f"value from the source ({len(plan.unused)} source tensors unused); left new: "
            f"{_listed(new)}", hint=f"is it the right target? {option('dry_run', True)} shows "
                                    f"why each stays new; pair layers with {option('rules')}")
    if min_coverage is not None:
        elements = sum(math.prod(t.shape) for t in plan.tensors)
        carried = sum(math.prod(t.shape) for t in plan.tensors if t.status != "new")
        share = carried / elements if elements else 1.0
        if share < min_coverage:
            biggest = sorted(new, key=lambda t: -math.prod(t.shape))
            raise CoverageError(
                f"{100 * share:.2f}% of the target's elements carried over, below "
                f"{option('min_coverage', format(min_coverage, 'g'))}; left new (largest "
                f"first): {_listed(biggest)}", hint=f"pair the missing layers with "
                f"{option('rules')}, or lower {option('min_coverage')}")
    if strict:
        left = [t for t in new if not t.ignored and not t.not_weight]
        unused = [u for u in plan.unused if u.get("kind") != "ignored"]
        if left or unused:
            parts = ([f"{len(left)} target tensor(s) neither carried over nor ignored by a "
                      f"rule: {_listed(left)}"] if left else []) + \
                ([f"{len(unused)} source tensor(s) neither used nor ignored by a rule: "
                  f"{_listed_unused(unused)}"] if unused else [])
            raise CoverageError(f"{option('strict')}: " + "; ".join(parts),
                                hint=f"pair them, or ignore them, with {option('rules')}")


def _listed(tensors: list[Any]) -> str:
    return _first(f"{t.target} {tuple(t.shape)}" for t in tensors) if tensors else "none"


def _listed_unused(unused: list[Any]) -> str:
    return _first(f"{u['name']} {tuple(u['shape'])}" if "shape" in u else u["name"]
                  for u in unused)


def _first(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:SHOWN])
    return shown + (f" ... ({len(names)} in all)" if len(names) > SHOWN else "")
