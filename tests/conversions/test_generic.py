import numpy as np

from weightmap.conversions import convert
from weightmap.transforms import apply_steps


def _run(plan, pair):
    srcs = [pair.source_graph.param(s).read() for s in plan.sources]
    return apply_steps(plan.steps, srcs)


def test_square_dense_kernel_is_transposed_by_labels(pair_factory, layer_factory):
    s = layer_factory("keras", "fc", "dense", [("kernel:0", "kernel", (4, 4)), ("bias:0", "bias", (4,))])
    t = layer_factory("torch", "lin", "dense", [("weight", "kernel", (4, 4)), ("bias", "bias", (4,))])
    pair = pair_factory([s], [t], "keras", "torch", "fc", "lin",
                        [("lin.weight", ("fc/kernel:0",), ""), ("lin.bias", ("fc/bias:0",), "")])
    w, b = convert(pair)
    assert w.status == "transformed" and b.status == "transferred"
    k = pair.source_graph.param("fc/kernel:0").read()
    np.testing.assert_array_equal(_run(w, pair), k.T)


def test_conv_and_conv_transpose_keras_to_torch(pair_factory, layer_factory):
    s = layer_factory("keras", "c", "conv2d", [("kernel:0", "kernel", (3, 5, 2, 7))])
    t = layer_factory("torch", "c", "conv2d", [("weight", "kernel", (7, 2, 3, 5))])
    pair = pair_factory([s], [t], "keras", "torch", "c", "c", [("c.weight", ("c/kernel:0",), "")])
    (w,) = convert(pair)
    assert w.steps[0].args["perm"] == [3, 2, 0, 1]
    s = layer_factory("keras", "d", "conv_transpose2d", [("kernel:0", "kernel", (3, 3, 6, 4))])
    t = layer_factory("torch", "d", "conv_transpose2d", [("weight", "kernel", (4, 6, 3, 3))])
    pair = pair_factory([s], [t], "keras", "torch", "d", "d", [("d.weight", ("d/kernel:0",), "")])
    (w,) = convert(pair)
    k = pair.source_graph.param("d/kernel:0").read()
    np.testing.assert_array_equal(_run(w, pair), k.transpose(3, 2, 0, 1))


def test_unpaired_target_param_stays_new(pair_factory, layer_factory):
    s = layer_factory("torch", "a", "conv2d", [("weight", "kernel", (2, 2, 1, 1))])
    t = layer_factory("torch", "b", "conv2d", [("weight", "kernel", (2, 2, 1, 1)), ("bias", "bias", (2,))])
    pair = pair_factory([s], [t], "torch", "torch", "a", "b", [("b.weight", ("a.weight",), "")])
    w, b = convert(pair)
    assert (w.status, b.status) == ("transferred", "new")


def test_dtype_change_is_a_recorded_cast(pair_factory, layer_factory):
    from weightmap.graph import ArrayData, Layer, Param, ParamGraph
    from weightmap.conversions import LayerPair
    src = Layer("a", "dense", (Param("a.weight", "kernel", (2, 3), "float16", ("out", "in"),
                                     ArrayData(np.ones((2, 3), np.float16))),))
    tgt = Layer("a", "dense", (Param("a.weight", "kernel", (2, 3), "float32", ("out", "in")),))
    pair = LayerPair(src, tgt, ParamGraph("arrays", "torch", "s", (src,)),
                     ParamGraph("arrays", "torch", "t", (tgt,)), (("a.weight", ("a.weight",), ""),))
    (w,) = convert(pair)
    assert w.status == "transferred" and [s.op for s in w.steps] == ["cast"]
    assert "dtype float16 -> float32" in w.notes
