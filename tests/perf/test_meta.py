"""Torch target files built on the meta device (adapters/weightmap_torch/meta.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from weightmap.reading.read import read  # noqa: E402
from weightmap_torch import meta  # noqa: E402

REORDERED = '''
class Net(nn.Module):
    """Registered head first, executed last: only a trace gives the execution order."""
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6 * 4 * 4, 5)
        self.conv = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.flat = nn.Flatten()

    def forward(self, x):
        return self.head(self.flat(self.bn(self.conv(x))))


def model():
    torch.manual_seed(0)
    return Net()


def example_input():
    return torch.zeros(1, 3, 6, 6)
'''


def test_meta_graph_describes_the_same_model_as_a_normal_read(model_file):
    path = model_file("reordered", REORDERED)
    lazy, normal = read(path, lazy=True), read(path)
    assert lazy.meta["construction"] == "meta"
    assert lazy.order == normal.order == "execution"
    assert [l.name for l in lazy.layers] == ["conv", "bn", "head"]
    want, got = normal.describe(), lazy.describe()
    got["meta"].pop("construction")
    assert got == want                              # names, shapes, dtypes, ops, flatten shape
    assert lazy.layer("head").attrs["flatten_input_shape"] == (6, 4, 4)
    state = lazy.live.state_dict(keep_vars=True)
    assert all(t.device.type == "meta" for t in state.values())      # nothing allocated


def test_meta_values_are_a_normal_construction_when_read(model_file):
    path = model_file("reordered", REORDERED)
    lazy, normal = read(path, lazy=True), read(path)
    for p in normal.params():
        got = lazy.param(p.name).read()
        assert got.dtype == p.read().dtype
        assert got.tobytes() == p.read().tobytes(), p.name
    assert set(lazy.param("head.weight").data.materialiser.how.values()) == {"constructed"}


def test_a_file_that_cannot_run_on_meta_is_built_normally(model_file):
    path = model_file("needs_values", '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = float(self.fc.weight.abs().max().item())   # needs real values


model = Net
''')
    graph = read(path, lazy=True)
    assert graph.meta["construction"].startswith("normal (the file cannot run on the meta device")
    assert graph.param("fc.weight").read().shape == (4, 4)
    assert graph.live.fc.weight.device.type == "cpu"
    (note,) = graph.meta["decisions"]
    assert note.startswith(f"{path}: target built with its weights, not on the meta device")


def test_the_fallback_is_a_decision_in_the_port_report(model_file, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    import weightmap
    path = model_file("needs_values", """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = float(self.fc.weight.abs().max().item())


model = Net
""")
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": np.ones((4, 4), np.float32), "fc.bias": np.ones(4, np.float32)}, src)
    report = weightmap.port(src, path, tmp_path / "out.safetensors")
    assert any("not on the meta device" in d for d in report.decisions)


def test_a_forward_that_needs_real_weights_falls_back_to_a_normal_construction(model_file):
    path = model_file("checks_weights", '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if not bool(self.fc.weight.abs().sum() > 0):     # false on zero stand-ins, no meta bool
            raise ValueError("weights are all zero")
        return self.fc(x)


model = Net


def example_input():
    return torch.ones(1, 4)
''')
    graph = read(path, lazy=True)
    assert graph.meta["construction"].startswith(
        "normal (the forward of example_input failed without weights")
    assert graph.order == "execution"
    assert graph.live.fc.weight.device.type == "cpu"


def test_forward_made_tensors_on_meta_fall_back_to_the_meta_trace(model_file):
    """A forward that creates a meta tensor itself cannot run on CPU stand-ins: the meta-device
    trace takes over, the model stays unbuilt."""
    path = model_file("meta_in_forward", '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Linear(4, 4)
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.a(x) + torch.zeros(4, device=self.a.weight.device))


model = Net


def example_input():
    return torch.ones(1, 4)
''')
    graph = read(path, lazy=True)
    assert graph.meta["construction"] == "meta"
    assert [l.name for l in graph.layers] == ["a", "b"]


def test_init_outside_the_owner_is_recorded(model_file):
    path = model_file("own_init", '''
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        nn.init.zeros_(self.fc.bias)                  # a parent initialising a child's bias


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 2)
        self.emb = nn.Embedding(5, 4)
        self.apply(self._init)                        # model-wide init

    def _init(self, m):
        if isinstance(m, nn.Embedding):
            m.weight.data.normal_(0, 0.02)


model = Net
''')
    from weightmap.reading.modelfile import load_python_lazily
    obj, _, extra = load_python_lazily(path)
    record = extra["construction"]
    state = obj.state_dict(keep_vars=True)
    foreign = {n for n, t in state.items() if meta.storage_key(t) in record.foreign}
    assert foreign == {"block.fc.bias", "emb.weight"}
    assert record.owner[meta.storage_key(state["head.weight"])] is obj.head


def test_value_only_init_calls_are_skipped_on_meta(model_file):
    """Initialising on meta must not load torch's Python meta kernels (torch._dynamo)."""
    import subprocess
    import sys
    path = model_file("plain", '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)


model = Net
''')
    code = ("import sys\nfrom weightmap.reading.read import load_python_lazily\n"
            f"obj, _, _ = load_python_lazily(__import__('pathlib').Path({str(path)!r}))\n"
            "assert obj.fc.weight.device.type == 'meta'\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_files_without_torch_are_not_built_lazily(tmp_path):
    path = tmp_path / "no_torch.py"
    path.write_text("model = {'w': __import__('numpy').zeros(3)}\n", encoding="utf-8")
    assert not meta.wants_meta(path)
    graph = read(path, lazy=True)
    assert graph.format == "arrays" and "construction" not in graph.meta
