import numpy as np
import pytest
from onnx import helper

from weightmap_onnx.ops import DEFAULT_AXES, HANDLERS, draft_for

N = helper.make_node


def _w(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _draft(make_model, make_info, nodes, inits, index=0, **kw):
    info = make_info(make_model(nodes, inits, **kw))
    return draft_for(info, index, info.nodes[index])


def _slots(draft):
    return [(s.name, s.role, s.axes if s.axes is not DEFAULT_AXES else "default", s.pos)
            for s in draft.slots]


def test_conv1d_and_conv3d(make_model, make_info):
    d = _draft(make_model, make_info, [N("Conv", ["x", "w"], ["y"], strides=[2])],
               {"w": _w(6, 3, 5)})
    assert d.op == "conv1d"
    assert d.attrs == {"kernel_shape": [5], "strides": [2], "pads": [0, 0], "dilations": [1],
                       "group": 1, "auto_pad": "NOTSET", "in_channels": 3, "out_channels": 6}
    assert _slots(d) == [("w", "kernel", "default", 1)]
    d = _draft(make_model, make_info, [N("Conv", ["x", "w", "b"], ["y"], group=2)],
               {"w": _w(4, 1, 2, 2, 2), "b": _w(4)})
    assert d.op == "conv3d" and d.attrs["in_channels"] == 2


def test_depthwise_needs_one_input_channel_per_group(make_model, make_info):
    d = _draft(make_model, make_info, [N("Conv", ["x", "w"], ["y"], group=3)], {"w": _w(6, 1, 3)})
    assert d.op == "depthwise_conv1d" and d.attrs["depth_multiplier"] == 2
    d = _draft(make_model, make_info, [N("Conv", ["x", "w"], ["y"], group=2)],
               {"w": _w(4, 2, 3, 3)})
    assert d.op == "conv2d" and d.attrs["group"] == 2 and d.attrs["in_channels"] == 4
    d = _draft(make_model, make_info, [N("Conv", ["x", "w"], ["y"])], {"w": _w(4, 1, 3, 3)})
    assert d.op == "conv2d"      # one input channel, but not grouped


def test_conv_with_computed_weight_is_opaque(make_model, make_info):
    d = _draft(make_model, make_info, [N("Conv", ["x", "x2", "b"], ["y"])], {"b": _w(4)},
               inputs=("x", "x2"))
    assert d.op == "opaque" and _slots(d) == [("b", "other", None, 2)]


def test_conv_transpose_channels(make_model, make_info):
    d = _draft(make_model, make_info,
               [N("ConvTranspose", ["x", "w"], ["y"], group=2, output_shape=[9, 9])],
               {"w": _w(4, 3, 2, 2)})
    assert d.op == "conv_transpose2d"
    assert (d.attrs["in_channels"], d.attrs["out_channels"]) == (4, 6)
    assert d.attrs["output_shape"] == [9, 9] and d.attrs["output_padding"] == [0, 0]


@pytest.mark.parametrize("trans_b, shape, axes, io", [
    (1, (5, 3), ("out", "in"), (3, 5)),
    (0, (3, 5), ("in", "out"), (3, 5)),
])
def test_gemm_axes_follow_transB(make_model, make_info, trans_b, shape, axes, io):
    d = _draft(make_model, make_info, [N("Gemm", ["x", "B", "C"], ["y"], transB=trans_b)],
               {"B": _w(*shape), "C": _w(5)})
    assert d.op == "dense"
    assert _slots(d) == [("B", "kernel", axes, 1), ("C", "bias", "default", 2)]
    assert (d.attrs["in_features"], d.attrs["out_features"]) == io
    assert (d.attrs["alpha"], d.attrs["beta"], d.attrs["transA"]) == (1.0, 1.0, 0)


def test_gemm_with_constant_activation_is_opaque(make_model, make_info):
    d = _draft(make_model, make_info, [N("Gemm", ["A", "B"], ["y"])],
               {"A": _w(2, 3), "B": _w(3, 4)}, inputs=())
    assert d.op == "opaque" and [s.name for s in d.slots] == ["A", "B"]


def test_matmul_bias_add_is_merged_either_side(make_model, make_info):
    nodes = [N("MatMul", ["x", "w"], ["h"]), N("Add", ["b", "h"], ["y"], "bias_add")]
    d = _draft(make_model, make_info, nodes, {"w": _w(3, 5), "b": _w(5)})
    assert _slots(d) == [("w", "kernel", ("in", "out"), 1), ("b", "bias", "default", None)]
    assert d.merged == (1,) and d.attrs["bias_node"] == "bias_add"


@pytest.mark.parametrize("nodes, outputs", [
    ([N("MatMul", ["x", "w"], ["h"]), N("Add", ["h", "b7"], ["y"])], ("y",)),   # wrong length
    ([N("MatMul", ["x", "w"], ["h"]), N("Add", ["h", "b"], ["y"])], ("y", "h")),  # h escapes
    ([N("MatMul", ["x", "w"], ["h"]), N("Add", ["h", "b"], ["y"]),
      N("Relu", ["h"], ["z"])], ("y",)),                                         # h used twice
    ([N("MatMul", ["x", "w"], ["h"]), N("Mul", ["h", "b"], ["y"])], ("y",)),    # not an Add
])
def test_matmul_bias_is_not_merged_when_unsafe(make_model, make_info, nodes, outputs):
    d = _draft(make_model, make_info, nodes, {"w": _w(3, 5), "b": _w(5), "b7": _w(7)},
               outputs=outputs)
    assert d.merged == () and [s.role for s in d.slots] == ["kernel"]


def test_matmul_weight_on_the_left(make_model, make_info):
    d = _draft(make_model, make_info, [N("MatMul", ["w", "x"], ["y"])], {"w": _w(5, 3)})
    assert _slots(d) == [("w", "kernel", ("out", "in"), 0)]
    assert (d.attrs["in_features"], d.attrs["out_features"]) == (3, 5)


def test_batched_matmul_weight_is_opaque(make_model, make_info):
    d = _draft(make_model, make_info, [N("MatMul", ["x", "w"], ["y"])], {"w": _w(2, 3, 5)})
    assert d.op == "opaque"


def test_batchnorm_defaults(make_model, make_info):
    d = _draft(make_model, make_info, [N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])],
               {k: _w(3) for k in "gbmv"})
    assert [s.role for s in d.slots] == ["gamma", "beta", "moving_mean", "moving_var"]
    assert d.attrs == {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "num_features": 3}


