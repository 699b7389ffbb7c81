"""The recurrent_stacks plan pass: levels paired across layers (torch num_layers=2 against two
Keras layers, torch against the exporter's one ONNX node per level), judged by numpy cells."""
from pathlib import Path
import importlib.util

import numpy as np
import pytest

from weightmap.graph import Layer, ParamGraph
from weightmap.match import match
from weightmap.planning.build import build_plan
from weightmap.transform import apply_steps

_spec = importlib.util.spec_from_file_location(
    "recurrent_reference", Path(__file__).with_name("test_recurrent_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

N_IN, H = 3, 4


def plan(src_fw, src_layers, tgt_fw, tgt_layers):
    sg = ParamGraph("arrays", src_fw, "src", tuple(src_layers), order="execution")
    tg = ParamGraph("arrays", tgt_fw, "tgt", tuple(tgt_layers), order="execution")
    p = build_plan(sg, tg, match(sg, tg))
    p.check(sg, tg)
    return sg, tg, p


def produce(p, sg):
    src = {q.name: q for q in sg.params()}
    out = {}
    for t in p.tensors:
        if t.status == "synthetic":
            out[t.target] = np.full(t.shape, t.value)
        elif t.status != "new":
            out[t.target] = apply_steps(t.steps, [src[s].read() for s in t.sources])
    return out


def keras_stack(rng, widths, bidirectional=False, op="lstm", names=None):
    layers, cells_all = [], []
    for i, n_in in enumerate(widths):
        cells = ref.keras_cells(op, n_in, H, rng, bidirectional=bidirectional)
        name = (names or [f"{op}" + (f"_{i}" if i else "") for i in range(len(widths))])[i]
        layers.append(ref.keras_layer(op, cells, name=name,
                                      reset_after=True if op == "gru" else None))
        cells_all.append(cells)
    return layers, cells_all


def run_keras_stack(op, cells_all, x):
    for cells in cells_all:
        x = ref.run_keras(op, cells, x)
    return x


def test_two_keras_lstms_into_torch_num_layers_2():
    rng = np.random.default_rng(0)
    src_layers, cells = keras_stack(rng, [N_IN, H])
    tparams = ref.torch_params("lstm", N_IN, H, rng, num_layers=2)
    tgt = ref.torch_layer("lstm", tparams, name="rnn", num_layers=2)
    sg, tg, p = plan("keras", src_layers, "torch", [tgt])
    assert p.counts()["new"] == 0 and not p.unused
    by = {t.target: t for t in p.tensors}
    assert by["rnn.weight_ih_l1"].sources == ("lstm_1/cell/kernel",)
    assert by["rnn.weight_ih_l1"].match["strategy"] == "stack"
    assert "rnn level 1 <- lstm_1" in by["rnn.weight_ih_l1"].notes
    assert any("recurrent levels paired in order" in d and "rnn level 1 <- lstm_1" in d
               for d in p.decisions)
    x = rng.standard_normal((2, 5, N_IN))
    got = ref.run_torch("lstm", produce(p, sg), x, num_layers=2)
    np.testing.assert_allclose(got, run_keras_stack("lstm", cells, x), rtol=1e-12)


def test_torch_bidirectional_stack_into_two_keras_bidirectional_layers():
    rng = np.random.default_rng(1)
    sparams = ref.torch_params("gru", N_IN, H, rng, num_layers=2, bidirectional=True)
    src = ref.torch_layer("gru", sparams, name="rnn", num_layers=2, bidirectional=True)
    tgt_layers, _ = keras_stack(rng, [N_IN, 2 * H], bidirectional=True, op="gru",
                                names=["bidirectional", "bidirectional_1"])
    sg, tg, p = plan("torch", [src], "keras", tgt_layers)
    assert p.counts()["new"] == 0 and not p.unused
    arrays = produce(p, sg)
    cells = [[(d, tuple(arrays[n] for n in layer.attrs["directions"][d]))
              for d in ("forward", "backward")] for layer in tgt_layers]
    x = rng.standard_normal((2, 5, N_IN))
    want = ref.run_torch("gru", sparams, x, num_layers=2, bidirectional=True)
    np.testing.assert_allclose(run_keras_stack("gru", cells, x), want, rtol=1e-12)


def _onnx_export_like(rng):
    """What torch.onnx.export writes for LSTM(num_layers=2, bidirectional) + GRU: one node per
    level, W/R/B with a directions axis."""
    a = ref.onnx_arrays("lstm", N_IN, H, rng, dirs=2)
    b = ref.onnx_arrays("lstm", 2 * H, H, rng, dirs=2)
    g = ref.onnx_arrays("gru", 2 * H, H, rng, dirs=1)
    layers = [ref.onnx_layer("lstm", *a, name="/lstm/LSTM", direction="bidirectional"),
              ref.onnx_layer("lstm", *b, name="/lstm/LSTM_1", direction="bidirectional"),
              ref.onnx_layer("gru", *g, name="/gru/GRU")]
    return layers, (a, b, g)


def _torch_target(rng):
    lp = ref.torch_params("lstm", N_IN, H, rng, num_layers=2, bidirectional=True,
                          prefix="lstm.")
    gp = ref.torch_params("gru", 2 * H, H, rng, prefix="gru.")
    return [ref.torch_layer("lstm", lp, name="lstm", num_layers=2, bidirectional=True),
            ref.torch_layer("gru", gp, name="gru")]


def test_onnx_nodes_per_level_into_torch():
    rng = np.random.default_rng(2)
    src_layers, (a, b, g) = _onnx_export_like(rng)
    sg, tg, p = plan("onnx", src_layers, "torch", _torch_target(rng))
    assert p.counts()["new"] == 0 and not p.unused
    arrays = produce(p, sg)
    x = rng.standard_normal((2, 5, N_IN))
    want = ref.run_onnx("gru", *g, ref.run_onnx("lstm", *b, ref.run_onnx(
        "lstm", *a, x, "bidirectional"), "bidirectional"))
    got = ref.run_torch("gru", arrays, ref.run_torch("lstm", arrays, x, num_layers=2,
                                                     bidirectional=True, prefix="lstm."),
                        prefix="gru.")
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_torch_into_onnx_nodes_per_level():
    rng = np.random.default_rng(3)
    tgt_layers, _ = _onnx_export_like(rng)
    src_layers = _torch_target(rng)
    sg, tg, p = plan("torch", src_layers, "onnx", tgt_layers)
    assert p.counts()["new"] == 0 and not p.unused
    arrays = produce(p, sg)
    src = {q.name: q.read() for q in sg.params()}
    x = rng.standard_normal((2, 5, N_IN))
    want = ref.run_torch("gru", src, ref.run_torch("lstm", src, x, num_layers=2,
                                                   bidirectional=True, prefix="lstm."),
                         prefix="gru.")
    y = x
    for layer in tgt_layers:
        w, r, b = (arrays[q.name] for q in layer.params)
        y = ref.run_onnx(layer.op, w, r, b, y, layer.attrs["direction"])
    np.testing.assert_allclose(y, want, rtol=1e-12)


def test_levels_are_not_guessed_when_counts_differ():
    rng = np.random.default_rng(4)
    src_layers, _ = keras_stack(rng, [N_IN, H, H])
    tgt = ref.torch_layer("lstm", ref.torch_params("lstm", N_IN, H, rng, num_layers=2),
                          name="rnn", num_layers=2)
    sg, tg, p = plan("keras", src_layers, "torch", [tgt])
    assert p.counts()["new"] == 8
    assert any("not paired" in d and "2 vs 3 levels" in d for d in p.decisions)
    assert len(p.unused) == 9


def test_anchors_bound_the_levels_a_run_may_take():
    """A dense layer matched between two source LSTMs keeps the second one out of reach."""
    rng = np.random.default_rng(5)
    s1, _ = keras_stack(rng, [N_IN], names=["lstm_a"])
    s2, _ = keras_stack(rng, [7], names=["lstm_b"])
    k = ref.param("keras", "dense", "fc/kernel", "kernel", rng.standard_normal((H, 7)))
    dense_s = Layer("fc", "dense", (k,), {})
    tgt = ref.torch_layer("lstm", ref.torch_params("lstm", N_IN, H, rng, num_layers=2),
                          name="rnn", num_layers=2)
    w = ref.param("torch", "dense", "fc.weight", "kernel", rng.standard_normal((7, H)))
    dense_t = Layer("fc", "dense", (w,), {})
    sg, tg, p = plan("keras", s1 + [dense_s] + s2, "torch", [tgt, dense_t])
    by = {t.target: t for t in p.tensors}
    assert by["fc.weight"].status == "transformed"
    assert all(by[n].status == "new" for n in by if n.startswith("rnn."))
    assert any("2 vs 1 levels" in d and "before fc" in d for d in p.decisions)


def test_a_refused_level_stays_new_and_says_why():
    rng = np.random.default_rng(6)
    g = ref.onnx_arrays("gru", N_IN, H, rng)
    src = ref.onnx_layer("gru", *g, name="/gru/GRU", lbr=0)
    tgt = ref.torch_layer("gru", ref.torch_params("gru", N_IN, H, rng), name="gru")
    sg, tg, p = plan("onnx", [src], "torch", [tgt])
    assert p.counts()["new"] == 4
    assert all(t.notes[0].startswith("conversion failed: onnx /gru/GRU (linear_before_reset=0)")
               for t in p.tensors)
    assert any(d.startswith("gru: not converted:") for d in p.decisions)


@pytest.mark.parametrize("direction", ["keras", "torch"])
def test_matched_pairs_of_equal_depth_need_no_pass(direction):
    rng = np.random.default_rng(7)
    src_layers, _ = keras_stack(rng, [N_IN])
    tgt = ref.torch_layer("lstm", ref.torch_params("lstm", N_IN, H, rng), name="lstm")
    if direction == "keras":
        sg, tg, p = plan("keras", src_layers, "torch", [tgt])
    else:
        sg, tg, p = plan("torch", [tgt], "keras", src_layers)
    assert p.counts()["new"] == 0
    assert {t.match["strategy"] for t in p.tensors} != {"stack"}
    assert not any("paired in order" in d for d in p.decisions)
