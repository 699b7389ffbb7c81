"""Run by test_toy_adapter.py in a process of its own, with the toy distribution on sys.path
(so ``importlib.metadata`` finds its ``weightmap.adapters`` entry point): ``python
toy_checks.py torch|keras WORKDIR``. Each check ports real models of the framework into the toy
framework and back, or loads into a live toy model, and compares what the models compute.
Exits non-zero (an AssertionError) on the first difference."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import weightmap
from weightmap import registry

import toyfmt

RNG = np.random.default_rng(0)
IMAGES = RNG.standard_normal((2, 8, 8, 3)).astype(np.float32)        # n, h, w, c
SEQUENCES = RNG.standard_normal((2, 6, 3)).astype(np.float32)        # n, t, features


def close(got, want, what: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = float(np.max(np.abs(got - want)))
    assert err < 1e-4, f"{what}: max abs difference {err}"
    print(f"{what}: same outputs (max abs difference {err:.1e})")


def came_from_the_entry_point() -> None:
    assert "toy" not in registry.BUILTIN
    assert registry.adapters()["toy"] is toyfmt.ADAPTER
    assert registry.convention("toy") is toyfmt.CONVENTION


TORCH_MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])
'''


def torch_checks(work: Path) -> None:
    import torch
    from safetensors.torch import load_file

    (work / "models.py").write_text(TORCH_MODELS)
    sys.path.insert(0, str(work))
    import models

    torch.manual_seed(0)
    net, seq = models.Net().eval(), models.Seq().eval()
    torch.save(net.state_dict(), work / "net.pt")
    torch.save(seq.state_dict(), work / "seq.pt")
    with torch.no_grad():
        net_out = net(torch.from_numpy(IMAGES).permute(0, 3, 1, 2)).numpy()
        seq_out = seq(torch.from_numpy(SEQUENCES)).numpy()

    # torch -> toy: channels-first kernels into channels-last ones, gates i f g o into o i c f
    toyfmt.save(toyfmt.cnn(seed=1), work / "cnn.toy")
    toyfmt.save(toyfmt.rnn(seed=1), work / "rnn.toy")
    weightmap.port(work / "net.pt", work / "cnn.toy", out=work / "net_ported.toy")
    close(toyfmt.load(work / "net_ported.toy").forward(IMAGES), net_out, "torch CNN -> toy file")
    weightmap.port(work / "seq.pt", work / "rnn.toy", out=work / "seq_ported.toy")
    close(toyfmt.load(work / "seq_ported.toy").forward(SEQUENCES), seq_out,
          "torch LSTM -> toy file")

    # toy -> torch: a toy file read as a source, into torch model files
    for name, toy, x, make in (("Net", toyfmt.cnn(seed=2), IMAGES, models.Net),
                               ("Seq", toyfmt.rnn(seed=2), SEQUENCES, models.Seq)):
        toyfmt.save(toy, work / f"{name}_source.toy")
        out = work / f"{name}_from_toy.safetensors"
        weightmap.port(work / f"{name}_source.toy", f"{work / 'models.py'}:{name}", out=out)
        model = make().eval()
        model.load_state_dict(load_file(out))
        feed = torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)
        with torch.no_grad():
            close(model(feed).numpy(), toy.forward(x), f"toy file -> torch {name}")

    # load in place into a live toy model
    for toy, ckpt, x, want in ((toyfmt.cnn(seed=3), "net.pt", IMAGES, net_out),
                               (toyfmt.rnn(seed=3), "seq.pt", SEQUENCES, seq_out)):
        report = weightmap.load_partial(toy, work / ckpt)
        assert report.manifest["summary"]["new"] == 0, report
        close(toy.forward(x), want, f"{ckpt} loaded into a live toy model")


def keras_checks(work: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)

    def cnn():
        return keras.Sequential([keras.Input((8, 8, 3)),
                                 keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                                 keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(5, name="head")])

    def rnn():
        return keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(5, name="lstm"),
                                 keras.layers.Dense(2, name="head")])

    for name, make, x, toy_target in (("cnn", cnn, IMAGES, toyfmt.cnn),
                                      ("rnn", rnn, SEQUENCES, toyfmt.rnn)):
        model = make()
        model.save(work / f"{name}.keras")
        want = model.predict(x, verbose=0)
        # Keras -> toy: gates i f c o into o i c f
        toyfmt.save(toy_target(seed=1), work / f"{name}_target.toy")
        weightmap.port(work / f"{name}.keras", work / f"{name}_target.toy",
                       out=work / f"{name}_ported.toy")
        close(toyfmt.load(work / f"{name}_ported.toy").forward(x), want,
              f"Keras {name} -> toy file")
        # toy -> Keras, loaded in place into a live Keras model
        toy = toy_target(seed=2)
        toyfmt.save(toy, work / f"{name}_source.toy")
        fresh = make()
        weightmap.load_partial(fresh, work / f"{name}_source.toy")
        close(fresh.predict(x, verbose=0), toy.forward(x), f"toy file -> live Keras {name}")


if __name__ == "__main__":
    which, folder = sys.argv[1], Path(sys.argv[2])
    came_from_the_entry_point()
    {"torch": torch_checks, "keras": keras_checks}[which](folder)
    print("all checks passed")
