"""Layer conversions, registered by (source convention, target convention).

A conversion turns one matched layer pair into tensor plans for every parameter of the target
layer. Keys are ``"framework:op"`` strings with ``*`` for any framework, e.g.
``("keras:depthwise_conv2d", "torch:depthwise_conv2d")``; the most specific registration wins and
the generic label-driven conversion handles everything else. One small module per family.
"""
from __future__ import annotations

from .base import PASSES, LayerPair, PlanContext, convert, lookup, register, register_pass
from . import generic, dense, depthwise  # noqa: F401  (modules register themselves)

__all__ = ["PASSES", "LayerPair", "PlanContext", "convert", "lookup", "register",
           "register_pass"]
