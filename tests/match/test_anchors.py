from weightmap.match.anchors import TRUSTED_ORDERS, chain, crossed, crossing


def test_chain_is_the_longest_order_consistent_subsequence():
    pairs = [(0, 0), (1, 3), (2, 1), (3, 2), (4, 4)]
    assert chain(pairs) == [(0, 0), (2, 1), (3, 2), (4, 4)]
    assert chain([]) == []
    assert chain([(5, 5)]) == [(5, 5)]


def test_crossed_finds_anchors_on_the_other_side_of_a_pair():
    anchors = [(0, 0), (2, 2), (4, 4), (6, 6)]
    assert crossed((5, 1), anchors) == [(2, 2), (4, 4)]
    assert crossed((1, 5), anchors) == [(2, 2), (4, 4)]
    assert crossed((3, 3), anchors) == []


def test_crossing_conflicts_only_with_trusted_order_and_interchangeable_pairs():
    anchors = [(0, 1)]
    names = [(0, 1), (1, 0)]
    always = lambda p, q: True           # noqa: E731
    never = lambda p, q: False           # noqa: E731
    assert crossing(names, anchors, True, always) == [((1, 0), (0, 1))]
    assert crossing(names, anchors, False, always) == []
    assert crossing(names, anchors, True, never) == []


def test_trusted_orders():
    assert TRUSTED_ORDERS == {"execution", "config"}
