"""Mirror tests of weightmap/transform/normalisation.py: formulas against a numpy BatchNorm, and
the shape contracts that keep an edited plan honest."""
import json

import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.transform import Step, apply_steps, check_steps

rng = np.random.default_rng(0)
N = 5
GAMMA = rng.uniform(0.5, 1.5, N).astype(np.float32)
BETA = rng.normal(0, 0.5, N).astype(np.float32)
MEAN = rng.normal(0, 0.5, N).astype(np.float32)
VAR = np.array([1e-6, 0.7, 1e-6, 1.3, 0.9], np.float32)


def bn(x, gamma, beta, mean, var, eps):
    """Eval-mode BatchNorm over axis 1, float64."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return (x - np.reshape(mean, shape)) * np.reshape(s, shape) + np.reshape(beta, shape)


def test_bn_eps_gamma_keeps_the_output_for_every_channel():
    x = rng.normal(0, 1, (8, N))
    step = Step("bn_eps_gamma", {"eps_from": 1e-3, "eps_to": 1e-5, "parts": ["gamma", "var"]})
    assert check_steps([step], [(N,), (N,)], "g") == (N,)
    g2 = apply_steps([step], [GAMMA, VAR])
    assert g2.dtype == np.float32
    want = bn(x, GAMMA, BETA, MEAN, VAR, 1e-3)
    np.testing.assert_allclose(bn(x, g2, BETA, MEAN, VAR, 1e-5), want, rtol=1e-6, atol=1e-6)
    # gamma missing (scale=False): from the variance alone
    only_var = Step("bn_eps_gamma", {"eps_from": 1e-3, "eps_to": 1e-5, "parts": ["var"]})
    g1 = apply_steps([only_var], [VAR])
    np.testing.assert_allclose(bn(x, g1, BETA, MEAN, VAR, 1e-5),
                               bn(x, np.ones(N), BETA, MEAN, VAR, 1e-3), rtol=1e-6, atol=1e-6)


def test_bn_eps_var_and_its_positivity_check():
    x = rng.normal(0, 1, (8, N))
    v = apply_steps([Step("bn_eps_var", {"eps_from": 1e-3, "eps_to": 1e-5})], [VAR])
    np.testing.assert_allclose(bn(x, GAMMA, BETA, MEAN, v, 1e-5),
                               bn(x, GAMMA, BETA, MEAN, VAR, 1e-3), rtol=1e-5)
    with pytest.raises(PlanError, match=r"channel 0.*scale=True"):
        apply_steps([Step("bn_eps_var", {"eps_from": 1e-5, "eps_to": 1e-3})], [VAR])
    with pytest.raises(PlanError, match="1-D"):
        check_steps([Step("bn_eps_var", {"eps_from": 1e-5, "eps_to": 1e-3})], [(2, 3)], "v")


def test_subtract():
    step = Step("subtract")
    np.testing.assert_array_equal(apply_steps([step], [MEAN, BETA]), MEAN - BETA)
    with pytest.raises(PlanError, match=r"cannot subtract shape \(4,\) from \(5,\)"):
        check_steps([step], [(5,), (4,)], "m")


def test_fold_kernel_and_bias_make_conv_then_bn_one_conv():
    w = rng.normal(0, 1, (N, 3, 2, 2)).astype(np.float32)        # torch (out, in, kh, kw)
    b = rng.normal(0, 1, N).astype(np.float32)
    x = rng.normal(0, 1, (3, 3, 2, 2))                            # one window per sample
    conv = np.einsum("nchw,ochw->no", x, w) + b
    want = bn(conv, GAMMA, BETA, MEAN, VAR, 1e-5)
    k = Step("bn_fold_kernel", {"eps": 1e-5, "axis": 0, "parts": ["kernel", "gamma", "var"]})
    bf = Step("bn_fold_bias", {"eps": 1e-5, "parts": ["bias", "gamma", "beta", "mean", "var"]})
    wf = apply_steps([k], [w, GAMMA, VAR])
    b_f = apply_steps([bf], [b, GAMMA, BETA, MEAN, VAR])
    got = np.einsum("nchw,ochw->no", x, wf.astype(np.float64)) + b_f
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-6
    # without bias, gamma, beta: 0, 1, 0
    b0 = apply_steps([Step("bn_fold_bias", {"eps": 1e-5, "parts": ["mean", "var"]})], [MEAN, VAR])
    np.testing.assert_allclose(b0, -MEAN / np.sqrt(VAR.astype(np.float64) + 1e-5), rtol=1e-6)


def test_fold_kernel_over_keras_depthwise_channel_axes():
    c, m = 2, 3
    k = rng.normal(0, 1, (3, 3, c, m)).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c * m).astype(np.float32)
    var = rng.uniform(0.5, 2, c * m).astype(np.float32)
    out = apply_steps([Step("bn_fold_kernel", {"eps": 1e-3, "axis": [2, 3],
                                                "parts": ["kernel", "gamma", "var"]})],
                      [k, gamma, var])
    s = gamma / np.sqrt(var.astype(np.float64) + 1e-3)
    for ci in range(c):
        for mi in range(m):        # output channel ci*M + mi
            np.testing.assert_allclose(out[:, :, ci, mi], k[:, :, ci, mi] * s[ci * m + mi],
                                       rtol=1e-6)


@pytest.mark.parametrize("step, shapes, message", [
    (Step("bn_fold_kernel", {"eps": 1e-5, "axis": 1, "parts": ["kernel", "var"]}),
     [(4, 3, 1, 1), (4,)], "3 output channels on axis 1, the BatchNorm has 4"),
    (Step("bn_fold_kernel", {"eps": 1e-5, "axis": [1, 3], "parts": ["kernel", "var"]}),
     [(4, 3, 1, 1), (3,)], "not a run of adjacent axes"),
    (Step("bn_fold_kernel", {"eps": 1e-5, "axis": 0, "parts": ["kernel"]}),
     [(4, 3, 1, 1)], r"lack \['var'\]"),
    (Step("bn_fold_bias", {"eps": 1e-5, "parts": ["mean", "var", "var"]}),
     [(4,), (4,), (4,)], "unknown or repeated"),
    (Step("bn_fold_bias", {"eps": 1e-5, "parts": ["mean", "var"]}),
     [(4,), (5,)], "1-D of one size"),
    (Step("bn_eps_gamma", {"eps_from": 1e-3, "eps_to": 1e-5, "parts": ["gamma", "var"]}),
     [(4,)], r"1 input tensor\(s\) for parts"),
    (Step("bn_eps_gamma", {"eps_from": -1, "eps_to": 1e-5, "parts": ["var"]}),
     [(4,)], "epsilons must be >= 0"),
])
def test_contracts_are_checked_before_any_data(step, shapes, message):
    with pytest.raises(PlanError, match=message):
        check_steps([step], shapes, "t")


def test_steps_round_trip_through_plan_json():
    step = Step("bn_fold_kernel", {"eps": 1e-3, "axis": [2, 3], "parts": ["kernel", "var"]})
    back = Step.from_dict(json.loads(json.dumps(step.to_dict())))
    assert back.to_dict() == step.to_dict() and back.op == "bn_fold_kernel"
