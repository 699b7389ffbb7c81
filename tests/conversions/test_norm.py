"""Mirror tests of weightmap/planning/conversions/norm.py, numpy only: each conversion is judged by what an
eval-mode BatchNorm computes with the converted values."""
import numpy as np
import pytest

from weightmap.planning.conversions import LayerPair, convert
from weightmap.planning.conversions.norm import batch_momentum, epsilon_of, same_eps
from weightmap.errors import PlanError
from weightmap.graph import ArrayData, Layer, Param, ParamGraph
from weightmap import registry
from weightmap.transform import apply_steps

KERAS_NAMES = {"gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean",
               "moving_var": "moving_variance", "num_batches_tracked": None}
TORCH_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
               "moving_var": "running_var", "num_batches_tracked": "num_batches_tracked"}


def bn_layer(framework, name, values, attrs, op="batchnorm"):
    """A norm layer holding ``values`` {role: array}, named the framework's way."""
    names, sep = (KERAS_NAMES, "/") if framework == "keras" else (TORCH_NAMES, ".")
    params = []
    for role, arr in values.items():
        leaf = names[role] + (":0" if framework == "keras" else "")
        params.append(Param(f"{name}{sep}{leaf}", role, arr.shape, str(arr.dtype),
                            registry.convention(framework).axes(op, role, arr.ndim), ArrayData(arr)))
    return Layer(name, op, tuple(params), attrs)


def stats(n=6, seed=0, roles=("gamma", "beta", "moving_mean", "moving_var")):
    rng = np.random.default_rng(seed)
    var = rng.uniform(0.5, 1.5, n).astype(np.float32)
    var[::2] = 1e-6                     # where the epsilon weighs
    full = {"gamma": rng.uniform(0.5, 1.5, n).astype(np.float32),
            "beta": rng.normal(0, 0.3, n).astype(np.float32),
            "moving_mean": rng.normal(0, 0.3, n).astype(np.float32), "moving_var": var}
    return {r: full[r] for r in roles}


def make_pair(src, tgt, sfw, tfw):
    sg = ParamGraph("arrays", sfw, "src", (src,))
    tg = ParamGraph("arrays", tfw, "tgt", (tgt,))
    by_role = {p.role: p.name for p in src.params}
    pairs = tuple((p.name, (by_role[p.role],) if p.role in by_role else (), "")
                  for p in tgt.params)
    return LayerPair(src, tgt, sg, tg, pairs)


def values(plans, pair):
    """Execute the plans: {role: array} for the target layer."""
    out = {}
    by_name = {p.name: p for p in pair.target.params}
    for t in plans:
        if t.status == "new":
            arr = by_name[t.target].read()
        elif t.status == "synthetic" and not t.sources:
            arr = np.full(t.shape, t.value, dtype=np.float32)
        else:
            arr = apply_steps(t.steps, [pair.source_graph.param(s).read() for s in t.sources])
        assert arr.shape == t.shape and str(arr.dtype) == t.dtype
        out[by_name[t.target].role] = arr
    return out


def bn_eval(x, v, eps):
    """An eval-mode BatchNorm over the last axis, float64; gamma/beta default to 1/0."""
    n = x.shape[-1]
    g = v.get("gamma", np.ones(n))
    b = v.get("beta", np.zeros(n))
    return (x - v["moving_mean"]) / np.sqrt(v["moving_var"].astype(np.float64) + eps) * g + b


def same_output(src_vals, e_s, tgt_vals, e_t, tol=1e-6):
    x = np.random.default_rng(5).normal(0, 1, (16, len(src_vals["moving_mean"])))
    want = bn_eval(x, src_vals, e_s)
    got = bn_eval(x, tgt_vals, e_t)
    return np.abs(got - want).max() / np.abs(want).max() <= tol


def test_keras_eps_into_torch_scales_gamma_exactly():
    s = stats()
    src = bn_layer("keras", "bn", s, {"epsilon": 1.001e-5, "momentum": 0.99})
    tgt = bn_layer("torch", "bn", {**stats(seed=9), "num_batches_tracked": np.zeros((), np.int64)},
                   {"eps": 1e-5, "momentum": 0.1})
    pair = make_pair(src, tgt, "keras", "torch")
    plans = convert(pair)
    gamma = plans[0]
    assert gamma.status == "transformed" and gamma.sources == ("bn/gamma:0",
                                                               "bn/moving_variance:0")
    assert gamma.notes[0] == "eps 1.001e-05->1e-05 compensated (gamma scaled)"
    assert [p.status for p in plans[1:]] == ["transferred", "transferred", "transferred", "new"]
    assert "num_batches_tracked has no counterpart in keras" in plans[4].notes[0]
    got = values(plans, pair)
    np.testing.assert_allclose(got["gamma"], s["gamma"] * np.sqrt(
        (s["moving_var"] + 1e-5) / (s["moving_var"] + 1.001e-5)), rtol=1e-6)
    assert same_output(s, 1.001e-5, got, 1e-5)
    assert not same_output(s, 1.001e-5, {**got, "gamma": s["gamma"]}, 1e-5)  # it matters


