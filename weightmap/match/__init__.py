"""The matching stage: which source layers (and parameters) feed which target ones.

``match(source, target, rules)`` runs, in order: explicit rules, names (normalised, exact, then
unique dotted suffixes), structure (sequence alignment between name anchors), then parameters
by role within each layer pair. Every pair records its strategy and evidence; everything left
over is reported with its reason. Framework-free: graphs come from any reader. See
docs/matching.md and docs/rules.md.
"""
from __future__ import annotations

from .engine import match
from .result import LayerMatch, Matching, ParamPair, Unmatched
from .rules import Expect, Ignore, Pair, Rename, Rules, load_rules

__all__ = ["match", "load_rules", "Rules", "Rename", "Ignore", "Pair", "Expect", "Matching",
           "LayerMatch", "ParamPair", "Unmatched"]
