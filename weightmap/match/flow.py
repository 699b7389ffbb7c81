"""Names against data flow: two same-shaped layers whose names pair them the other way round
than the order in which, in both models, one feeds the other.

Readers that trace a model (a Keras config, an ONNX graph, a traced torch forward) say which
layer feeds which (``attrs["fed_by"]``). When both graphs know it and a name pairing maps a
layer that feeds another onto one that is fed by it, the names cannot both be right: the port
would compute something else. Position in that order is then the evidence: the layers pair
by it, and a ``check:`` line says so. Layers on parallel branches, where neither feeds the
other, stay as the other rules leave them (ambiguous: nothing decides).
"""
from __future__ import annotations

from ..dataflow import feeds
from .prepare import Side

Pair = tuple[int, int]     # (source index, target index)


def flow_reversed(src: Side, tgt: Side, p: Pair, q: Pair) -> bool:
    """The pairs ``p`` and ``q`` map a layer that feeds the other onto one fed by it, in
    graphs that both trace their data flow."""
    (s1, t1), (s2, t2) = p, q
    sl, tl = src.graph.layers, tgt.graph.layers
    return (feeds(sl, sl[s2].name, sl[s1].name) and feeds(tl, tl[t1].name, tl[t2].name)) or \
        (feeds(sl, sl[s1].name, sl[s2].name) and feeds(tl, tl[t2].name, tl[t1].name))


def order_wins(src: Side, tgt: Side, p: Pair, q: Pair) -> str:
    """The check: line of name pairs ``p`` and ``q`` overruled by the data flow: the layers
    pair crosswise, by position."""
    (s1, t1), (s2, t2) = sorted([p, q], key=lambda pair: pair[1])
    return (f"{tgt.label(t1)} <- {src.label(s2)}, {tgt.label(t2)} <- {src.label(s1)}: paired "
            f"by the order both models run them in (one feeds the other), against their names "
            f"({tgt.label(t1)} <- {src.label(s1)}, {tgt.label(t2)} <- {src.label(s2)}: same "
            f"shapes, names that contradict the data flow); pair them with a rule if the names "
            f"are right")
