from weightmap.match import structure
from weightmap.match.prepare import Signatures, prepare
from weightmap.match.rules import Rules
from weightmap.match.structure import Context, align_segment


def context(src_graph, tgt_graph, ambiguous_t=None, ambiguous_s=None):
    sigs = Signatures()
    src = prepare(src_graph, "source", Rules(), sigs)
    tgt = prepare(tgt_graph, "target", Rules(), sigs)
    return Context(src, tgt, sigs, ambiguous_t or {}, ambiguous_s or {})


def conv(mk, name, cin, cout):
    return mk.keras_layer(name, "conv2d", kernel=(3, 3, cin, cout))


def test_same_shapes_pair_by_position_when_names_say_nothing(mk):
    src = mk.keras_graph([conv(mk, "alpha", 8, 8), conv(mk, "beta", 8, 8)])
    tgt = mk.torch_graph([("features.0.weight", (8, 8, 3, 3)), ("features.2.weight", (8, 8, 3, 3))])
    out = align_segment([0, 1], [0, 1], context(src, tgt))
    assert out.pairs == [(0, 0), (1, 1)] and out.ambiguous == []


def test_names_against_position_make_interchangeable_pairs_ambiguous(mk):
    src = mk.keras_graph([conv(mk, "left_conv", 8, 8), conv(mk, "right_conv", 8, 8)])
    tgt = mk.torch_graph([("right.conv.weight", (8, 8, 3, 3)), ("left.conv.weight", (8, 8, 3, 3))])
    out = align_segment([0, 1], [0, 1], context(src, tgt))
    assert out.pairs == []
    got = {(a.side, a.index): (a.candidates, a.reason) for a in out.ambiguous}
    assert got == {
        ("target", 0): ((0, 1), "ambiguous between left_conv (position) and right_conv (name)"),
        ("source", 0): ((0, 1), "ambiguous between right.conv (position) and left.conv (name)"),
        ("target", 1): ((1, 0), "ambiguous between right_conv (position) and left_conv (name)"),
        ("source", 1): ((1, 0), "ambiguous between left.conv (position) and right.conv (name)")}


def test_names_that_agree_with_position_are_kept(mk):
    src = mk.keras_graph([conv(mk, "left_conv", 8, 8), conv(mk, "right_conv", 8, 8)])
    tgt = mk.torch_graph([("left.conv.weight", (8, 8, 3, 3)), ("right.conv.weight", (8, 8, 3, 3))])
    assert align_segment([0, 1], [0, 1], context(src, tgt)).pairs == [(0, 0), (1, 1)]


def test_name_similarity_breaks_a_tie(mk):
    src = mk.keras_graph([conv(mk, "left_conv", 8, 8), conv(mk, "right_conv", 8, 8)])
    tgt = mk.torch_graph([("conv_right.weight", (8, 8, 3, 3))])
    assert align_segment([0, 1], [0], context(src, tgt)).pairs == [(1, 0)]
    plain = mk.torch_graph([("conv_x.weight", (8, 8, 3, 3))])
    assert align_segment([0, 1], [0], context(src, plain)).pairs == [(0, 0)]   # earliest


def test_a_suffix_candidate_is_kept_only_when_structure_strictly_prefers_it(mk):
    src = mk.torch_graph([("b.res5.conv.weight", (8, 4, 3, 3)),
                          ("h.res5.conv.weight", (8, 8, 3, 3))])
    tgt = mk.torch_graph([("res5.conv.weight", (8, 4, 3, 3))])
    out = align_segment([0, 1], [0], context(src, tgt, ambiguous_t={0: (0, 1)}))
    assert out.pairs == [(0, 0)]
    assert out.evidence[(0, 0)] == ["name suffix fits b.res5.conv, h.res5.conv; structure chose "
                                    "b.res5.conv"]
    same = mk.torch_graph([("b.res5.conv.weight", (8, 8, 3, 3)),
                           ("h.res5.conv.weight", (8, 8, 3, 3))])
    tgt8 = mk.torch_graph([("res5.conv.weight", (8, 8, 3, 3))])
    assert align_segment([0, 1], [0], context(same, tgt8, ambiguous_t={0: (0, 1)})).pairs == []