def test_momentum_is_noted_in_torch_terms():
    src = bn_layer("keras", "bn", stats(), {"epsilon": 1e-5, "momentum": 0.99})
    tgt = bn_layer("torch", "bn", stats(), {"eps": 1e-5, "momentum": 0.1})
    plans = convert(make_pair(src, tgt, "keras", "torch"))
    assert "momentum 0.99 (keras) = 0.01 torch-style, the target has 0.1: a training setting, " \
           "not a weight" in plans[0].notes
    same = bn_layer("torch", "bn", stats(), {"eps": 1e-5, "momentum": 0.01})
    plans = convert(make_pair(src, same, "keras", "torch"))
    assert not any("momentum" in n for t in plans for n in t.notes)
    assert batch_momentum(src, ParamGraph("a", "keras", "s", (src,))) == pytest.approx(0.01)


def test_equal_eps_copies_as_stored_even_through_float32():
    s = stats()
    # ONNX stores epsilon as float32: 1e-5 reads back as 9.99999975e-06
    src = bn_layer("torch", "bn", s, {"epsilon": float(np.float32(1e-5))})
    tgt = bn_layer("torch", "bn", stats(seed=3), {"eps": 1e-5})
    plans = convert(make_pair(src, tgt, "onnx", "torch"))
    assert [p.status for p in plans] == ["transferred"] * 4 and not plans[0].steps
    assert same_eps(1e-5, float(np.float32(1e-5))) and not same_eps(1e-5, 1.001e-5)


def test_scale_false_center_false_source_gets_one_and_zero():
    s = stats(roles=("moving_mean", "moving_var"))
    src = bn_layer("keras", "bn", s, {"epsilon": 1e-3, "scale": False, "center": False})
    tgt = bn_layer("torch", "bn", stats(seed=4), {"eps": 1e-5})
    pair = make_pair(src, tgt, "keras", "torch")
    plans = convert(pair)
    gamma, beta = plans[0], plans[1]
    assert gamma.status == beta.status == "synthetic"
    assert gamma.sources == ("bn/moving_variance:0",)      # 1, compensated: from var
    assert "eps 0.001->1e-05 compensated (gamma scaled)" in gamma.notes
    assert beta.value == 0.0 and "center=False" in beta.notes[0]
    got = values(plans, pair)
    assert same_output(s, 1e-3, got, 1e-5)
    # the same epsilon: plain 1 / 0
    src = bn_layer("keras", "bn", s, {"epsilon": 1e-5, "scale": False, "center": False})
    plans = convert(make_pair(src, tgt, "keras", "torch"))
    assert plans[0].value == 1.0 and not plans[0].sources and "scale=False" in plans[0].notes[0]


def test_target_without_gamma_moves_eps_into_the_variance():
    s = stats()
    src = bn_layer("torch", "bn", s, {"eps": 1e-3})
    tgt = bn_layer("keras", "bn", stats(seed=1, roles=("beta", "moving_mean", "moving_var")),
                   {"epsilon": 1e-5, "scale": False})
    pair = make_pair(src, tgt, "torch", "keras")
    plans = convert(pair)
    var = next(p for p in plans if p.target == "bn/moving_variance:0")
    assert var.steps[0].op == "bn_eps_var" and "var + 0.001 - 1e-05" in var.notes[0]
    assert any(n.startswith("decision: bn: the target BatchNorm has no gamma") for n in plans[0].notes)
    got = values(plans, pair)
    assert same_output({**s, "gamma": np.ones(6)}, 1e-3, got, 1e-5)
    # the other way the variance would go negative: refused at execution, naming the channel
    src = bn_layer("torch", "bn", s, {"eps": 1e-5})
    tgt = bn_layer("keras", "bn", stats(roles=("beta", "moving_mean", "moving_var")),
                   {"epsilon": 1e-3, "scale": False})
    pair = make_pair(src, tgt, "torch", "keras")
    with pytest.raises(PlanError, match="channel 0"):
        values(convert(pair), pair)


