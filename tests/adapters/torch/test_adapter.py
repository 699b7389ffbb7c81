"""The adapter object: registry contract, sniffing, accepts() without importing torch."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from weightmap import registry
from weightmap_torch import ADAPTER, TorchAdapter


def _head(path: Path) -> bytes:
    return path.read_bytes()[:64]


def test_registered_under_its_name():
    table = registry.build({"torch": "weightmap_torch:ADAPTER"}, [])
    assert table["torch"] is ADAPTER and isinstance(ADAPTER, TorchAdapter)
    assert ADAPTER.formats == ("torch-zip", "torch-legacy")


@pytest.mark.parametrize("name,fmt", [
    ("cnn.pt", "torch-zip"), ("lightning.ckpt", "torch-zip"), ("compiled.bin", "torch-zip"),
    ("dataparallel.pth", "torch-zip"), ("legacy.pt", "torch-legacy"),
    ("scripted.pt", "torch-zip"),     # claimed, so read() can say it is TorchScript
])
def test_sniff_fixtures(fixture_path, name, fmt):
    path = fixture_path(name)
    assert ADAPTER.sniff(path, _head(path)) == fmt


def test_extension_alone_is_not_enough(tmp_path):
    for name, data in [("weights.bin", np.arange(10, dtype="<f4").tobytes()),
                       ("model.pt", b"not a checkpoint at all"),
                       ("empty.ckpt", b"")]:
        path = tmp_path / name
        path.write_bytes(data)
        assert ADAPTER.sniff(path, _head(path)) is None
    keras_like = tmp_path / "model.pt"
    with zipfile.ZipFile(keras_like, "w") as zf:
        zf.writestr("config.json", "{}")
    assert ADAPTER.sniff(keras_like, _head(keras_like)) is None
    assert ADAPTER.sniff(tmp_path, b"") is None


def test_read_without_format_sniffs(fixture_path):
    assert ADAPTER.read(fixture_path("legacy.pt")).format == "torch-legacy"


def test_accepts_by_type_name_only():
    torch = pytest.importorskip("torch")
    assert ADAPTER.accepts(torch.nn.Linear(2, 2))
    assert ADAPTER.accepts(torch.nn.Linear(2, 2).state_dict())
    assert ADAPTER.accepts({"p": torch.nn.Parameter(torch.ones(1))})
    assert not ADAPTER.accepts({})
    assert not ADAPTER.accepts({"a": torch.ones(1), "b": 3})
    assert not ADAPTER.accepts({"a": np.ones(1)})
    assert not ADAPTER.accepts(torch.ones(2))
    assert not ADAPTER.accepts(object())


def test_import_sniff_and_accepts_do_not_import_torch(fixture_path):
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from weightmap_torch import ADAPTER\n"
            "p = Path(sys.argv[1])\n"
            "assert ADAPTER.sniff(p, p.read_bytes()[:64]) == 'torch-zip'\n"
            "assert not ADAPTER.accepts({'a': 1}) and not ADAPTER.accepts(object())\n"
            "ADAPTER.read(p, 'torch-zip')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = subprocess.run([sys.executable, "-c", code, str(fixture_path("cnn.pt"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_through_weightmap_read(fixture_path, tmp_path):
    import weightmap
    from weightmap.errors import UnsafeInputError
    g = weightmap.read(fixture_path("lightning.ckpt"))
    assert (g.format, g.meta["container"]) == ("torch-zip", "state_dict")
    assert weightmap.read(fixture_path("ema.pt"), container="model_ema").meta["container"] == \
        "model_ema"
    with pytest.raises(UnsafeInputError):
        weightmap.read(fixture_path("malicious_system.pt"))


def test_model_file_with_example_input(tmp_path):
    pytest.importorskip("torch")
    import weightmap
    model_py = tmp_path / "net.py"
    model_py.write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(2 * 2 * 2, 3)\n"
        "        self.conv = nn.Conv2d(1, 2, 1)\n"
        "        self.flat = nn.Flatten()\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.flat(self.conv(x)))\n"
        "model = Net\n"
        "def example_input():\n"
        "    return torch.zeros(1, 1, 2, 2)\n")
    g = weightmap.read(f"{model_py}:model")
    assert g.format == "torch-live" and g.order == "execution"
    assert [l.name for l in g.layers] == ["conv", "fc"]
    assert g.layer("fc").attrs["flatten_input_shape"] == (2, 2, 2)
