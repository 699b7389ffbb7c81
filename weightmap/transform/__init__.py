"""Pure numpy tensor transforms with declared shape contracts.

A transform is registered under a name with two functions: ``shape(in_shapes, **args)`` gives the
output shape (or raises PlanError when the contract does not hold) and ``apply(arrays, **args)``
computes it. Plans refer to transforms by name and JSON arguments, so a plan can be saved, edited
and checked (every shape contract is evaluated before a byte is written).
"""
from __future__ import annotations

from .steps import STEPS, Step, apply_steps, check_steps, register
from . import normalisation  # noqa: F401  (registers the BatchNorm algebra steps)
from . import gates  # noqa: F401  (registers the recurrent gate/direction steps)
from . import precision  # noqa: F401  (registers the cast step and its census)
from . import adapt  # noqa: F401  (registers the --adapt steps: grid resampling, input channels)

__all__ = ["STEPS", "Step", "apply_steps", "check_steps", "register"]
