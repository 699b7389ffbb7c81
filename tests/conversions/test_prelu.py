import numpy as np
import pytest

from weightmap.planning.conversions import convert
from weightmap.errors import ConversionError
from weightmap.graph import ArrayData, Layer, Param, ParamGraph
from weightmap.planning.conversions import LayerPair
from weightmap.transform import apply_steps


def _pair(src_shape, tgt_shape, s_fw="keras", t_fw="torch"):
    alpha = np.random.default_rng(0).uniform(0.1, 0.3, src_shape).astype(np.float32)
    s = Layer("a", "prelu", (Param("a/alpha", "alpha", src_shape, "float32", None,
                                   ArrayData(alpha)),))
    t = Layer("b", "prelu", (Param("b.weight", "alpha", tgt_shape, "float32",
                                   ("c",) if len(tgt_shape) == 1 else None),))
    return LayerPair(s, t, ParamGraph("arrays", s_fw, "s", (s,)),
                     ParamGraph("arrays", t_fw, "t", (t,)), (("b.weight", ("a/alpha",), ""),)), alpha


def _prelu(x, alpha):
    return np.where(x > 0, x, x * alpha)


def test_keras_shared_axes_alpha_computes_the_same_in_torch():
    pair, alpha = _pair((1, 1, 4), (4,))
    (plan,) = convert(pair)
    w = apply_steps(plan.steps, [alpha])
    x = np.random.default_rng(1).standard_normal((2, 5, 5, 4)).astype(np.float32)
    keras_out = _prelu(x, alpha)                                # broadcast over H, W
    torch_out = _prelu(x.transpose(0, 3, 1, 2), w.reshape(1, 4, 1, 1)).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(keras_out, torch_out)
    assert plan.notes == ("prelu alpha (1, 1, 4) -> (4,)",)


def test_torch_alpha_into_keras_shape_and_spatial_alpha_refused():
    pair, alpha = _pair((4,), (1, 1, 4), "torch", "keras")
    (plan,) = convert(pair)
    assert apply_steps(plan.steps, [alpha]).shape == (1, 1, 4)
    pair, _ = _pair((5, 5, 4), (4,))
    with pytest.raises(ConversionError, match="only one per-channel axis"):
        convert(pair)
