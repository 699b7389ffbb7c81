from weightmap.match.by_name import match_names
from weightmap.match.prepare import Signatures, prepare
from weightmap.match.rules import Rules


def run(src_graph, tgt_graph):
    sigs = Signatures()
    src = prepare(src_graph, "source", Rules(), sigs)
    tgt = prepare(tgt_graph, "target", Rules(), sigs)
    return match_names(src, tgt, sigs, set(range(len(src))), set(range(len(tgt))))


def test_exact_names_after_normalisation(mk):
    src = mk.torch_graph([("module.a.weight", (4, 4)), ("module.b.weight", (2, 4))])
    tgt = mk.torch_graph([("a.weight", (4, 4)), ("b.weight", (2, 4))])
    r = run(src, tgt)
    assert r.pairs == {0: (0, "name 'a' (stored 'module.a' / 'a')"),
                       1: (1, "name 'b' (stored 'module.b' / 'b')")}
    assert r.exact == {0, 1}


def test_unique_dotted_suffix(mk):
    src = mk.torch_graph([("encoder.layer1.0.conv1.weight", (8, 8, 3, 3))])
    tgt = mk.torch_graph([("layer1.0.conv1.weight", (8, 8, 3, 3))])
    r = run(src, tgt)
    assert r.pairs == {0: (0, "name suffix 'layer1.0.conv1'")} and r.exact == set()


def test_incompatible_name_pairs_are_conflicts(mk):
    src = mk.torch_graph([("fc.weight", (1000, 512)), ("head.cls.weight", (5, 4))])
    tgt = mk.torch_graph([("fc.weight", (10, 512)), ("cls.weight", (6, 4))])
    r = run(src, tgt)
    assert r.pairs == {} and r.conflicts == {0: 0, 1: 1}


def test_a_suffix_fitting_several_layers_is_ambiguous(mk):
    src = mk.torch_graph([("backbone.res5.conv.weight", (8, 8, 3, 3)),
                          ("head.res5.conv.weight", (8, 8, 3, 3))])
    tgt = mk.torch_graph([("res5.conv.weight", (8, 8, 3, 3))])
    r = run(src, tgt)
    assert r.pairs == {} and r.ambiguous_t == {0: (0, 1)}


def test_a_contested_source_is_ambiguous_from_its_side(mk):
    src = mk.torch_graph([("res5.conv.weight", (8, 8, 3, 3))])
    tgt = mk.torch_graph([("backbone.res5.conv.weight", (8, 8, 3, 3)),
                          ("head.res5.conv.weight", (8, 8, 3, 3))])
    r = run(src, tgt)
    assert r.pairs == {} and r.ambiguous_s == {0: (0, 1)} and r.ambiguous_t == {}


def test_bare_indices_are_not_suffixes(mk):
    src = mk.torch_graph([("features.0.weight", (8, 3, 3, 3))])
    tgt = mk.torch_graph([("0.weight", (8, 3, 3, 3))])
    assert run(src, tgt).pairs == {}
