import numpy as np

from weightmap.planning.conversions import convert
from weightmap.transform import apply_steps


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
    from weightmap.planning.conversions import LayerPair
    src = Layer("a", "dense", (Param("a.weight", "kernel", (2, 3), "float16", ("out", "in"),
                                     ArrayData(np.ones((2, 3), np.float16))),))
    tgt = Layer("a", "dense", (Param("a.weight", "kernel", (2, 3), "float32", ("out", "in")),))
    pair = LayerPair(src, tgt, ParamGraph("arrays", "torch", "s", (src,)),
                     ParamGraph("arrays", "torch", "t", (tgt,)), (("a.weight", ("a.weight",), ""),))
    (w,) = convert(pair)
    assert w.status == "transferred" and [s.op for s in w.steps] == ["cast"]
    assert "dtype float16 -> float32" in w.notes


def test_several_sources_stack_and_a_slice_note_takes_a_part(pair_factory, layer_factory):
    """What pair rules produce: q, k, v stacked into a fused kernel; one part of a fused one."""
    s = [layer_factory("torch", n, "dense", [("weight", "kernel", (4, 3)), ("bias", "bias", (4,))],
                       rng=np.random.default_rng(i)) for i, n in enumerate("qkv")]
    t = layer_factory("torch", "qkv", "dense", [("weight", "kernel", (12, 3)),
                                                ("bias", "bias", (12,))])
    pair = pair_factory(s, [t], "torch", "torch", "q", "qkv",
                        [("qkv.weight", ("q.weight", "k.weight", "v.weight"), "concat"),
                         ("qkv.bias", ("q.bias", "k.bias", "v.bias"), "concat")])
    w, b = convert(pair)
    assert w.status == "transformed" and [x.op for x in w.steps] == ["concat"]
    parts = [pair.source_graph.param(f"{n}.weight").read() for n in "qkv"]
    np.testing.assert_array_equal(_run(w, pair), np.concatenate(parts))
    keras = layer_factory("keras", "fused", "dense", [("kernel:0", "kernel", (3, 12))])
    part = layer_factory("torch", "k", "dense", [("weight", "kernel", (4, 3))])
    pair = pair_factory([keras], [part], "keras", "torch", "fused", "k",
                        [("k.weight", ("fused/kernel:0",), "slice:4:8")])
    (k,) = convert(pair)
    assert [x.to_dict() for x in k.steps] == [{"op": "slice", "axis": 1, "start": 4, "stop": 8},
                                              {"op": "transpose", "perm": [1, 0]}]
    fused = pair.source_graph.param("fused/kernel:0").read()
    np.testing.assert_array_equal(_run(k, pair), fused[:, 4:8].T)


def test_a_dense_kernel_into_a_1x1_convolution_and_back(pair_factory, layer_factory):
    s = layer_factory("keras", "fc", "dense", [("kernel:0", "kernel", (5, 2))])
    t = layer_factory("torch", "head", "conv1d", [("weight", "kernel", (2, 5, 1))])
    pair = pair_factory([s], [t], "keras", "torch", "fc", "head",
                        [("head.weight", ("fc/kernel:0",), "")])
    (w,) = convert(pair)
    assert [x.op for x in w.steps] == ["transpose", "reshape"]
    np.testing.assert_array_equal(_run(w, pair),
                                  pair.source_graph.param("fc/kernel:0").read().T[:, :, None])
    back = pair_factory([t], [s], "torch", "keras", "head", "fc",
                        [("fc/kernel:0", ("head.weight",), "")])
    (k,) = convert(back)
    assert [x.to_dict() for x in k.steps] == [{"op": "transpose", "perm": [1, 0, 2]},
                                              {"op": "reshape", "shape": [5, 2]}]
