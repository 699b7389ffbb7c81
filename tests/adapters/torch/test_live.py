"""Reading live torch modules and state-dict objects."""
from __future__ import annotations

import numpy as np
import pytest

from weightmap.errors import UsageError
from weightmap.graph import CallableData
from weightmap_torch import ADAPTER

torch = pytest.importorskip("torch")
nn = torch.nn


class CNN(nn.Module):
    """Registration order differs from execution order on purpose."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4 * 2 * 2, 3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flat = nn.Flatten()
        self.spare = nn.Linear(2, 2)                # never called

    def forward(self, x):
        return self.head(self.flat(self.pool(torch.relu(self.bn(self.conv(x))))))


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lm_head = nn.Linear(8, 16, bias=False)
        self.wte = nn.Embedding(16, 8)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids):
        return self.lm_head(self.wte(ids))


def layer_names(graph):
    return [l.name for l in graph.layers]


class TwoInputs(CNN):
    """A forward no made-up input can run (it needs a second argument)."""

    def forward(self, x, scale):
        return super().forward(x) * scale


def test_registration_order_when_no_input_runs_the_model_and_specs():
    torch.manual_seed(0)
    model = TwoInputs()
    g = ADAPTER.read_live(model)
    assert (g.format, g.framework, g.order) == ("torch-live", "torch", "registration")
    assert g.source == "live TwoInputs"
    assert layer_names(g) == ["head", "conv", "bn", "spare"]
    assert g.meta["trace_input"].startswith("registration order: it did not run on a "
                                            "synthesized input for its stem 'conv'")
    (decision,) = g.meta["decisions"]
    assert "layers are in registration order" in decision and "example_input" in decision
    bn = g.layer("bn")
    assert (bn.op, bn.source_type, bn.attrs["eps"], bn.attrs["momentum"]) == \
        ("batchnorm", "BatchNorm2d", 1e-5, 0.1)
    assert [(p.name, p.role, p.shape, p.dtype, p.axes) for p in bn.params] == [
        ("bn.weight", "gamma", (4,), "float32", ("c",)),
        ("bn.bias", "beta", (4,), "float32", ("c",)),
        ("bn.running_mean", "moving_mean", (4,), "float32", ("c",)),
        ("bn.running_var", "moving_var", (4,), "float32", ("c",)),
        ("bn.num_batches_tracked", "num_batches_tracked", (), "int64", ())]
    conv = g.layer("conv")
    assert conv.params[0].axes == ("out", "in", "kh", "kw")
    assert conv.attrs["padding"] == (1, 1)
    assert [p.name for p in g.params()] == list(model.state_dict())
    assert g.meta["class"].endswith("TwoInputs")


def test_without_example_input_an_input_made_for_the_stem_gives_execution_order():
    g = ADAPTER.read_live(CNN())
    assert g.order == "execution" and "decisions" not in g.meta
    assert layer_names(g) == ["conv", "bn", "head", "spare"]
    assert g.meta["trace_input"] == ("synthesized input (1, 3, 224, 224) float32 for the stem "
                                     "'conv' (default size)")
    # the source graph's input size comes first (channels last, as Keras gives it)
    g = ADAPTER.read_live(CNN(), input_hint=[5, 5, 3])
    assert g.meta["trace_input"].startswith("synthesized input (1, 3, 5, 5) float32")
    assert g.layer("head").attrs["flatten_input_shape"] == (4, 2, 2)


def test_execution_order_and_flatten_shape():
    model = CNN()
    g = ADAPTER.read_live(model, example_input=torch.randn(2, 3, 5, 5), origin="model.py")
    assert g.order == "execution" and g.source == "model.py"
    assert layer_names(g) == ["conv", "bn", "head", "spare"]
    assert g.meta["not_called"] == ["spare"]
    head = g.layer("head")
    assert head.attrs["flatten_input_shape"] == (4, 2, 2)
    assert head.attrs["data_format"] == "channels_first"
    assert "flatten_input_shape" not in g.layer("spare").attrs


def test_each_weightless_module_knows_the_layer_run_before_it():
    """The boundary of ``--freeze until:pool``: execution order when traced (``pool`` runs
    after ``bn`` though registered after ``conv``), registration order when nothing runs."""
    model = CNN()
    g = ADAPTER.read_live(model, example_input=torch.randn(2, 3, 5, 5))
    assert g.meta["weightless_after"] == {"pool": "bn", "flat": "bn"}
    g = ADAPTER.read_live(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Flatten(),
                                        nn.Linear(4, 2)), example_input=None)
    assert g.meta["weightless_after"]["1"] == "0"


def test_data_is_lazy_and_equal_to_the_tensors():
    model = CNN()
    g = ADAPTER.read_live(model)
    sd = model.state_dict()
    for p in g.params():
        assert isinstance(p.data, CallableData)
        np.testing.assert_array_equal(p.read(), sd[p.name].numpy())
    # lazy: a change made after reading the graph shows up on read()
    with torch.no_grad():
        model.conv.weight.add_(1.0)
    np.testing.assert_array_equal(g.param("conv.weight").read(),
                                  model.conv.weight.detach().numpy())
    # and the array handed out is a copy: writing to it leaves the model alone
    arr = g.param("conv.bias").read()
    arr += 100
    assert not torch.equal(torch.from_numpy(arr), model.conv.bias.detach())


def test_model_is_left_as_it_was():
    model = CNN()
    model.train()
    model.bn.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ADAPTER.read_live(model, example_input=torch.randn(2, 3, 5, 5))
    assert model.training and not model.bn.training and model.conv.training
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_tied_parameters():
    model = TiedLM()
    g = ADAPTER.read_live(model, example_input=torch.tensor([[1, 2, 3]]))
    assert list(model.state_dict()) == ["lm_head.weight", "wte.weight"]
    assert layer_names(g) == ["wte", "lm_head"]                 # execution order
    assert g.param("wte.weight").tied_to == "lm_head.weight"    # first in the state dict
    assert g.param("lm_head.weight").tied_to is None
    assert g.layer("wte").params[0].role == "embeddings"
    assert g.totals()["tensors"] == 1


def test_shared_module_and_non_persistent_buffers():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = self.a
            self.register_buffer("scale", torch.ones(2), persistent=False)
            self.register_buffer("kept", torch.zeros(2))
    g = ADAPTER.read_live(Shared())
    assert [p.name for p in g.params()] == ["kept", "a.weight", "a.bias", "b.weight", "b.bias"]
    assert g.param("b.weight").tied_to == "a.weight"
    assert g.layer("<root>").op == "opaque"


def test_recurrent_and_attention_layers():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2)
            self.lstm = nn.LSTM(4, 3, bidirectional=True)
            self.norm = nn.LayerNorm(6)

        def forward(self, x):
            a, _ = self.attn(x, x, x)
            return self.norm(self.lstm(a)[0])
    g = ADAPTER.read_live(Seq(), example_input=torch.randn(5, 1, 4))
    assert layer_names(g) == ["attn", "attn.out_proj", "lstm", "norm"]
    lstm = g.layer("lstm")
    assert lstm.attrs["gate_order"] == "ifgo" and lstm.attrs["bidirectional"] is True
    assert [p.role for p in lstm.params[:4]] == ["kernel", "recurrent_kernel", "bias",
                                                 "recurrent_bias"]
    assert lstm.params[0].axes == ("out", "in")
    attn = g.layer("attn")
    assert [(p.role, p.axes) for p in attn.params] == [("in_proj_kernel", ("out", "in")),
                                                       ("in_proj_bias", ("out",))]
    # data flow from the trace; out_proj, never called itself, follows its attention layer
    assert [g.layer(n).attrs.get("fed_by") for n in layer_names(g)] == [(), None, ("attn",),
                                                                        ("lstm",)]
    from weightmap.reading.dataflow import branch_order
    assert [l.name for l in branch_order(g.layers)] == layer_names(g)


def test_opaque_layers_have_no_axis_labels():
    class GPT2Conv1D(nn.Module):           # stores (in, out): nothing should claim (out, in)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, 5))
            self.bias = nn.Parameter(torch.zeros(5))

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = GPT2Conv1D()
    layer = ADAPTER.read_live(Holder()).layer("c_attn")
    assert layer.op == "opaque" and layer.source_type == "GPT2Conv1D"
    assert [(p.role, p.axes) for p in layer.params] == [("kernel", None), ("bias", None)]


def test_half_precision_data():
    model = nn.Sequential(nn.Linear(4, 3).to(torch.bfloat16), nn.Linear(3, 2).half())
    g = ADAPTER.read_live(model)
    assert [p.dtype for p in g.params()] == ["bfloat16", "bfloat16", "float16", "float16"]
    w = g.param("0.weight").read()
    assert w.dtype.name == "bfloat16"
    np.testing.assert_array_equal(w.astype(np.float32), model[0].weight.float().detach().numpy())


def test_state_dict_object():
    model = CNN()
    sd = model.state_dict()
    g = ADAPTER.read_live(sd)
    assert (g.format, g.order, g.source) == ("torch-live", "stored",
                                             "live dict of torch tensors")
    assert layer_names(g) == ["head", "conv", "bn", "spare"]
    assert g.layer("bn").op == "batchnorm" and g.layer("bn").attrs["inferred"] is True
    for p in g.params():
        np.testing.assert_array_equal(p.read(), sd[p.name].numpy())
    wrapped = {"module." + k: v for k, v in sd.items()}
    wrapped["module.copy"] = sd["conv.weight"]
    g = ADAPTER.read_live(wrapped)
    assert g.meta["prefixes"] == ["module."]
    assert g.param("module.copy").tied_to == "module.conv.weight"


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_refusals():
    with pytest.raises(UsageError, match="not initialised"):
        ADAPTER.read_live(nn.Sequential(nn.LazyLinear(3)))
    with pytest.raises(UsageError, match="example_input"):
        ADAPTER.read_live(CNN(), example_input=torch.randn(2, 7))
    with pytest.raises(UsageError, match="meta device"):
        g = ADAPTER.read_live(nn.Linear(2, 2, device="meta"))
        g.param("weight").read()
    with pytest.raises(UsageError, match="no numpy equivalent"):
        ADAPTER.read_live({"x": torch.zeros(2, dtype=torch.complex32)})