def test_unknown_eps_is_not_guessed_for_keras_and_assumed_for_torch():
    s = stats()
    keras_no_config = bn_layer("keras", "bn", s, {"inferred": True})
    torch_live = bn_layer("torch", "bn", stats(seed=2), {"eps": 1e-5})
    plans = convert(make_pair(keras_no_config, torch_live, "keras", "torch"))
    assert plans[0].status == "transferred"
    assert any("decision: bn: BatchNorm epsilon of the source is not stored" in n
               for n in plans[0].notes)
    torch_file = bn_layer("torch", "bn", s, {})
    keras_cfg = bn_layer("keras", "bn", stats(seed=2), {"epsilon": 1e-3})
    g = ParamGraph("a", "torch", "s", (torch_file,))
    assert epsilon_of(torch_file, g) == (1e-5, "torch default, not stored")
    plans = convert(make_pair(torch_file, keras_cfg, "torch", "keras"))
    assert plans[0].notes[0] == "eps 1e-05->0.001 compensated (gamma scaled)"
    assert any("check the assumed value" in n for n in plans[0].notes)


def ln_eval(x, v, eps):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    n = x.shape[-1]
    return (x - mu) / np.sqrt(var + eps) * v.get("gamma", np.ones(n)) + v.get("beta", np.zeros(n))


def test_layernorm_eps_is_reported_never_compensated():
    s = {"gamma": np.linspace(0.5, 1.5, 6, dtype=np.float32),
         "beta": np.linspace(-1, 1, 6, dtype=np.float32)}
    src = bn_layer("keras", "ln", s, {"epsilon": 1e-3}, op="layernorm")
    tgt = bn_layer("torch", "ln", {k: v + 1 for k, v in s.items()}, {"eps": 1e-5},
                   op="layernorm")
    pair = make_pair(src, tgt, "keras", "torch")
    plans = convert(pair)
    assert [p.status for p in plans] == ["transferred", "transferred"]
    assert "eps 0.001->1e-05 not compensated (not possible for layernorm)" in plans[0].notes
    decision = next(n for n in plans[0].notes if n.startswith("decision: "))
    assert "ln: layernorm epsilon differs (source 0.001, target 1e-05)" in decision
    got = values(plans, pair)
    # why: the error depends on the input's variance, no per-channel factor removes it
    x_small = np.random.default_rng(0).normal(0, 1e-2, (4, 6))
    x_large = np.random.default_rng(0).normal(0, 1e2, (4, 6))
    ratios = [np.abs(ln_eval(x, got, 1e-5) - ln_eval(x, s, 1e-3)).max() for x in
              (x_small, x_large)]
    assert ratios[0] > 1e-2 > 1e-6 > ratios[1]


def test_layernorm_without_scale_and_center_gets_one_and_zero():
    src = Layer("ln", "layernorm", (), {"epsilon": 1e-5, "scale": False, "center": False})
    tgt = bn_layer("torch", "ln", {"gamma": np.full(4, 3, np.float32),
                                   "beta": np.full(4, 2, np.float32)}, {"eps": 1e-5},
                   op="layernorm")
    plans = convert(make_pair(src, tgt, "keras", "torch"))
    assert [(p.status, p.value) for p in plans] == [("synthetic", 1.0), ("synthetic", 0.0)]
    assert all("keeps its output" in p.notes[0] for p in plans)
    assert not any(n.startswith("decision") for p in plans for n in p.notes)


def test_a_weight_only_state_dict_norm_into_an_rmsnorm_is_carried_and_said_to_be_assumed():
    gamma = {"gamma": np.linspace(0.5, 1.5, 6, dtype=np.float32)}
    src = bn_layer("torch", "model.norm", gamma, {"inferred": True}, op="layernorm")
    tgt = bn_layer("torch", "norm", {"gamma": np.ones(6, np.float32)}, {"eps": 1e-5},
                   op="rmsnorm")
    plans = convert(make_pair(src, tgt, "torch", "torch"))
    assert [p.status for p in plans] == ["transferred"]
    assert "decision: src: weight-only norms (a state dict does not store the norm type, and " \
           "no config.json rms_norm_eps says it) are paired with RMSNorm layers: exact only " \
           "if they are RMSNorms" in plans[0].notes
    # a LayerNorm known to be one (it has a bias) into an RMSNorm: computations differ
    ln = bn_layer("torch", "ln", {**gamma, "beta": np.zeros(6, np.float32)}, {"eps": 1e-5},
                  op="layernorm")
    plans = convert(make_pair(ln, tgt, "torch", "torch"))
    assert any("the computations differ (LayerNorm subtracts the mean" in n
               for n in plans[0].notes)