def test_a_suffix_ambiguous_layer_pairs_with_candidates_only(mk):
    src = mk.torch_graph([("x.weight", (8, 8, 3, 3)), ("h.res5.conv.weight", (8, 4, 3, 3))])
    tgt = mk.torch_graph([("res5.conv.weight", (8, 8, 3, 3))])
    # x has the target's shape but is no candidate: the target meets its candidate only
    # (a shape mismatch, reported as such later), never x
    assert align_segment([0, 1], [0], context(src, tgt, ambiguous_t={0: (1,)})).pairs == [(1, 0)]


def test_large_segments_are_cut_at_unique_signatures(mk, monkeypatch):
    monkeypatch.setattr(structure, "MAX_CELLS", 4)
    src = mk.keras_graph([conv(mk, "a", 3, 8), conv(mk, "b", 8, 8), conv(mk, "c", 8, 16),
                          conv(mk, "d", 16, 16)])
    tgt = mk.torch_graph([(f"f.{k}.weight", s) for k, s in enumerate(
        [(8, 3, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3)])])
    ctx = context(src, tgt)
    out = align_segment(range(4), range(4), ctx)
    assert out.pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert out.evidence[(0, 0)] == ["signature unique on both sides of a large segment"]
    assert ctx.notes[0].startswith("a segment of 4 x 4 layers was cut at 4 layers")


def test_without_unique_layers_a_large_segment_is_walked_greedily(mk, monkeypatch):
    monkeypatch.setattr(structure, "MAX_CELLS", 4)
    src = mk.keras_graph([conv(mk, f"s{k}", 8, 8) for k in range(3)])
    tgt = mk.torch_graph([("bn.weight", (8,)), ("bn.bias", (8,)), ("bn.running_mean", (8,)),
                          ("bn.running_var", (8,))] +
                         [(f"f.{k}.weight", (8, 8, 3, 3)) for k in range(3)] +
                         [("g.weight", (4, 4, 3, 3))])
    ctx = context(src, tgt)
    out = align_segment(range(3), range(5), ctx)
    assert out.pairs == [(0, 1), (1, 2), (2, 3)]          # the BN is skipped, order kept
    assert "aligned greedily" in ctx.notes[-1]


def test_same_shape_projections_pair_by_role_name_within_each_run(mk):
    """q, k, v, o of two blocks: the target computes v first and names them like Meta's code;
    the norms between blocks cut the runs, so block 0 never pairs with block 1."""
    src_spec, tgt_spec = [], []
    for i in range(2):
        src_spec += [(f"layers.{i}.norm.weight", (8,))]
        src_spec += [(f"layers.{i}.attn.{p}_proj.weight", (8, 8)) for p in "qkvo"]
        tgt_spec += [(f"blocks.{i}.attn_norm.weight", (8,))]
        tgt_spec += [(f"blocks.{i}.attn.w{p}.weight", (8, 8)) for p in "vkqo"]
    src, tgt = mk.torch_graph(src_spec), mk.torch_graph(tgt_spec)
    out = align_segment(list(range(10)), list(range(10)), context(src, tgt))
    names = {(src.layers[s].name, tgt.layers[t].name) for s, t in out.pairs}
    assert ("layers.1.attn.q_proj", "blocks.1.attn.wq") in names
    assert ("layers.0.attn.v_proj", "blocks.0.attn.wv") in names
    assert len(out.pairs) == 10 and len(out.by_role) == 8 and out.ambiguous == []
    (text,) = out.evidence[(3, 1)]
    assert text == ("paired by role name: v (layers.0.attn.v_proj ~ blocks.0.attn.wv); shape "
                    "and order cannot tell q, k, v, o apart (position gave layers.0.attn.q_proj)")


def test_a_run_with_an_unknown_role_is_left_to_position_and_names(mk):
    src = mk.torch_graph([("a.q_proj.weight", (8, 8)), ("a.mystery.weight", (8, 8))])
    tgt = mk.torch_graph([("b.wq.weight", (8, 8)), ("b.other.weight", (8, 8))])
    out = align_segment([0, 1], [0, 1], context(src, tgt))
    assert out.pairs == [(0, 0), (1, 1)] and not out.by_role
