import pytest

from weightmap.graph import Layer, Param
from weightmap import registry
from weightmap.match.signature import (SCORE_CROSS, SCORE_EQUAL, SCORE_SHAPE, SCORE_WEAK,
                                       canonical_shape, compare, family, layer_signature,
                                       op_evidence)


def P(name, role, shape, fw="torch", op="conv2d", axes="auto"):
    if axes == "auto":
        axes = registry.convention(fw).axes(op, role, len(shape))
    return Param(name=name, role=role, shape=tuple(shape), dtype="float32", axes=axes)


def L(name, op, *params):
    return Layer(name=name, op=op, params=params)


def sig(layer):
    return layer_signature(layer)


def test_family_folds_depthwise_into_conv():
    assert family("depthwise_conv2d") == "conv2d"
    assert family("conv2d") == "conv2d"
    assert family("conv_transpose2d") == "conv_transpose2d"


@pytest.mark.parametrize("fw,op,shape,canon", [
    ("torch", "conv2d", (128, 64, 3, 3), (128, 64, 3, 3)),
    ("keras", "conv2d", (3, 3, 64, 128), (128, 64, 3, 3)),
    ("keras", "conv1d", (5, 16, 32), (32, 16, 5)),
    ("keras", "conv3d", (2, 3, 4, 8, 16), (16, 8, 2, 3, 4)),
    ("torch", "dense", (10, 512), (10, 512)),
    ("keras", "dense", (512, 10), (10, 512)),
    ("torch", "conv_transpose2d", (64, 32, 4, 4), (32, 64, 4, 4)),   # torch (in, out, k..)
    ("keras", "conv_transpose2d", (4, 4, 32, 64), (32, 64, 4, 4)),   # keras (k.., out, in)
    ("keras", "depthwise_conv2d", (3, 3, 8, 2), (16, 1, 3, 3)),      # (k.., c, m) -> (c·m, 1, k..)
    ("torch", "depthwise_conv2d", (16, 1, 3, 3), (16, 1, 3, 3)),
])
def test_canonical_shape_from_axis_labels(fw, op, shape, canon):
    role = "depthwise_kernel" if fw == "keras" and op.startswith("depthwise") else "kernel"
    assert canonical_shape(P("w", role, shape, fw, op)) == canon


def test_canonical_shape_unknown_without_labels():
    assert canonical_shape(P("w", "other", (3, 4), axes=None)) is None
    assert canonical_shape(P("w", "other", (3, 4), axes=("x", "y"))) is None


def test_keras_and_torch_conv_are_equal():
    k = L("block1_conv1", "conv2d", P("k", "kernel", (3, 3, 3, 64), "keras"),
          P("b", "bias", (64,), "keras"))
    t = L("features.0", "conv2d", P("w", "kernel", (64, 3, 3, 3)), P("b2", "bias", (64,)))
    c = compare(sig(k), sig(t))
    assert (c.kind, c.score, c.evidence) == ("equal", SCORE_EQUAL, ("shapes equal after layout",))
    assert c.matches


def test_square_dense_kernels_compare_by_labels_not_shape():
    k = L("d", "dense", P("k", "kernel", (8, 8), "keras", "dense"))
    t = L("d", "dense", P("w", "kernel", (8, 8), "torch", "dense"))
    assert compare(sig(k), sig(t)).kind == "equal"


def test_head_with_other_class_count_is_a_shape_mismatch():
    src = L("predictions", "dense", P("k", "kernel", (4096, 1000), "keras", "dense"),
            P("b", "bias", (1000,), "keras", "dense"))
    tgt = L("classifier.6", "dense", P("w", "kernel", (10, 4096), "torch", "dense"),
            P("b", "bias", (10,), "torch", "dense"))
    c = compare(sig(src), sig(tgt))
    assert (c.kind, c.score, c.matches) == ("shape", SCORE_SHAPE, False)
    assert c.reason() == "shape (10, 4096) vs (1000, 4096)"                 # kernel first
    assert c.reason(source_first=True) == "shape (1000, 4096) vs (10, 4096)"


def test_non_kernel_difference_names_its_role():
    a = L("bn", "batchnorm", P("g", "gamma", (32,), op="batchnorm"))
    b = L("bn", "batchnorm", P("g", "gamma", (64,), op="batchnorm"))
    assert compare(sig(a), sig(b)).reason() == "gamma shape (64,) vs (32,)"


def test_different_families_never_compare():
    conv = L("c", "conv2d", P("w", "kernel", (8, 8, 1, 1)))
    bn = L("b", "batchnorm", P("g", "gamma", (8,), op="batchnorm"))
    c = compare(sig(conv), sig(bn))
    assert (c.kind, c.score) == ("none", None)


