"""Mirror tests of weightmap/conversions/fusion.py, numpy only: whole graphs go through the real
matcher and planner, and the ported values are judged by a numpy eval-mode forward pass."""
import numpy as np
import pytest

from weightmap.conversions.fusion import channel_axis, following_bn, looks_fused
from weightmap.execute import produce
from weightmap.graph import ArrayData, Layer, Param, ParamGraph
from weightmap.layouts import axes_for
from weightmap.match import match
from weightmap.planner import build_plan

RNG = np.random.default_rng(0)
BN_ROLES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
            "running_var": "moving_var", "num_batches_tracked": "num_batches_tracked"}
KERAS_BN = {"gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean",
            "moving_variance": "moving_var"}


def param(fw, layer, leaf, role, arr, op):
    sep = "/" if fw == "keras" else "."
    return Param(f"{layer}{sep}{leaf}", role, arr.shape, str(arr.dtype),
                 axes_for(fw, op, role, arr.ndim), ArrayData(arr))


def conv(fw, name, cout, cin, bias, k=3, op="conv2d", attrs=None):
    if op == "depthwise_conv2d" and fw == "keras":
        w = RNG.normal(0, 0.5, (k, k, cin, cout // cin)).astype(np.float32)
    elif op == "depthwise_conv2d":
        w = RNG.normal(0, 0.5, (cout, 1, k, k)).astype(np.float32)
    elif fw == "keras":
        w = RNG.normal(0, 0.5, (k, k, cin, cout)).astype(np.float32)
    else:
        w = RNG.normal(0, 0.5, (cout, cin, k, k)).astype(np.float32)
    kleaf, role = ("kernel:0", "kernel") if fw == "keras" else ("weight", "kernel")
    if op == "depthwise_conv2d" and fw == "keras":
        kleaf, role = "depthwise_kernel:0", "depthwise_kernel"
    ps = [param(fw, name, kleaf, role, w, op)]
    if bias:
        leaf = "bias:0" if fw == "keras" else "bias"
        ps.append(param(fw, name, leaf, "bias", RNG.uniform(-1, 1, cout).astype(np.float32), op))
    return Layer(name, op, tuple(ps), attrs or {})


def bn(fw, name, n, eps, roles=("gamma", "beta", "moving_mean", "moving_var")):
    var = RNG.uniform(0.5, 1.5, n).astype(np.float32)
    var[::3] = 1e-6
    vals = {"gamma": RNG.uniform(0.5, 1.5, n).astype(np.float32),
            "beta": RNG.normal(0, 0.5, n).astype(np.float32),
            "moving_mean": RNG.normal(0, 0.5, n).astype(np.float32), "moving_var": var}
    leaves = {v: k for k, v in (KERAS_BN if fw == "keras" else BN_ROLES).items()}
    ps = [param(fw, name, leaves[r] + (":0" if fw == "keras" else ""), r, vals[r], "batchnorm")
          for r in roles]
    if fw == "torch":
        ps.append(param(fw, name, "num_batches_tracked", "num_batches_tracked",
                        np.array(7, np.int64), "batchnorm"))
    return Layer(name, "batchnorm", tuple(ps), {"epsilon" if fw != "torch" else "eps": eps})


def graph(fw, *layers):
    return ParamGraph("arrays", fw, f"{fw}-graph", layers, order="execution")


def port(src, tgt):
    plan = build_plan(src, tgt, match(src, tgt))
    plan.check(src, tgt)
    values = {t.target: arr for t, arr in produce(plan, src, tgt)}
    return plan, values


# ---- a numpy eval-mode forward of conv (+ BN) stacks --------------------------------------

def to_oihw(layer, get):
    w = get(layer.params[0].name)
    axes = layer.params[0].axes
    if axes == ("kh", "kw", "c", "m"):                    # keras depthwise: out c*M + m
        kh, kw, c, m = w.shape
        return w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    return np.transpose(w, [axes.index(a) for a in ("out", "in", "kh", "kw")])


def conv_eval(x, w, b, groups=1):
    """x (N, C, H, W), w (O, C/groups, kh, kw), valid padding, float64."""
    o, cg, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    outs = []
    per = o // groups
    for g in range(groups):
        xs = win[:, g * cg:(g + 1) * cg]
        outs.append(np.einsum("nchwij,ocij->nohw", xs, w[g * per:(g + 1) * per]))
    y = np.concatenate(outs, axis=1)
    return y if b is None else y + b[None, :, None, None]


def forward(g: ParamGraph, x, get):
    """Run the graph's layers in order: conv layers and BatchNorms (channels-first)."""
    for layer in g.layers:
        by_role = {p.role: get(p.name).astype(np.float64) for p in layer.params}
        if layer.op == "batchnorm":
            n = x.shape[1]
            eps = layer.attrs.get("eps", layer.attrs.get("epsilon"))
            s = by_role.get("gamma", np.ones(n)) / np.sqrt(by_role["moving_var"] + eps)
            x = (x - by_role["moving_mean"][None, :, None, None]) * s[None, :, None, None] \
                + by_role.get("beta", np.zeros(n))[None, :, None, None]
        else:
            w = to_oihw(layer, get).astype(np.float64)
            x = conv_eval(x, w, by_role.get("bias"), groups=x.shape[1] // w.shape[1])
    return x


def assert_same(src, tgt, values, cin=3):
    x = np.random.default_rng(1).normal(0, 1, (2, cin, 9, 9))
    want = forward(src, x, lambda n: src.param(n).read())
    got = forward(tgt, x, lambda n: values[n])
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= 1e-5, rel
    return rel


def by_target(plan):
    return {t.target: t for t in plan.tensors}


# ---- conv bias into BatchNorm ---------------------------------------------------------------

def test_conv_bias_folds_into_running_mean():
    src = graph("keras", conv("keras", "c1", 4, 3, bias=True), bn("keras", "b1", 4, 1.001e-5))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=False), bn("torch", "bn1", 4, 1e-5))
    plan, values = port(src, tgt)
    t = by_target(plan)
    mean = t["bn1.running_mean"]
    assert mean.sources == ("b1/moving_mean:0", "c1/bias:0") and mean.status == "transformed"
    assert [s.op for s in mean.steps] == ["subtract"]
    assert "folded into the running mean (mean' = mean - b)" in mean.notes[-1]
    assert t["bn1.weight"].notes[0] == "eps 1.001e-05->1e-05 compensated (gamma scaled)"
    assert not plan.unused
    assert_same(src, tgt, values)


def test_target_conv_bias_the_source_lacks_is_zero():
    src = graph("torch", conv("torch", "conv1", 4, 3, bias=False), bn("torch", "bn1", 4, 1e-5))
    tgt = graph("keras", conv("keras", "c1", 4, 3, bias=True), bn("keras", "b1", 4, 1e-3))
    plan, values = port(src, tgt)
    bias = by_target(plan)["c1/bias:0"]
    assert bias.status == "synthetic" and bias.value == 0.0
    np.testing.assert_array_equal(values["c1/bias:0"], np.zeros(4, np.float32))
    assert_same(src, tgt, values)


# ---- unfusion ---------------------------------------------------------------------------------

def fused_onnx(*convs):
    return graph("onnx", *convs)


def onnx_conv(name, cout, cin, bias=True, attrs=None):
    layer = conv("torch", name, cout, cin, bias)
    params = tuple(Param(f"onnx::Conv_{i}_{name}", p.role, p.shape, p.dtype, p.axes, p.data)
                   for i, p in enumerate(layer.params))
    return Layer(f"/{name}/Conv", "conv2d", params, attrs or {})


def test_fused_conv_unfuses_into_conv_and_synthetic_batchnorm():
    src = fused_onnx(onnx_conv("conv1", 4, 3), onnx_conv("conv2", 5, 4))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=False), bn("torch", "bn1", 4, 1e-3),
                conv("torch", "conv2", 5, 4, bias=False), bn("torch", "bn2", 5, 1e-5))
    plan, values = port(src, tgt)
    t = by_target(plan)
    assert [t[f"bn1.{n}"].status for n in ("weight", "bias", "running_mean", "running_var",
                                           "num_batches_tracked")] == \
        ["synthetic", "transferred", "synthetic", "synthetic", "new"]
    assert t["bn1.bias"].sources == ("onnx::Conv_1_conv1",)
    assert t["bn1.running_var"].value == pytest.approx(1 - 1e-3)
    assert all(n.startswith("unfused BN (synthetic stats) from fused conv /conv1/Conv")
               for n in t["bn1.weight"].notes)
    assert any(d.startswith("bn1: unfused from the conv before it") and "re-estimate" in d
               for d in plan.decisions)
    assert t["conv1.weight"].status == "transferred" and not plan.unused
    assert_same(src, tgt, values)


