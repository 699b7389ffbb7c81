"""Values of tensors that stay new in a meta-built target
(adapters/weightmap_torch/materialise.py)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from weightmap.errors import UsageError  # noqa: E402
from weightmap.reading.read import read  # noqa: E402
from weightmap_torch.materialise import SEED, Materialiser  # noqa: E402

MIXED = '''
class Scaled(nn.Module):
    """A custom module: its parameter and buffer come from its own code, no reset_parameters."""
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.full((4,), 0.5))
        self.register_buffer("steps", torch.arange(4))

    def forward(self, x):
        return x * self.gain + self.steps


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.custom = Scaled()
        self.emb = nn.Embedding(6, 4)
        self.emb.weight.data.normal_(0, 0.02)            # set by the parent, not by Embedding

    def forward(self, x):
        return self.custom(self.bn(self.fc(x)))


def model():
    torch.manual_seed(3)
    return Net()


def example_input():
    return torch.ones(2, 4)
'''


def seeded_reset(path: str, module):
    torch.manual_seed((SEED + zlib.crc32(path.encode())) % 2 ** 63)
    module.reset_parameters()
    return module


def test_reset_mode_resets_built_in_modules_alone(model_file):
    graph = read(model_file("mixed", MIXED), lazy=True, new_values="reset")
    assert graph.meta["construction"] == "meta"
    own = seeded_reset("fc", torch.nn.Linear(4, 4))
    np.testing.assert_array_equal(graph.param("fc.weight").read(), own.weight.detach().numpy())
    np.testing.assert_array_equal(graph.param("fc.bias").read(), own.bias.detach().numpy())
    np.testing.assert_array_equal(graph.param("bn.running_var").read(), np.ones(4, np.float32))
    assert graph.param("bn.num_batches_tracked").read().dtype == np.int64
    mat = graph.param("fc.weight").data.materialiser
    assert mat.real is None                                  # nothing built in full so far
    assert {mat.how[n] for n in ("fc.weight", "fc.bias", "bn.running_var")} == {"reset"}


def test_reset_mode_builds_normally_what_a_reset_cannot_reproduce(model_file):
    path = model_file("mixed", MIXED)
    graph = read(path, lazy=True, new_values="reset")
    normal = read(path)
    for name in ("custom.gain", "custom.steps", "emb.weight"):
        got = graph.param(name).read()
        np.testing.assert_array_equal(got, normal.param(name).read())
    mat = graph.param("emb.weight").data.materialiser
    assert {mat.how[n] for n in ("custom.gain", "custom.steps", "emb.weight")} == {"constructed"}
    np.testing.assert_array_equal(graph.param("custom.steps").read(), np.arange(4))


def test_construct_mode_equals_a_normal_construction_for_every_tensor(model_file):
    path = model_file("mixed", MIXED)
    graph, normal = read(path, lazy=True), read(path)
    for p in normal.params():
        assert graph.param(p.name).read().tobytes() == p.read().tobytes(), p.name


def test_reset_values_do_not_depend_on_what_else_is_read(model_file):
    path = model_file("mixed", MIXED)
    first = read(path, lazy=True, new_values="reset")
    second = read(path, lazy=True, new_values="reset")
    a = first.param("fc.weight").read()
    second.param("bn.weight").read()
    np.testing.assert_array_equal(second.param("fc.weight").read(), a)


def test_unknown_mode_is_a_usage_error(model_file):
    with pytest.raises(UsageError, match="new_values"):
        Materialiser(torch.nn.Linear(2, 2), None, lambda: None, new_values="random")


def test_a_file_building_another_model_the_second_time_is_reported(model_file, tmp_path):
    counter = tmp_path / "count.txt"
    path = model_file("changing", f'''
from pathlib import Path
_count = Path({str(counter)!r})
_n = int(_count.read_text()) if _count.exists() else 0
_count.write_text(str(_n + 1))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        setattr(self, "fc" if _n == 0 else "other", nn.Linear(2, 2))


model = Net
''')
    graph = read(path, lazy=True)
    with pytest.raises(UsageError, match="different model each time"):
        graph.param("fc.weight").read()


def test_port_refuses_an_unknown_new_values_mode(tiny_gpt, tmp_path):
    import weightmap
    with pytest.raises(UsageError, match="new_values"):
        weightmap.port(tiny_gpt["source"], tiny_gpt["target"], tmp_path / "o.safetensors",
                       new_values="random")
