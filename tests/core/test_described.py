"""A weights-only source described by its model file (``source_model``): the plan uses the
model's epsilons, norm kinds and execution order, and the port computes what the source does."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.errors import UsageError  # noqa: E402
from weightmap.sources import load_python_object  # noqa: E402

# The source: `b` is created before `a` but runs after it (a state dict lists b first); its
# BatchNorm uses eps 1e-3 and its norm is an RMSNorm whose name does not say so.
SOURCE = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.b = nn.Linear(8, 8)
        self.a = nn.Linear(8, 8)
        self.ln = nn.RMSNorm(8, eps=1e-6)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x))).mean((2, 3))
        return self.head(self.ln(self.b(torch.relu(self.a(x)))))

model = Net()

def example_input():
    return torch.zeros(1, 3, 8, 8)
'''
# The target: the same computation, other names, modules created in execution order.
TARGET = '''
import torch
from torch import nn

class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(8, eps=1e-3)
        self.first = nn.Linear(8, 8)
        self.second = nn.Linear(8, 8)
        self.rms = nn.RMSNorm(8, eps=1e-6)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv(x))).mean((2, 3))
        return self.fc(self.rms(self.second(torch.relu(self.first(x)))))

model = Twin()
'''


def _trained_source(tmp_path, prefix=""):
    """The source model file and its state dict (``torch.save``: in registration order; every
    name under ``prefix``),
    with running variances of 1e-6 on some channels, where an epsilon weighs."""
    (tmp_path / "src_model.py").write_text(SOURCE)
    (tmp_path / "tgt_model.py").write_text(TARGET)
    torch.manual_seed(0)
    model, _ = load_python_object(tmp_path / "src_model.py")
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 1.5)[::2] = 1e-6
        model.bn.running_mean.normal_()
        model.bn.weight.uniform_(0.5, 1.5)
        model.ln.weight.uniform_(0.5, 1.5)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, tmp_path / "src.pt")
    return model.eval()


def _rel(tmp_path, model, out):
    twin, _ = load_python_object(tmp_path / "tgt_model.py")
    twin.load_state_dict(load_file(str(out)))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(x).numpy(), twin.eval()(x).numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("prefix", ["", "module."])
def test_the_source_model_gives_the_plan_its_facts_and_order(tmp_path, prefix):
    model = _trained_source(tmp_path, prefix)
    src, tgt = tmp_path / "src.pt", tmp_path / "tgt_model.py"
    out = tmp_path / "o.safetensors"
    guessed = weightmap.port(src, tgt, out, progress=False)
    # names alone: eps 1e-5 assumed (compensated into the gamma), b paired with first (the
    # stored order), the norm read as a LayerNorm with torch's default epsilon
    assert [d.split(":")[0] for d in guessed.decisions] == ["norm", "rms", str(src)]
    assert "epsilon compensated from source 1e-05 (torch default" in guessed.decisions[0]
    assert "weight-only norms (a state dict does not store" in guessed.decisions[2]
    assert guessed.manifest["params"]["first.weight"]["source"] == [f"{prefix}b.weight"]
    assert _rel(tmp_path, model, out) > 1e-2
    told = weightmap.port(src, tgt, out, force=True, progress=False,
                          source_model=tmp_path / "src_model.py")
    assert told.decisions == ()
    params = told.manifest["params"]
    assert params["first.weight"]["source"] == [f"{prefix}a.weight"]
    assert params["second.weight"]["source"] == [f"{prefix}b.weight"]
    assert params["norm.weight"]["status"] == "transferred"         # no epsilon compensation
    assert told.manifest["source"]["model"] == str(tmp_path / "src_model.py")
    assert _rel(tmp_path, model, out) < 1e-6


def test_plan_takes_the_source_model_too_and_a_live_one(tmp_path):
    model = _trained_source(tmp_path)
    plan = weightmap.plan(tmp_path / "src.pt", tmp_path / "tgt_model.py",
                          source_model=model)
    assert {t.target: t.sources for t in plan.tensors}["first.weight"] == ("a.weight",)
    assert plan.source["framework"] == "torch" and "model" in plan.source


def test_a_source_model_that_is_not_the_sources_is_refused(tmp_path):
    _trained_source(tmp_path)
    other = tmp_path / "other.py"
    other.write_text("from torch import nn\nmodel = nn.Sequential(nn.Linear(3, 3))\n")
    with pytest.raises(UsageError, match=r"the model built by source_model=.*other.py.* has "
                                         r"none of the source's tensor names"):
        weightmap.plan(tmp_path / "src.pt", tmp_path / "tgt_model.py",
                       source_model=str(other))
    wider = tmp_path / "wider.py"
    wider.write_text((tmp_path / "src_model.py").read_text().replace(
        "self.head = nn.Linear(8, 4)", "self.head = nn.Linear(8, 5)"))
    with pytest.raises(UsageError, match=r"2 tensor\(s\) of the source have another shape in "
                                         r"the model built by .*head.weight \(4, 8\) against "
                                         r"\(5, 8\)"):
        weightmap.plan(tmp_path / "src.pt", tmp_path / "tgt_model.py",
                       source_model=str(wider))


def test_tensors_only_one_side_has_are_said(tmp_path):
    _trained_source(tmp_path)
    state = torch.load(tmp_path / "src.pt")
    state["extra.weight"] = torch.ones(2, 2)
    del state["head.bias"]
    save_file(state, str(tmp_path / "odd.safetensors"))
    plan = weightmap.plan(tmp_path / "odd.safetensors", tmp_path / "tgt_model.py",
                          source_model=str(tmp_path / "src_model.py"))
    assert any("1 tensor(s) the model of" in d and "e.g. extra.weight" in d
               for d in plan.decisions), plan.decisions
    assert any("1 tensor(s) of the model of" in d and "e.g. head.bias" in d
               for d in plan.decisions), plan.decisions


def test_a_source_with_its_own_architecture_is_read_as_it_is(tmp_path):
    _trained_source(tmp_path)
    plan = weightmap.plan(tmp_path / "src_model.py", tmp_path / "tgt_model.py",
                          source_model=str(tmp_path / "tgt_model.py"))
    assert "model" not in plan.source