def test_fused_mark_without_bias_and_target_conv_with_bias():
    mark = {"rewrite_rule": "RemoveOptionalBiasFromConv, FuseBatchNormIntoConv"}
    src = fused_onnx(onnx_conv("conv1", 4, 3, bias=False, attrs=mark))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=True), bn("torch", "bn1", 4, 1e-5))
    assert looks_fused(src.layers[0])
    plan, values = port(src, tgt)
    t = by_target(plan)
    assert t["conv1.bias"].status == "synthetic" and t["bn1.bias"].value == 0.0
    assert_same(src, tgt, values)


def test_torchscript_names_without_a_mark_and_target_conv_with_bias():
    """The TorchScript exporter marks nothing: its own onnx::Conv_N kernel name says it folded."""
    src = fused_onnx(onnx_conv("conv1", 4, 3), onnx_conv("conv2", 5, 4))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=True), bn("torch", "bn1", 4, 1e-5),
                conv("torch", "conv2", 5, 4, bias=True), bn("torch", "bn2", 5, 1e-3))
    assert looks_fused(src.layers[0])
    plan, values = port(src, tgt)
    t = by_target(plan)
    assert t["conv1.bias"].sources == ("onnx::Conv_1_conv1",) and t["bn2.bias"].value == 0.0
    assert {t[f"bn{i}.{n}"].status for i in (1, 2)
            for n in ("weight", "bias", "running_mean", "running_var")} == {"synthetic"}
    assert_same(src, tgt, values)
    # a parameter's own name (a plain export, nothing folded) is not a mark
    assert not looks_fused(conv("torch", "conv1", 4, 3, bias=True))


