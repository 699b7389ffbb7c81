"""Layer conversions, registered by (source convention, target convention).

A conversion turns one matched layer pair into tensor plans for every parameter of the target
layer. Keys are ``"framework:op"`` strings with ``*`` for any framework, e.g.
``("keras:depthwise_conv2d", "torch:depthwise_conv2d")``; the most specific registration wins and
the generic label-driven conversion handles everything else. One small module per family.
"""
from __future__ import annotations

from .base import PASSES, LayerPair, PlanContext, convert, lookup, register, register_pass
from .base import GRAPH_PASSES, prepare_graphs, register_graph_pass
from .. import branches  # noqa: F401  (graph pass first: later passes see the branch order)
from .. import transformer_order  # noqa: F401  (graph pass: name-sorted transformers)
from . import generic, dense, depthwise  # noqa: F401  (modules register themselves)
from . import norm, fusion  # noqa: F401  (normalisation algebra, conv+BN pass)
from . import transformer  # noqa: F401  (Conv1D layouts, fused qkv, tied heads)
from . import recurrent, recurrent_stack, recurrent_embedding  # noqa: F401  (RNN gates)
from . import prelu, padding, separable  # noqa: F401  (PReLU, padding warnings, separable)
from . import adapt  # noqa: F401  (--adapt: position embeddings, stem channels; the last pass)

__all__ = ["PASSES", "LayerPair", "PlanContext", "convert", "lookup", "register",
           "register_pass", "GRAPH_PASSES", "prepare_graphs", "register_graph_pass"]
