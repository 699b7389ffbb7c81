"""torch → Keras: a .weights.h5 that load_weights accepts, computing what the torch model does."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import weightmap  # noqa: E402
from weightmap.errors import UndecidableError  # noqa: E402
from weightmap.sources import load_python_object  # noqa: E402

MODELS = Path(__file__).parent / "models"
TORCH = MODELS / "small_cnn_torch.py"
KERAS = MODELS / "small_cnn_keras.py"


def _torch_model():
    return load_python_object(TORCH, "model")[0]


def _outputs(tmodel, kmodel):
    x = np.random.default_rng(0).standard_normal((2, 12, 12, 3)).astype(np.float32)
    with torch.no_grad():
        t = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return t, np.asarray(kmodel(x))


def test_torch_state_dict_into_keras_weights_h5(tmp_path):
    tmodel = _torch_model()
    src = tmp_path / "cnn.pt"
    torch.save(tmodel.state_dict(), src)
    out = tmp_path / "cnn.weights.h5"
    report = weightmap.port(src, KERAS, out)
    assert not report.new and not report.unused
    assert (tmp_path / "cnn.manifest.json").exists()
    kmodel = load_python_object(KERAS, "model")[0]
    kmodel.load_weights(out)
    t, k = _outputs(tmodel, kmodel)
    assert np.abs(t - k).max() / np.abs(t).max() <= 1e-5
    # a bare state dict does not know the feature map: the Keras target's graph does
    notes = report.manifest["params"]["layers/dense/vars/0"]["notes"]
    assert any("flatten CHW (8, 4, 4) -> HWC (4, 4, 8) (target graph)" in n for n in notes), notes


def test_load_partial_into_a_live_keras_model_and_template_output(tmp_path):
    tmodel = _torch_model()
    kmodel = load_python_object(KERAS, "model")[0]
    report = weightmap.load_partial(kmodel, tmodel)
    assert len(report.transferred) == 8 and not report.new
    t, k = _outputs(tmodel, kmodel)
    assert np.abs(t - k).max() / np.abs(t).max() <= 1e-5
    # the same model saved as a file is a template: its datasets are overwritten in a copy
    template = tmp_path / "template.weights.h5"
    fresh = load_python_object(KERAS, "model")[0]
    fresh.save_weights(template)
    out = tmp_path / "from_template.weights.h5"
    # a bare weights file knows no feature map, nor does an untraced model: the port stops
    # rather than guess what the dense layer reads (a square grid from channel counts) ...
    with pytest.raises(UndecidableError, match="neither graph says") as caught:
        weightmap.port(tmodel, template, out)
    assert "example_input" in str(caught.value) and not out.exists()
    # ... and goes through once the torch side is traced
    traced = weightmap.read(tmodel, example_input=torch.zeros(1, 3, 12, 12))
    weightmap.port(traced, template, out)
    fresh.load_weights(out)
    t, k = _outputs(tmodel, fresh)
    assert np.abs(t - k).max() / np.abs(t).max() <= 1e-5


def test_port_into_a_live_keras_model_restores_its_weights(tmp_path):
    kmodel = load_python_object(KERAS, "model")[0]
    before = [w.copy() for w in kmodel.get_weights()]
    weightmap.port(_torch_model(), kmodel, tmp_path / "x.weights.h5")
    for a, b in zip(before, kmodel.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_freeze_follows_the_manifest(tmp_path):
    import weightmap.keras as wmk
    kmodel = load_python_object(KERAS, "model")[0]
    report = weightmap.load_partial(kmodel, _torch_model(), freeze="first:2")
    result = wmk.freeze(kmodel, report.manifest)
    convs = tuple(l.name for l in kmodel.layers if l.weights)[:2]
    assert result.frozen == convs and result.mixed == ()
    assert [l.trainable for l in kmodel.layers if l.weights] == [False, False, True, True]
    assert len(kmodel.trainable_weights) == 4


TORCH_EPS = '''
import torch
from torch import nn

model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False),
                      nn.BatchNorm2d(8, eps=1e-3, momentum=0.01), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

def example_input():
    return torch.zeros(1, 3, 6, 6)
'''
KERAS_EPS = '''
import keras
L = keras.layers
inp = keras.Input((6, 6, 3))
x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
x = L.BatchNormalization(epsilon=1e-3, momentum=0.99, name="bn")(x)
x = L.ReLU()(x)
x = L.GlobalAveragePooling2D()(x)
model = keras.Model(inp, L.Dense(4, name="fc")(x))
'''


def test_a_state_dict_with_its_source_model_ports_exactly_without_verify(tmp_path, capsys):
    """A torch state dict of a model with BatchNorm eps 1e-3 (as torchvision's MobileNetV3):
    alone, the epsilon is assumed to be torch's 1e-5 and 'compensated' into the gammas; with
    --source-model the plan knows it is 1e-3, and the Keras model computes what torch does."""
    from weightmap.cli import main
    (tmp_path / "torch_net.py").write_text(TORCH_EPS)
    (tmp_path / "keras_net.py").write_text(KERAS_EPS)
    torch.manual_seed(0)
    tmodel = load_python_object(tmp_path / "torch_net.py", "model")[0].eval()
    with torch.no_grad():
        tmodel[1].running_var.uniform_(0.5, 1.5)[::2] = 1e-6   # where the epsilon weighs
        tmodel[1].running_mean.normal_()
    torch.save(tmodel.state_dict(), tmp_path / "sd.pt")
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    def ported(*extra):
        out = tmp_path / "k.weights.h5"
        assert main(["port", str(tmp_path / "sd.pt"), "--to", str(tmp_path / "keras_net.py"),
                     "--out", str(out), "--force", *extra]) == 0
        kmodel = load_python_object(tmp_path / "keras_net.py", "model")[0]
        kmodel.load_weights(out)
        return np.abs(np.asarray(kmodel(x)) - want).max() / np.abs(want).max()

    assert ported() > 1e-3
    assert "epsilon compensated from source 1e-05 (torch default" in capsys.readouterr().out
    assert ported("--source-model", str(tmp_path / "torch_net.py")) <= 1e-5
    assert "check:" not in capsys.readouterr().out