def test_unfuse_into_batchnorm_without_beta_moves_the_bias_into_the_mean():
    src = fused_onnx(onnx_conv("c1", 4, 3))
    tgt = graph("keras", conv("keras", "c1", 4, 3, bias=False),
                bn("keras", "b1", 4, 1e-3, roles=("gamma", "moving_mean", "moving_var")))
    plan, values = port(src, tgt)
    mean = by_target(plan)["b1/moving_mean:0"]
    assert mean.status == "synthetic" and [s.op for s in mean.steps] == ["scale"]
    assert_same(src, tgt, values)


def test_plain_conv_with_bias_into_conv_bias_and_bn_is_left_new():
    # VGG into VGG-BN: the BN is a new layer to train, not an unfused one
    src = graph("torch", conv("torch", "conv1", 4, 3, bias=True))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=True), bn("torch", "bn1", 4, 1e-5))
    plan, _ = port(src, tgt)
    assert {t.status for t in plan.tensors if t.layer == "bn1"} == {"new"}
    assert not plan.decisions


# ---- fusion -------------------------------------------------------------------------------

def test_keras_conv_and_batchnorm_fuse_into_a_torch_conv():
    src = graph("keras", conv("keras", "c1", 4, 3, bias=True), bn("keras", "b1", 4, 1.001e-5),
                conv("keras", "c2", 6, 4, bias=False), bn("keras", "b2", 6, 1e-3))
    tgt = graph("torch", conv("torch", "conv1", 4, 3, bias=True),
                conv("torch", "conv2", 6, 4, bias=True))
    plan, values = port(src, tgt)
    t = by_target(plan)
    w = t["conv1.weight"]
    assert [s.op for s in w.steps] == ["bn_fold_kernel", "transpose"]
    assert w.steps[0].args["axis"] == 3          # keras (kh, kw, in, out)
    assert t["conv2.bias"].sources == ("b2/gamma:0", "b2/beta:0", "b2/moving_mean:0",
                                       "b2/moving_variance:0")
    assert "fused BN b1 into the bias" in t["conv1.bias"].notes[0]
    assert not plan.unused and not plan.decisions
    assert_same(src, tgt, values)


