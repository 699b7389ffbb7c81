"""Recurrent models across frameworks compute the same outputs after a port (issue 4).

* Keras 3 (Embedding, LSTM, LSTM, Bidirectional(LSTM), GRU(reset_after=True); random weights,
  non-zero biases) -> the torch Encoder in models/recurrent_torch.py (nn.Embedding,
  nn.LSTM(num_layers=2), bidirectional nn.LSTM, nn.GRU; batch_first), and back into the Keras
  model from a torch state dict;
* the torch Encoder exported with torch.onnx.export -> the torch Encoder (ONNX -> torch), and a
  torch state dict -> that ONNX file as the target, run in onnxruntime (torch -> ONNX).

Judged by outputs in float32: max |difference| / max |expected| <= 1e-5.
"""
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402

MODELS = Path(__file__).parent / "models" / "recurrent_torch.py"
V, E, U, BU, GU, T = 50, 8, 6, 5, 4, 7
TOL = 1e-5


def rel_error(got, want):
    assert np.abs(want).max() > 1e-2                  # the outputs are not trivially zero
    return float(np.abs(got - want).max() / np.abs(want).max())


def tokens(seed=0):
    return np.random.default_rng(seed).integers(1, V, size=(3, T)).astype(np.int64)


def keras_model(keras):
    """Named explicitly: Keras numbers auto-generated names per process."""
    inp = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(V, E, name="embedding")(inp)
    x = keras.layers.LSTM(U, return_sequences=True, name="lstm")(x)
    x = keras.layers.LSTM(U, return_sequences=True, name="lstm_1")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(BU, return_sequences=True),
                                   name="bidirectional")(x)
    x = keras.layers.GRU(GU, return_sequences=True, reset_after=True, name="gru")(x)
    return keras.Model(inp, x)


def torch_run(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras_model(keras)
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) if w.ndim == 1 or
                       (w.ndim == 2 and w.shape[0] == 2)               # GRU bias (2, 3u)
                       else (rng.standard_normal(w.shape) * 0.4).astype(np.float32)
                       for w in model.get_weights()])
    path = tmp_path_factory.mktemp("keras") / "encoder.keras"
    model.save(path)
    return keras, model, path


def _manifest_notes(report, name):
    return report.manifest["params"][name].get("notes", [])


def test_keras_to_torch_gives_the_same_sequences(keras_file, tmp_path, proven):
    keras, model, path = keras_file
    out = tmp_path / "encoder.safetensors"
    report = weightmap.port(path, f"{MODELS}:keras_twin", out, verify=True)
    assert len(proven(report).layers) == 4       # the two Keras LSTMs against one torch LSTM
    assert not report.new and not report.unused
    target = weightmap.read(f"{MODELS}:keras_twin").live
    target.load_state_dict(load_file(out), strict=True)
    x = tokens()
    err = rel_error(torch_run(target, x), model.predict(x.astype(np.int32), verbose=0))
    assert err <= TOL, err
    # what was done, per converted layer
    assert "gates zrh->rzn" in _manifest_notes(report, "gru.weight_hh_l0")
    assert "bias -> b_ih, b_hh=0" in _manifest_notes(report, "lstm.bias_ih_l1")
    entry = report.manifest["params"]["lstm.bias_hh_l1"]
    assert entry["status"] == "synthetic" and entry["source"] == []
    assert "lstm level 1 <- lstm_1" in _manifest_notes(report, "lstm.weight_ih_l1")
    assert any(n.startswith("padding_idx=0") for n in _manifest_notes(report, "embed.weight"))
    assert any("recurrent levels paired in order" in d for d in report.decisions)


def test_torch_to_keras_gives_the_same_sequences(keras_file, tmp_path, proven):
    keras, _, path = keras_file
    source = tmp_path / "encoder.pt"
    torch_model = weightmap.read(f"{MODELS}:randomised").live
    torch.save(torch_model.state_dict(), source)
    out = tmp_path / "encoder.weights.h5"
    report = weightmap.port(source, path, out, verify=True,
                            source_model=f"{MODELS}:randomised")
    proven(report)
    assert not report.new and not report.unused
    fresh = keras_model(keras)
    fresh.load_weights(out)
    x = tokens(1)
    err = rel_error(fresh.predict(x.astype(np.int32), verbose=0), torch_run(torch_model, x))
    assert err <= TOL, err
    gru_bias = report.manifest["params"]["layers/gru/cell/vars/2"]
    assert [t["op"] for t in gru_bias["transforms"]] == ["stack", "gate_permute"]
    assert "b_ih + b_hh -> bias" in _manifest_notes(report, "layers/lstm/cell/vars/2")


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("onnx")
    source = weightmap.read(f"{MODELS}:randomised").live
    path = folder / "encoder.onnx"
    torch.onnx.export(source, (torch.from_numpy(tokens()),), str(path), dynamo=False,
                      input_names=["tokens"], output_names=["y"])
    return source, path


def test_onnx_to_torch_gives_the_same_sequences(onnx_export, tmp_path, proven):
    source, path = onnx_export
    out = tmp_path / "from_onnx.safetensors"
    report = weightmap.port(path, f"{MODELS}:keras_twin", out, verify=True)
    proven(report)
    assert not report.new and not report.unused
    target = weightmap.read(f"{MODELS}:keras_twin").live
    target.load_state_dict(load_file(out), strict=True)
    x = tokens()
    err = rel_error(torch_run(target, x), torch_run(source, x))
    assert err <= TOL, err
    assert "gates iofc->ifgo" in _manifest_notes(report, "lstm.weight_ih_l1")
    assert "B = [Wb; Rb]: Rb -> b_hh" in _manifest_notes(report, "bilstm.bias_hh_l0_reverse")


def test_torch_to_onnx_target_runs_in_onnxruntime(onnx_export, tmp_path, proven):
    ort = pytest.importorskip("onnxruntime")
    _, template = onnx_export
    other = weightmap.read(f"{MODELS}:randomised").live
    with torch.no_grad():                       # different weights than the template holds
        for p in other.parameters():
            p.mul_(-1.5)
    source = tmp_path / "other.pt"
    torch.save(other.state_dict(), source)
    out = tmp_path / "ported.onnx"
    report = weightmap.port(source, template, out, verify=True,
                            source_model=f"{MODELS}:randomised")
    proven(report)
    assert not report.new and not report.unused
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = tokens()
    got = sess.run(None, {"tokens": x})[0]
    err = rel_error(got, torch_run(other, x))
    assert err <= TOL, err