def test_optional_roles_may_be_missing_on_one_side():
    with_bias = L("c", "conv2d", P("w", "kernel", (8, 4, 3, 3)), P("b", "bias", (8,)))
    no_bias = L("c", "conv2d", P("w", "kernel", (8, 4, 3, 3)))
    assert compare(sig(with_bias), sig(no_bias)).kind == "equal"
    torch_bn = L("bn", "batchnorm", *(P(n, r, s, op="batchnorm") for n, r, s in [
        ("w", "gamma", (8,)), ("b", "beta", (8,)), ("m", "moving_mean", (8,)),
        ("v", "moving_var", (8,)), ("n", "num_batches_tracked", ())]))
    keras_bn_scale_false = L("bn", "batchnorm", *(P(n, r, (8,), "keras", "batchnorm")
                                                 for n, r in [("b", "beta"), ("m", "moving_mean"),
                                                              ("v", "moving_var")]))
    assert compare(sig(keras_bn_scale_false), sig(torch_bn)).kind == "equal"


def test_a_required_role_on_one_side_only_is_not_compatible():
    lstm_a = L("l", "lstm", P("k", "kernel", (32, 8), op="lstm"),
               P("r", "recurrent_kernel", (32, 8), op="lstm"))
    lstm_b = L("l", "lstm", P("k", "kernel", (32, 8), op="lstm"))
    assert compare(sig(lstm_a), sig(lstm_b)).kind == "none"


def test_recurrent_biases_are_not_compared_at_layer_level():
    keras = L("gru", "gru", P("k", "kernel", (4, 24), "keras", "gru"),
              P("r", "recurrent_kernel", (8, 24), "keras", "gru"),
              P("b", "bias", (2, 24), "keras", "gru"))
    torch = L("gru", "gru", P("k", "kernel", (24, 4), op="gru"),
              P("r", "recurrent_kernel", (24, 8), op="gru"), P("b", "bias", (24,), op="gru"),
              P("rb", "recurrent_bias", (24,), op="gru"))
    assert compare(sig(keras), sig(torch)).kind == "equal"


def test_unknown_axes_are_weak_evidence_by_sorted_dims():
    a = L("x", "opaque", P("t", "other", (3, 5), axes=None))
    b = L("y", "opaque", P("t", "other", (5, 3), axes=None))
    c = compare(sig(a), sig(b))
    assert (c.kind, c.score) == ("weak", SCORE_WEAK)
    assert c.evidence == ("shapes equal as sorted dims only (axes unknown)",)


def test_unrelated_opaque_tensors_are_not_mismatches():
    a = L("x", "opaque", P("t", "other", (3, 5), axes=None))
    b = L("y", "opaque", P("t", "other", (7,), axes=None))
    assert compare(sig(a), sig(b)).kind == "none"


def test_embedding_and_inferred_dense_are_cross_family_compatible():
    emb = L("e", "embedding", P("e", "embeddings", (100, 16), "keras", "embedding"))
    dense = L("e", "dense", P("w", "kernel", (100, 16), "torch", "dense"))
    c = compare(sig(emb), sig(dense))
    assert (c.kind, c.score, c.cross) == ("equal", SCORE_EQUAL + SCORE_CROSS, True)


def test_depthwise_keras_matches_torch_grouped_conv():
    k = L("dw", "depthwise_conv2d", P("k", "depthwise_kernel", (3, 3, 8, 2), "keras",
                                      "depthwise_conv2d"))
    t = L("dw", "conv2d", P("w", "kernel", (16, 1, 3, 3)))
    assert compare(sig(k), sig(t)).kind == "equal"
    assert op_evidence("depthwise_conv2d", "conv2d") == "op depthwise_conv2d~conv2d"
    assert op_evidence("conv2d", "conv2d") == "op conv2d==conv2d"


def test_flattened_dense_compares_out_and_element_count():
    # Keras kernel (H·W·C, O) after an NHWC flatten vs torch (O, C·H·W): equal as (out, in).
    k = L("fc1", "dense", P("k", "kernel", (7 * 7 * 512, 4096), "keras", "dense"))
    t = L("classifier.0", "dense", P("w", "kernel", (4096, 25088), "torch", "dense"))
    assert compare(sig(k), sig(t)).kind == "equal"
    # a kernel labelled with more than one input axis still compares as (out, numel/out)
    odd = L("fc1", "dense", P("w", "kernel", (4096, 512, 7, 7), "torch", "dense",
                              axes=("out", "in", "kh", "kw")))
    assert layer_signature(odd).roles[0][1][0].canon == (4096, 25088)


def test_ignored_parameters_leave_the_signature():
    t = L("c", "conv2d", P("w", "kernel", (8, 4, 3, 3)), P("b", "bias", (8,)))
    assert [r for r, _ in layer_signature(t, skip={"b"}).roles] == ["kernel"]
