"""Keras strided SAME convolution + PReLU into torch: the weights port exactly, the report warns
that the padding differs where the torch conv pads symmetrically itself, and a torch model that
pads like TF outside the conv (no check: line, a note) gives the same outputs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import weightmap  # noqa: E402


class TorchNet(torch.nn.Module):
    def __init__(self, tf_padding: bool):
        super().__init__()
        self.tf_padding = tf_padding
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=0 if tf_padding else 1)
        self.act = torch.nn.PReLU(4)

    def forward(self, x):
        if self.tf_padding:                        # TF SAME, stride 2, even input: bottom/right
            x = torch.nn.functional.pad(x, (0, 1, 0, 1))
        return self.act(self.conv(x))


def test_strided_same_padding_is_reported_and_prelu_ports():
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((8, 8, 3)),
                           keras.layers.Conv2D(4, 3, strides=2, padding="same"),
                           keras.layers.PReLU(shared_axes=[1, 2])])
    rng = np.random.default_rng(0)
    km.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()])
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    expected = np.asarray(km(x))
    torch_x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for tf_padding in (False, True):
        tm = TorchNet(tf_padding).eval()
        report = weightmap.load_partial(tm, km)
        assert not report.new
        notes = report.manifest["params"]["conv.weight"]["notes"]
        if tf_padding:
            # the conv pads nothing itself: the padding is outside it, where no graph sees it;
            # no check: line claims a difference, a note says what makes the port exact
            assert not any("pad" in d for d in report.decisions), report.decisions
            assert any("the torch conv pads nothing itself: exact when the torch model pads "
                       "before it" in n for n in notes), notes
        else:
            assert any("pads asymmetrically" in d for d in report.decisions)
        with torch.no_grad():
            got = tm(torch_x).numpy().transpose(0, 2, 3, 1)
        err = np.abs(got - expected).max() / np.abs(expected).max()
        if tf_padding:
            assert err <= 1e-5
        else:
            assert err > 1e-3        # the warning is real: symmetric padding computes otherwise
