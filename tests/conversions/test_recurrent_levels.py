"""Levels and cells of recurrent layers as the real readers describe them (torch live modules and
state dicts, Keras 3 and tf_keras files, ONNX exports)."""
import numpy as np
import pytest

import weightmap
from weightmap.planning.conversions.recurrent_levels import levels, semantics
from weightmap.errors import ConversionError
from weightmap.graph import Layer, ParamGraph


def _levels(graph, name):
    return levels(graph.layer(name), graph)


def _torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = torch.nn.GRU(8, 5, batch_first=True)

        def forward(self, x):
            return self.gru(self.lstm(x)[0])[0]
    return M().eval(), torch


def test_torch_live_and_state_dict_levels(tmp_path):
    model, torch = _torch_model()
    live = weightmap.read(model)
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    stored = weightmap.read(path)
    for graph in (live, stored):
        lv = _levels(graph, "lstm")
        assert [(l.number, l.directions, l.units, l.input_size) for l in lv] == [
            (0, ("forward", "backward"), 4, 3), (1, ("forward", "backward"), 4, 8)]
        back = lv[1].cells[1]
        assert (back.kernel.name, back.recurrent_kernel.name, back.bias.name,
                back.recurrent_bias.name) == ("lstm.weight_ih_l1_reverse",
                                              "lstm.weight_hh_l1_reverse",
                                              "lstm.bias_ih_l1_reverse",
                                              "lstm.bias_hh_l1_reverse")
        assert lv[0].gate_order(raw=True) == "ifgo" and lv[0].gate_order() == "ifco"
        assert lv[1].label() == "lstm level 1"
        (gru,) = _levels(graph, "gru")
        assert gru.gate_order() == "rzh" and semantics(gru) == {
            "activations": ("sigmoid", "tanh"), "reset": "after"}


def test_keras3_bidirectional_and_gru_variants(tmp_path):
    keras = pytest.importorskip("keras")
    inp = keras.Input((5, 3))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True),
                                   name="bidirectional")(inp)
    x = keras.layers.GRU(2, return_sequences=True, reset_after=False, name="gru")(x)
    path = tmp_path / "m.keras"
    keras.Model(inp, x).save(path)
    graph = weightmap.read(path)
    (bi,) = _levels(graph, "bidirectional")
    assert bi.directions == ("forward", "backward") and (bi.units, bi.input_size) == (4, 3)
    assert bi.cells[1].kernel.name == "layers/bidirectional/backward_layer/cell/vars/0"
    assert bi.cells[1].bias.shape == (16,) and bi.cells[1].recurrent_bias is None
    (gru,) = _levels(graph, "gru")
    assert semantics(gru)["reset"] == "before" and gru.gate_order() == "zrh"
    assert semantics(bi)["activations"] == ("sigmoid", "tanh", "tanh")


def test_tf_keras_h5_bidirectional(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    inp = tf_keras.Input((5, 3))
    x = tf_keras.layers.Bidirectional(tf_keras.layers.GRU(4, return_sequences=True))(inp)
    path = tmp_path / "m.h5"
    tf_keras.Model(inp, x).save(path, save_format="h5")
    graph = weightmap.read(path)
    (bi,) = _levels(graph, graph.layers[-1].name)
    assert bi.directions == ("forward", "backward")
    assert "backward" in bi.cells[1].kernel.name and bi.cells[1].bias.shape == (2, 12)
    assert semantics(bi)["reset"] == "after"


def test_onnx_export_one_level_per_node(tmp_path):
    model, torch = _torch_model()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 5, 3),), str(path), dynamo=False)
    graph = weightmap.read(path)
    rec = [l for l in graph.layers if l.op in ("lstm", "gru")]
    assert [l.op for l in rec] == ["lstm", "lstm", "gru"]
    lv = [levels(l, graph) for l in rec]
    assert [len(x) for x in lv] == [1, 1, 1]
    first = lv[0][0]
    assert first.directions == ("forward", "backward") and (first.units, first.input_size) == (4, 3)
    assert [c.index for c in first.cells] == [0, 1] and first.cells[1].kernel.shape == (2, 16, 3)
    assert first.gate_order() == "iofc" and semantics(lv[2][0])["reset"] == "after"


def _onnx_layer(direction, dirs, extra=()):
    from weightmap.graph import ArrayData, Param
    w = Param("W", "kernel", (dirs, 8, 3), "float32", ("dir", "out", "in"),
              ArrayData(np.zeros((dirs, 8, 3), np.float32)))
    r = Param("R", "recurrent_kernel", (dirs, 8, 2), "float32", ("dir", "out", "in"),
              ArrayData(np.zeros((dirs, 8, 2), np.float32)))
    return Layer("/l/LSTM", "lstm", (w, r) + tuple(extra), {"direction": direction})


def test_onnx_reverse_is_a_backward_cell_and_mismatches_are_refused():
    g = ParamGraph("onnx", "onnx", "x", (_onnx_layer("reverse", 1),))
    (lv,) = levels(g.layers[0], g)
    assert lv.directions == ("backward",)
    bad = ParamGraph("onnx", "onnx", "x", (_onnx_layer("forward", 2),))
    with pytest.raises(ConversionError, match="holds 2 direction"):
        levels(bad.layers[0], bad)


def test_non_recurrent_layers_have_no_levels():
    g = ParamGraph("arrays", "torch", "x", (Layer("fc", "dense"),))
    assert levels(g.layers[0], g) == []
