"""Inputs made up for a torch model without example_input (adapters/weightmap_torch/
synth_input.py): the stem, the sizes tried, the trace on stand-ins, the fallback."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from weightmap_torch import meta_trace, synth_input  # noqa: E402
from weightmap_torch.adapter import ADAPTER  # noqa: E402

nn = torch.nn


class Net(nn.Module):
    """Needs 32 x 32 images: the flatten feeds a Linear of 8*8*8 features."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8 * 8 * 8, 4)
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.conv(x)), 1))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(6, 11)
        self.emb = nn.Embedding(11, 6)
        self.pos = nn.Embedding(8, 6)

    def forward(self, ids):
        return self.out(self.emb(ids) + self.pos(torch.arange(ids.shape[1])))


def stem(model):
    return synth_input.find_stems(model, torch)[0]


def test_stems_tried_first_convolution_then_embedding_recurrent_linear():
    assert synth_input.find_stems(Net(), torch) == [
        synth_input.Stem("conv", "conv", 3, 2, dtype=torch.float32),
        synth_input.Stem("head", "linear", 512, dtype=torch.float32)]
    assert [s.path for s in synth_input.find_stems(Tokens(), torch)] == ["emb", "out"]
    mlp = nn.Sequential(nn.Linear(5, 2), nn.GRU(2, 3, batch_first=True))
    assert [s.kind for s in synth_input.find_stems(mlp, torch)] == ["recurrent", "linear"]


def test_a_later_stem_kind_runs_when_the_first_does_not():
    """A 1x1 Conv1d head created last: the input enters the Linear."""
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 6)
            self.head = nn.Conv1d(6, 2, 1)

        def forward(self, x):
            return self.head(self.inp(x).unsqueeze(-1))

    out = synth_input.synthesize(Head(), torch, None, "head.py",
                                 synth_input.run_live(Head(), torch))
    assert out.how == "synthesized input (1, 4) float32 for the stem 'inp' (in_features of inp)"


def test_sizes_come_from_the_source_graph_first_channels_first_or_last():
    conv = stem(Net())
    shapes = lambda hint: [c.shape for c in synth_input.candidates(conv, hint, torch)]
    assert shapes([3, 40, 48])[:2] == [(1, 3, 40, 48), (1, 3, 224, 224)]
    assert shapes([40, 48, 3])[0] == (1, 3, 40, 48)
    assert shapes([None, None, 3])[0] == (1, 3, 224, 224)       # unknown sizes: defaults
    assert shapes([1, 28, 28])[0] == (1, 3, 224, 224)           # another channel count
    assert (1, 3, 32, 32) in shapes(None)
    tokens = synth_input.candidates(stem(Tokens()), [5], torch)
    assert [(c.shape, c.dtype) for c in tokens] == [((1, 5), torch.int64), ((1, 8), torch.int64),
                                                    ((1, 1), torch.int64)]


def test_a_meta_model_is_traced_on_stand_ins_with_the_first_size_that_runs():
    with torch.device("meta"):
        model = Net()
    out = synth_input.synthesize(model, torch, None, "net.py",
                                 lambda xs: meta_trace.trace_first(model, xs, torch),
                                 device="meta")
    assert out.decision is None
    assert out.how == "synthesized input (1, 3, 32, 32) float32 for the stem 'conv' (default size)"
    # the trace follows torch.flatten too: the head reads the flattened 8x8x8 map
    assert out.trace.flatten_shape == {id(model.head): (8, 8, 8)}
    assert sorted(out.trace.first_call.values()) == [0, 1, 2]
    assert model.conv.weight.device.type == "meta"


def test_a_model_no_input_runs_keeps_registration_order_and_says_why():
    class Pair(Net):
        def forward(self, x, y):
            return super().forward(x) + y

    out = synth_input.synthesize(Pair(), torch, None, "pair.py",
                                 synth_input.run_live(Pair(), torch))
    assert out.trace is None and out.how.startswith("registration order")
    assert out.decision.startswith("pair.py: layers are in registration order")
    assert "stem 'conv' or 'head' (tried (1, 3, 224, 224) float32" in out.decision
    assert "missing 1 required positional argument" in out.decision
    assert "define example_input in the model file" in out.decision


def test_read_live_of_a_token_model_in_execution_order():
    g = ADAPTER.read_live(Tokens())
    assert g.order == "execution" and [l.name for l in g.layers] == ["emb", "pos", "out"]
    assert g.meta["trace_input"] == ("synthesized input (1, 8) int64 for the stem 'emb' "
                                     "(default sequence length)")


def test_one_layer_needs_no_trace():
    out = synth_input.synthesize(nn.Linear(2, 2), torch, None, "x", None)
    assert out.trace is None and out.decision is None