def test_lstm_with_initial_state_and_rnn(make_model, make_info):
    d = _draft(make_model, make_info,
               [N("LSTM", ["x", "W", "R", "B", "", "h0"], ["y"], hidden_size=2)],
               {"W": _w(1, 8, 3), "R": _w(1, 8, 2), "B": _w(1, 16), "h0": _w(1, 1, 2)})
    assert d.op == "lstm"
    assert _slots(d) == [("W", "kernel", "default", 1), ("R", "recurrent_kernel", "default", 2),
                         ("B", "bias", "default", 3), ("h0", "other", None, 5)]
    assert d.attrs == {"hidden_size": 2, "direction": "forward", "num_directions": 1,
                       "input_size": 3, "layout": 0, "input_forget": 0, "gate_order": "iofc"}
    d = _draft(make_model, make_info, [N("RNN", ["x", "W", "R"], ["y"], hidden_size=2,
                                         activations=["Tanh"])],
               {"W": _w(1, 2, 3), "R": _w(1, 2, 2)})
    assert d.op == "simple_rnn" and "gate_order" not in d.attrs
    assert d.attrs["activations"] == ["Tanh"]


def test_gather_embedding_or_not(make_model, make_info):
    d = _draft(make_model, make_info, [N("Gather", ["E", "x"], ["y"])], {"E": _w(10, 4)})
    assert d.op == "embedding" and _slots(d) == [("E", "embeddings", "default", 0)]
    assert d.attrs == {"num_embeddings": 10, "embedding_dim": 4}
    d = _draft(make_model, make_info, [N("Gather", ["E", "x"], ["y"], axis=1)], {"E": _w(10, 4)})
    assert d.op == "opaque"
    assert _draft(make_model, make_info, [N("Gather", ["x", "i"], ["y"])],
                  {"i": np.array([0], np.int64)}) is None


def test_shape_operands_are_not_weights(make_model, make_info):
    shape = np.array([1, -1], np.int64)
    assert _draft(make_model, make_info, [N("Reshape", ["x", "s"], ["y"])], {"s": shape}) is None
    d = _draft(make_model, make_info, [N("Reshape", ["P", "s"], ["y"])],
               {"P": _w(4, 4), "s": shape}, inputs=())
    assert d.op == "opaque" and _slots(d) == [("P", "other", None, 0)]


def test_custom_domain_is_opaque(make_model, make_info):
    node = N("Fancy", ["x", "w"], ["y"], domain="com.example", k=2)
    d = _draft(make_model, make_info, [node], {"w": _w(2)})
    assert d.op == "opaque" and d.attrs == {"k": 2}


def test_handler_table_covers_the_brief():
    assert set(HANDLERS) == {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization",
                             "LSTM", "GRU", "RNN", "Gather", "LayerNormalization",
                             "InstanceNormalization", "GroupNormalization", "PRelu"}