def test_depthwise_keras_conv_and_batchnorm_fuse_over_c_and_m():
    src = graph("keras", conv("keras", "dw", 6, 3, bias=False, op="depthwise_conv2d"),
                bn("keras", "bn", 6, 1e-3))
    tgt = graph("torch", conv("torch", "dw", 6, 3, bias=True, op="depthwise_conv2d"))
    assert channel_axis(src.layers[0].params[0]) == [2, 3]
    assert following_bn(src, src.layers[0]) is src.layers[1]
    plan, values = port(src, tgt)
    assert by_target(plan)["dw.weight"].steps[0].args["axis"] == [2, 3]
    assert_same(src, tgt, values)


def test_fusion_into_a_conv_without_bias_is_a_decision():
    src = graph("torch", conv("torch", "conv1", 4, 3, bias=False), bn("torch", "bn1", 4, 1e-5),
                conv("torch", "conv2", 5, 4, bias=False), bn("torch", "bn2", 5, 1e-5))
    tgt = graph("onnx", onnx_conv("conv1", 4, 3, bias=False), onnx_conv("conv2", 5, 4, bias=False))
    plan, values = port(src, tgt)
    said = [d.partition(": ") for d in plan.decisions if "the target conv has no bias" in d]
    # the same words for each conv: the report says it once for both
    assert [layer for layer, _, _ in said] == ["/conv1/Conv", "/conv2/Conv"]
    assert len({text for _, _, text in said}) == 1
    w = next(t for t in plan.tensors if t.layer == "/conv1/Conv")
    assert w.steps[0].op == "bn_fold_kernel"


def test_a_batchnorm_of_another_width_does_not_follow_the_conv():
    src = graph("torch", conv("torch", "conv1", 4, 3, bias=True), bn("torch", "bn1", 5, 1e-5))
    assert following_bn(src, src.layers[0]) is None
    assert following_bn(src, src.layers[1]) is None


def _fed(layer, *sources):
    return Layer(layer.name, layer.op, layer.params, {**layer.attrs, "fed_by": sources})


def test_following_bn_from_the_data_flow_not_the_order():
    """Keras lists a ResNet block's shortcut conv, then the main branch's last conv, then their
    BatchNorms: with the data flow, each conv finds its own BatchNorm."""
    from weightmap.dataflow import consumers
    c0, c3 = _fed(conv("keras", "c0", 8, 4, True), "x"), _fed(conv("keras", "c3", 8, 4, True),
                                                               "y")
    b0, b3 = _fed(bn("keras", "b0", 8, 1e-3), "c0"), _fed(bn("keras", "b3", 8, 1e-3), "c3")
    g = graph("keras", c0, c3, b0, b3)
    assert following_bn(g, c0) is None and following_bn(g, c3) is b0   # by order: wrong
    feeds = consumers(g.layers)
    assert following_bn(g, c0, feeds) is b0 and following_bn(g, c3, feeds) is b3
    # a conv whose output also goes elsewhere is not "followed" by a BatchNorm alone
    other = _fed(conv("keras", "z", 8, 8, True), "c0")
    g2 = graph("keras", c0, b0, other)
    assert following_bn(g2, c0, consumers(g2.layers)) is None
    # a BatchNorm fed by two layers (after an addition) normalises neither
    b_sum = _fed(bn("keras", "bs", 8, 1e-3), "c0", "c3")
    g3 = graph("keras", c0, c3, b_sum)
    assert following_bn(g3, c0, consumers(g3.layers)) is None
