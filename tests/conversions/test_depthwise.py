import numpy as np

from weightmap.planning.conversions import convert
from weightmap.transform import apply_steps


def test_depthwise_multiplier_keras_torch_round_trip(pair_factory, layer_factory):
    c, m = 3, 2
    s = layer_factory("keras", "dw", "depthwise_conv2d", [("depthwise_kernel:0", "depthwise_kernel", (3, 3, c, m))])
    t = layer_factory("torch", "dw", "depthwise_conv2d", [("weight", "kernel", (c * m, 1, 3, 3))],
                      attrs={"groups": c})
    pair = pair_factory([s], [t], "keras", "torch", "dw", "dw",
                        [("dw.weight", ("dw/depthwise_kernel:0",), "")])
    (plan,) = convert(pair)
    k = pair.source_graph.param("dw/depthwise_kernel:0").read()
    w = apply_steps(plan.steps, [k])
    for ci in range(c):
        for mi in range(m):      # torch output channel c*M + m is keras input c, multiplier m
            np.testing.assert_array_equal(w[ci * m + mi, 0], k[:, :, ci, mi])
    back = pair_factory([t], [s], "torch", "keras", "dw", "dw",
                        [("dw/depthwise_kernel:0", ("dw.weight",), "")])
    (plan_back,) = convert(back)
    np.testing.assert_array_equal(
        apply_steps(plan_back.steps, [w]), k)
