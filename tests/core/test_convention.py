"""Conventions: the layouts, gate orders and defaults each adapter declares, asked by name."""
from weightmap import registry
from weightmap.convention import NEUTRAL, Convention, feature_map_axes, spatial_rank


def axes_for(name, op, role, ndim):
    return registry.convention(name).axes(op, role, ndim)


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
    conv = registry.convention
    assert conv("keras").gate_orders["lstm"] == "ifco" and conv("torch").gate_orders["gru"] == "rzn"
    assert conv("onnx").gate_orders["lstm"] == "iofc" and conv("torch").gate_letters["g"] == "c"


def test_the_built_in_conventions_are_the_adapters_and_unknown_is_neutral():
    assert list(registry.conventions()) == ["torch", "keras", "onnx"]
    assert registry.convention("unknown") is NEUTRAL
    assert NEUTRAL.axes("conv2d", "kernel", 4) is None and NEUTRAL.axes("dense", "bias", 1) == \
        ("out",)


def test_feature_maps_defaults_and_words():
    torch, keras, onnx = (registry.convention(n) for n in ("torch", "keras", "onnx"))
    assert keras.data_format({}) == "channels_last" and torch.data_format({}) == "channels_first"
    assert keras.data_format({"axis": 1}) == "channels_first"      # a BatchNorm over axis 1
    assert torch.data_format({"data_format": "channels_last"}) == "channels_last"
    assert keras.activation_axes("conv2d", {}, 4) == feature_map_axes("channels_last", 4) == \
        ("n", "h", "w", "c")
    assert onnx.activation_axes("lstm", {}, 4) == ("t", "dir", "n", "c")
    assert torch.activation_axes("lstm", {"batch_first": True}, 3) == ("n", "t", ("dir", "c"))
    assert torch.activation_axes("attention", {}, 3) == ("t", "n", "c")
    assert (torch.index_dtype, keras.index_dtype) == ("int64", "int32")
    assert torch.depthwise_pattern(2) == "(c*m),1,kh,kw" and keras.depthwise_pattern(1) == \
        "k,c,m"
    assert keras.describe_reset(True) == "reset_after=True" and \
        onnx.describe_reset(False) == "linear_before_reset=0"
    assert keras.activation({"activation": {"module": "keras.activations",
                                            "config": {"name": "relu"}}}) == "relu"


def test_a_convention_of_another_adapter_is_a_subclass_away():
    class Toy(Convention):
        name, display, kernels, feature_maps = "toy", "Toy", "channels_last", "channels_last"
        gate_orders = {"lstm": "ofic"}

    toy = Toy()
    assert toy.axes("conv2d", "kernel", 4) == ("kh", "kw", "in", "out")
    assert toy.axes("lstm", "recurrent_bias", 1) == ("out",)
    assert toy.epsilon(__import__("weightmap").Layer("bn", "batchnorm")) == (None, "not stored")
