from weightmap.layouts import GATE_ORDER, axes_for, spatial_rank


def test_conv_layouts_per_framework():
    assert axes_for("torch", "conv2d", "kernel", 4) == ("out", "in", "kh", "kw")
    assert axes_for("keras", "conv2d", "kernel", 4) == ("kh", "kw", "in", "out")
    assert axes_for("onnx", "conv1d", "kernel", 3) == ("out", "in", "k")
    assert axes_for("keras", "conv3d", "kernel", 5) == ("kd", "kh", "kw", "in", "out")
    assert axes_for("torch", "conv_transpose2d", "kernel", 4) == ("in", "out", "kh", "kw")
    assert axes_for("keras", "conv_transpose2d", "kernel", 4) == ("kh", "kw", "out", "in")
    assert axes_for("keras", "depthwise_conv2d", "depthwise_kernel", 4) == ("kh", "kw", "c", "m")


def test_dense_square_matrix_is_decided_by_convention_not_shape():
    assert axes_for("torch", "dense", "kernel", 2) == ("out", "in")
    assert axes_for("keras", "dense", "kernel", 2) == ("in", "out")


def test_vectors_and_unknowns():
    assert axes_for("keras", "batchnorm", "moving_var", 1) == ("c",)
    assert axes_for("torch", "dense", "bias", 1) == ("out",)
    assert axes_for("keras", "gru", "bias", 2) == ("pair", "out")
    assert axes_for("torch", "opaque", "other", 3) is None
    assert axes_for("torch", "conv2d", "kernel", 3) is None   # rank does not fit the op


def test_spatial_rank_and_gates():
    assert spatial_rank("conv_transpose3d") == 3 and spatial_rank("dense") is None
    assert GATE_ORDER[("keras", "lstm")] == "ifco" and GATE_ORDER[("torch", "gru")] == "rzn"
