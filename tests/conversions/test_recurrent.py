"""LSTM/GRU conversions between torch, Keras and ONNX, judged by what numpy cells compute.

Every conversion runs the registered conversion on hand-built layers with random weights in the
source convention, builds the target tensors from the plan (apply_steps / synthetic values) and
checks that the target convention's numpy cell gives the source's outputs (the cells are checked
against torch, Keras and onnxruntime in test_recurrent_reference.py).
"""
from pathlib import Path
import importlib.util

import numpy as np
import pytest

from weightmap.planning.conversions import LayerPair, convert
from weightmap.planning.conversions.recurrent import DEFERRED, STACKS
from weightmap.errors import ConversionError
from weightmap.graph import Layer, ParamGraph
from weightmap.transform import apply_steps

_spec = importlib.util.spec_from_file_location(
    "recurrent_reference", Path(__file__).with_name("test_recurrent_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

N_IN, H = 3, 4
FWS = ("torch", "keras", "onnx")


def make(fw, op, rng, bidirectional=False, variant="after", bias=True, dtype=np.float64,
         attrs=None):
    """A layer in ``fw``'s convention and a function computing its outputs from its arrays."""
    dirs = 1 + bidirectional
    if fw == "torch":
        params = ref.torch_params(op, N_IN, H, rng, bidirectional=bidirectional, bias=bias,
                                  dtype=dtype)
        layer = ref.torch_layer(op, params, bidirectional=bidirectional)
        if attrs:
            layer = Layer(layer.name, op, layer.params, {**layer.attrs, **attrs})

        def run(arrays, x):
            full = dict(arrays)
            for n in list(full):
                if "weight_ih" in n and n.replace("weight_ih", "bias_ih") not in full:
                    full[n.replace("weight_ih", "bias_ih")] = np.zeros(full[n].shape[0])
                    full[n.replace("weight_ih", "bias_hh")] = np.zeros(full[n].shape[0])
            return ref.run_torch(op, full, x, bidirectional=bidirectional)
        return layer, run
    if fw == "keras":
        reset_after = variant == "after"
        cells = ref.keras_cells(op, N_IN, H, rng, bidirectional=bidirectional, bias=bias,
                                reset_after=reset_after, dtype=dtype)
        layer = ref.keras_layer(op, cells, reset_after=reset_after if op == "gru" else None,
                                attrs=attrs)
        names = layer.attrs.get("directions") or {"forward": tuple(p.name for p in layer.params)}

        def run(arrays, x):
            cells = [(d, tuple(arrays.get(n) for n in _keras_names(names[d])))
                     for d in ("forward", "backward") if d in names]
            return ref.run_keras(op, cells, x, reset_after=reset_after)
        return layer, run
    w, r, b = ref.onnx_arrays(op, N_IN, H, rng, dirs=dirs, bias=bias, dtype=dtype)
    direction = "bidirectional" if bidirectional else "forward"
    layer = ref.onnx_layer(op, w, r, b, direction=direction, lbr=int(variant == "after"),
                           attrs=attrs)

    def run(arrays, x):
        by_role = {p.role: arrays[p.name] for p in layer.params}
        bb = by_role.get("bias")
        if bb is None:
            bb = np.zeros((dirs, 2 * ref.GATES[op] * H))
        return ref.run_onnx(op, by_role["kernel"], by_role["recurrent_kernel"], bb, x,
                            direction, int(variant == "after"))
    return layer, run


def _keras_names(names):
    """(kernel, recurrent_kernel, bias-or-absent) names of one Keras cell."""
    out = list(names) + [None] * (3 - len(names))
    return out


def plan_for(src_fw, src, tgt_fw, tgt):
    sg = ParamGraph("arrays", src_fw, "src", (src,))
    tg = ParamGraph("arrays", tgt_fw, "tgt", (tgt,))
    pair = LayerPair(src, tgt, sg, tg, ())
    return convert(pair)


def produce(plans, src):
    arrays = {}
    by_name = {p.name: p for p in src.params}
    for t in plans:
        assert t.status != "new", (t.target, t.notes)
        if t.status == "synthetic":
            arrays[t.target] = np.full(t.shape, t.value)
        else:
            arrays[t.target] = apply_steps(t.steps, [by_name[s].read() for s in t.sources])
        assert arrays[t.target].shape == t.shape
    return arrays


def check_same_outputs(src_fw, tgt_fw, op, bidirectional, variant="after", seed=0, **kw):
    rng = np.random.default_rng(seed)
    src, run_src = make(src_fw, op, rng, bidirectional, variant, **kw)
    tgt, run_tgt = make(tgt_fw, op, rng, bidirectional, variant)
    plans = plan_for(src_fw, src, tgt_fw, tgt)
    assert [t.target for t in plans] == [p.name for p in tgt.params]
    x = rng.standard_normal((2, 5, N_IN))
    want = run_src({p.name: p.read() for p in src.params}, x)
    got = run_tgt(produce(plans, src), x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    return plans


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("op", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("src_fw", FWS)
@pytest.mark.parametrize("tgt_fw", FWS)
def test_every_direction_computes_the_same(src_fw, tgt_fw, op, bidirectional):
    check_same_outputs(src_fw, tgt_fw, op, bidirectional)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("src_fw,tgt_fw", [("keras", "onnx"), ("onnx", "keras"),
                                           ("keras", "keras"), ("onnx", "onnx")])
def test_gru_reset_before_converts_between_keras_and_onnx(src_fw, tgt_fw, bidirectional):
    """Keras reset_after=False and ONNX linear_before_reset=0 are the same function."""
    check_same_outputs(src_fw, tgt_fw, "gru", bidirectional, variant="before")


@pytest.mark.parametrize("tgt_fw", FWS)
@pytest.mark.parametrize("src_fw", FWS)
def test_a_source_without_biases_gives_zero_biases(src_fw, tgt_fw):
    plans = check_same_outputs(src_fw, tgt_fw, "lstm", True, bias=False)
    biases = [t for t in plans if "bias" in t.target or t.target.endswith(".B")]
    assert biases and all(t.status == "synthetic" and t.value == 0.0 for t in biases)


def _by_leaf(plans):
    return {t.target.rsplit(".", 1)[-1].rsplit("/", 1)[-1]: t for t in plans}


def test_keras_lstm_to_torch_reports_what_it_did():
    plans = check_same_outputs("keras", "torch", "lstm", False)
    t = _by_leaf(plans)
    assert "kernel in,out -> out,in" in t["weight_ih_l0"].notes
    assert "gates ifco->ifgo (same order, g = c)" in t["weight_ih_l0"].notes
    assert [s.op for s in t["weight_ih_l0"].steps] == ["transpose"]
    assert t["bias_ih_l0"].status == "transformed" and not t["bias_ih_l0"].steps
    assert "bias -> b_ih, b_hh=0" in t["bias_ih_l0"].notes
    assert t["bias_hh_l0"].status == "synthetic" and t["bias_hh_l0"].value == 0.0
    assert not t["bias_hh_l0"].sources


def test_keras_gru_to_torch_swaps_r_and_z_and_splits_the_bias_rows():
    plans = check_same_outputs("keras", "torch", "gru", False)
    t = _by_leaf(plans)
    perm = [s.args["perm"] for s in t["weight_hh_l0"].steps if s.op == "gate_permute"]
    assert perm == [[1, 0, 2]] and "gates zrh->rzn" in t["weight_hh_l0"].notes
    assert t["bias_ih_l0"].steps[0].describe() == "take(axis=0, index=0)"
    assert t["bias_hh_l0"].steps[0].describe() == "take(axis=0, index=1)"
    assert "bias row 1 (recurrent) -> b_hh" in t["bias_hh_l0"].notes


def test_torch_lstm_to_onnx_permutes_blocks_0_3_1_2_and_packs_the_biases():
    plans = check_same_outputs("torch", "onnx", "lstm", True)
    t = _by_leaf(plans)
    w = t["W"]
    assert w.sources == ("rnn.weight_ih_l0", "rnn.weight_ih_l0_reverse")
    assert [s.describe() for s in w.steps] == [
        "stack(axis=0)", f"gate_permute(axis=1, perm=[0, 3, 1, 2], units={H})"]
    assert t["B"].sources == ("rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.bias_ih_l0_reverse",
                              "rnn.bias_hh_l0_reverse")
    assert "gates ifgo->iofc" in w.notes


def test_torch_lstm_to_keras_sums_the_biases():
    plans = check_same_outputs("torch", "keras", "lstm", False)
    bias = _by_leaf(plans)["bias"]
    assert bias.sources == ("rnn.bias_ih_l0", "rnn.bias_hh_l0")
    assert [s.op for s in bias.steps] == ["sum"] and "b_ih + b_hh -> bias" in bias.notes


def test_same_convention_copies_without_steps():
    for fw in FWS:
        plans = check_same_outputs(fw, fw, "gru", True)
        assert all(t.status == "transferred" and not t.steps for t in plans), fw


def test_float64_into_float32_casts_and_says_so():
    rng = np.random.default_rng(5)
    src, _ = make("keras", "lstm", rng, dtype=np.float64)
    tgt, _ = make("torch", "lstm", rng, dtype=np.float32)
    plans = plan_for("keras", src, "torch", tgt)
    k = _by_leaf(plans)["weight_ih_l0"]
    assert k.steps[-1].describe() == "cast(dtype=float32)"
    assert "dtype float64 -> float32" in k.notes
    assert apply_steps(k.steps, [src.params[0].read()]).dtype == np.float32


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize("src_fw,src_variant,tgt_fw,tgt_variant,words", [
    ("keras", "before", "torch", "after", "reset_after=False"),
    ("onnx", "before", "torch", "after", "linear_before_reset=0"),
    ("torch", "after", "keras", "before", "reset_after=False"),
    ("keras", "after", "onnx", "before", "linear_before_reset=0"),
    ("onnx", "after", "keras", "before", "reset_after=False"),
])
def test_gru_variants_that_differ_are_refused(src_fw, src_variant, tgt_fw, tgt_variant, words):
    rng = np.random.default_rng(0)
    src, _ = make(src_fw, "gru", rng, variant=src_variant)
    tgt, _ = make(tgt_fw, "gru", rng, variant=tgt_variant)
    with pytest.raises(ConversionError, match="compute different functions") as info:
        plan_for(src_fw, src, tgt_fw, tgt)
    assert words in info.value.message and "reset gate" in info.value.message
    assert "same variant" in info.value.hint


@pytest.mark.parametrize("src_fw,attrs,tgt_fw,words", [
    ("keras", {"activation": "relu"}, "torch", "activations"),
    ("keras", {"recurrent_activation": "hard_sigmoid"}, "onnx", "activations"),
    ("onnx", {"clip": 3.0}, "torch", "clip"),
    ("onnx", {"input_forget": 1}, "keras", "input_forget"),
    ("onnx", {"activations": ["Sigmoid", "Relu", "Relu"]}, "torch", "activations"),
    ("torch", {"proj_size": 2}, "keras", "projection"),
])
def test_layers_computing_other_functions_are_refused(src_fw, attrs, tgt_fw, words):
    rng = np.random.default_rng(0)
    src, _ = make(src_fw, "lstm", rng, attrs=attrs)
    tgt, _ = make(tgt_fw, "lstm", rng)
    with pytest.raises(ConversionError, match=words):
        plan_for(src_fw, src, tgt_fw, tgt)


def test_onnx_lstm_with_peepholes_is_refused():
    rng = np.random.default_rng(0)
    w, r, b = ref.onnx_arrays("lstm", N_IN, H, rng)
    layer = ref.onnx_layer("lstm", w, r, b)
    p = ref.param("onnx", "lstm", "/rnn/LSTM.P", "other", rng.standard_normal((1, 3 * H)))
    src = Layer(layer.name, "lstm", layer.params + (p,), layer.attrs)
    tgt, _ = make("torch", "lstm", rng)
    with pytest.raises(ConversionError, match="peepholes"):
        plan_for("onnx", src, "torch", tgt)


def test_directions_must_agree():
    rng = np.random.default_rng(0)
    src, _ = make("torch", "lstm", rng, bidirectional=True)
    tgt, _ = make("keras", "lstm", rng, bidirectional=False)
    with pytest.raises(ConversionError, match="directions forward/backward"):
        plan_for("torch", src, "keras", tgt)


def test_sizes_must_agree():
    rng = np.random.default_rng(0)
    src, _ = make("keras", "gru", rng)
    params = ref.torch_params("gru", N_IN, H + 1, rng)
    tgt = ref.torch_layer("gru", params)
    with pytest.raises(ConversionError, match=f"{H} units on {N_IN} inputs"):
        plan_for("keras", src, "torch", tgt)


def test_a_target_without_biases_refuses_a_biased_source():
    rng = np.random.default_rng(0)
    src, _ = make("keras", "lstm", rng)
    tgt, _ = make("torch", "lstm", rng, bias=False)
    with pytest.raises(ConversionError, match="no biases"):
        plan_for("keras", src, "torch", tgt)


def test_stacks_of_different_depth_are_left_to_the_plan_pass():
    rng = np.random.default_rng(0)
    src, _ = make("keras", "lstm", rng)
    params = ref.torch_params("lstm", N_IN, H, rng, num_layers=2)
    tgt = ref.torch_layer("lstm", params, num_layers=2)
    plans = plan_for("keras", src, "torch", tgt)
    assert len(plans) == 8
    assert all(t.status == "new" and t.pending == STACKS and t.notes[0].startswith(DEFERRED)
               for t in plans)
    assert "2 level(s) here, 1 in 'rnn'" in plans[0].notes[0]


def test_simple_rnn_nonlinearity_must_agree():
    rng = np.random.default_rng(0)
    src, _ = make("torch", "simple_rnn", rng, attrs={"nonlinearity": "relu"})
    tgt, _ = make("keras", "simple_rnn", rng)
    with pytest.raises(ConversionError, match="activations=relu"):
        plan_for("torch", src, "keras", tgt)
