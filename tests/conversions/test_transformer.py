"""The dense conversion for Conv1D-style layers (planning/conversions/transformer_layout.py):
dispatch from the dense conversion, layout notes; the passes' order; numpy only."""
import numpy as np

from weightmap.planning.conversions import lookup
from weightmap.planning.conversions.dense import convert_dense
from weightmap.planning.conversions.transformer_layout import convert_conv1d_dense, has_conv1d
from weightmap.planning.passes import GRAPH_PASSES, PLAN_PASSES as PASSES
from weightmap.graph import ArrayData, Layer, Param
from weightmap.transform import apply_steps


def test_dense_pairs_with_a_conv1d_side_go_there_and_passes_in_order(pair_factory,
                                                                    layer_factory):
    fc_s = layer_factory("torch", "fc", "dense", [("weight", "kernel", (3, 4))])
    fc_t = layer_factory("torch", "fc", "dense", [("weight", "kernel", (3, 4))])
    pair = pair_factory([fc_s], [fc_t], "torch", "torch", "fc", "fc",
                        [("fc.weight", ("fc.weight",), "")])
    assert lookup(pair) is convert_dense and not has_conv1d(pair)
    names = [n for n, _ in PASSES]
    assert names.index("fused_qkv") < names.index("conv1d_square_layout") < \
        names.index("tied_head")
    assert {"transformer_order", "conv1d_layout", "qkv_hold"} <= {n for n, _ in GRAPH_PASSES}


def test_plain_dense_pairs_go_to_convert_dense(pair_factory, layer_factory):
    fc_s = layer_factory("keras", "fc", "dense", [("kernel:0", "kernel", (4, 3)),
                                                  ("bias:0", "bias", (3,))])
    fc_t = layer_factory("torch", "fc", "dense", [("weight", "kernel", (3, 4)),
                                                  ("bias", "bias", (3,))])
    pair = pair_factory([fc_s], [fc_t], "keras", "torch", "fc", "fc",
                        [("fc.weight", ("fc/kernel:0",), ""), ("fc.bias", ("fc/bias:0",), "")])
    assert convert_conv1d_dense(pair) == convert_dense(pair)


def _conv1d_layer(name, shape, rng):
    kernel = rng.standard_normal(shape).astype(np.float32)
    params = (Param(f"{name}.weight", "kernel", shape, "float32", ("in", "out"),
                    ArrayData(kernel)),
              Param(f"{name}.bias", "bias", (shape[1],), "float32", ("out",),
                    ArrayData(np.zeros(shape[1], np.float32))))
    return Layer(name, "dense", params, {"layout_from": "module type Conv1D"},
                 source_type="Conv1D")


def test_module_type_conv1d_square_kernel_is_transposed(pair_factory, layer_factory):
    rng = np.random.default_rng(0)
    src = _conv1d_layer("attn.c_proj", (5, 5), rng)
    tgt = layer_factory("torch", "attn.proj", "dense", [("weight", "kernel", (5, 5)),
                                                        ("bias", "bias", (5,))])
    pair = pair_factory([src], [tgt], "torch", "torch", "attn.c_proj", "attn.proj",
                        [("attn.proj.weight", ("attn.c_proj.weight",), ""),
                         ("attn.proj.bias", ("attn.c_proj.bias",), "")])
    w, b = convert_conv1d_dense(pair)
    k = src.params[0].read()
    np.testing.assert_array_equal(apply_steps(w.steps, [k]), k.T)
    assert "source layout (in,out) from module type Conv1D" in w.notes
    assert "decision: source kernels stored (in,out): layout from module type Conv1D" in w.notes
    assert b.status == "transferred" and not b.steps
