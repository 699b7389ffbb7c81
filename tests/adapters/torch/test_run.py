"""Running torch modules for verification: what hooks capture, the order, loading weights."""
import numpy as np
import pytest

from weightmap.errors import VerifyError
from weightmap.graph import ParamGraph
from weightmap_torch import run as torch_run

torch = pytest.importorskip("torch")
nn = torch.nn
GRAPH = ParamGraph("arrays", "torch", "test", ())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4 * 4 * 4, 3)        # registered first, runs last
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.act(self.conv(x)))
        return self.head(torch.flatten(y, 1))


def _runner(model, **kw):
    return torch_run.run_live(model, graph=GRAPH, **kw)


def test_layer_outputs_before_an_inplace_relu_in_run_order_in_eval_mode():
    torch.manual_seed(0)
    net = Net().train()
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    run = _runner(net).run([x], ["conv", "bn", "head", "nothing"])
    with torch.no_grad():
        conv = net.conv(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(run.layers["conv"], conv)
    assert (run.layers["conv"] < 0).any()                 # taken before the in-place ReLU
    assert run.order == ["conv", "bn", "head"]
    assert run.skipped == {"nothing": "no module of this name in the model"}
    assert run.described["bn"][0] == "batchnorm"
    assert [n for n, _ in run.outputs] == ["output"]
    assert net.training and net.bn.training               # modes put back
    assert int(net.bn.num_batches_tracked) == 0            # eval: statistics untouched


def test_recurrent_output_and_what_the_module_says_about_it():
    lstm = nn.LSTM(3, 5, batch_first=True, bidirectional=True)

    class Take(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = lstm

        def forward(self, x):
            return self.rnn(x)[0]
    run = _runner(Take()).run([np.zeros((2, 7, 3), np.float32)], ["rnn"])
    assert run.layers["rnn"].shape == (2, 7, 10)
    op, attrs = run.described["rnn"]
    assert op == "lstm" and attrs["batch_first"] and attrs["bidirectional"]


def test_a_layer_called_twice_is_compared_on_its_first_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))
    run = _runner(Twice()).run([np.ones((1, 3), np.float32)], ["fc"])
    assert run.notes == ["fc ran 2 times; its first call was compared"]


def test_weights_load_as_a_user_loads_them(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(1)
    source = Net()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, path)
    mine = Net()
    before = mine.conv.weight.clone()
    runner = _runner(mine, weights=path)
    assert torch.equal(runner.module.conv.weight, source.conv.weight)
    assert torch.equal(mine.conv.weight, before)           # the caller's model is not touched
    # a wrapper prefix on every name is not the model's
    save_file({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.safetensors")
    _runner(Net(), weights=tmp_path / "dp.safetensors")
    # a .pt state dict, through torch.load(weights_only=True)
    torch.save(state, tmp_path / "w.pt")
    assert "w.pt" in _runner(Net(), weights=tmp_path / "w.pt").description


def test_weights_that_do_not_fit_are_refused(tmp_path):
    from safetensors.torch import save_file
    state = Net().state_dict()
    extra = dict(state, stray=torch.zeros(1))
    save_file(extra, tmp_path / "extra.safetensors")
    with pytest.raises(VerifyError, match="1 tensor.s. the model does not have .e.g. stray"):
        _runner(Net(), weights=tmp_path / "extra.safetensors")
    missing = {k: v for k, v in state.items() if not k.startswith("bn.")}
    save_file(missing, tmp_path / "missing.safetensors")
    with pytest.raises(VerifyError, match="model tensor.s. not in them"):
        _runner(Net(), weights=tmp_path / "missing.safetensors")
    wrong = dict(state, **{"conv.weight": torch.zeros(4, 2, 5, 5)})
    save_file(wrong, tmp_path / "shape.safetensors")
    with pytest.raises(VerifyError, match="do not fit the model"):
        _runner(Net(), weights=tmp_path / "shape.safetensors")


def test_a_head_tied_to_an_embedding_may_be_absent(tmp_path):
    from safetensors.torch import save_file

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight
    save_file({"emb.weight": torch.ones(5, 3)}, tmp_path / "t.safetensors")
    runner = _runner(Tied(), weights=tmp_path / "t.safetensors")
    assert torch.equal(runner.module.head.weight, torch.ones(5, 3))


def test_what_cannot_be_run():
    with pytest.raises(VerifyError, match="holds weights, not the code"):
        torch_run.run_file("x.pt", "torch-zip", graph=GRAPH)
    with pytest.raises(VerifyError, match="holds weights only"):
        _runner({"w": torch.zeros(1)})
    with torch.device("meta"):
        meta = Net()
    with pytest.raises(VerifyError, match="meta device"):
        _runner(meta)
    with pytest.raises(VerifyError, match="failed on the probe"):
        _runner(Net()).run([np.zeros((1, 5), np.float32)], [])


def test_inputs_from_example_input():
    example = (torch.zeros(1, 2, 4, 4), torch.zeros(3, dtype=torch.long))
    runner = _runner(Net(), example_input=example)
    specs = runner.inputs()
    assert [(s.name, s.shape, s.dtype, s.fixed) for s in specs] == [
        ("input0", (1, 2, 4, 4), "float32", False), ("input1", (3,), "int64", False)]
    with pytest.raises(VerifyError, match="verification feeds tensors"):
        _runner(Net(), example_input=[1, 2]).inputs()


def test_without_example_input_the_traced_made_up_input_is_the_spec(tmp_path):
    """A model file without example_input is traced on an input made up for its stem (the
    first size that runs: here 28 x 28, for its flatten); verification runs on that size."""
    path = tmp_path / "net.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)\n"
        "        self.fc = nn.Linear(4 * 14 * 14, 5)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))\n\n\n"
        "model = Net()\n")
    import weightmap
    graph = weightmap.read(str(path))
    assert graph.meta["trace_input_shape"] == [1, 3, 28, 28]
    spec, = torch_run.run_live(graph.live, graph=graph).inputs()
    assert (spec.shape, spec.dtype, spec.origin, spec.fixed) == ((1, 3, 28, 28), "float32",
                                                                 "made-up input", False)
