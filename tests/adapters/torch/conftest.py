"""Shared helpers for the torch adapter tests (as fixtures: tests import nothing from here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "torch"


@pytest.fixture
def fixture_path():
    """fixture_path("cnn.pt") -> the committed fixture file."""
    def get(name: str) -> Path:
        path = FIXTURES / name
        assert path.is_file(), f"missing fixture {path}; run python fixtures/gen_torch.py"
        return path
    return get


@pytest.fixture
def read_torch(fixture_path):
    """read_torch("cnn.pt" or a Path, **options) -> the adapter's ParamGraph (sniffed format)."""
    from weightmap_torch import ADAPTER

    def read(name_or_path, **options):
        path = Path(name_or_path)
        if not path.is_absolute():
            path = fixture_path(str(name_or_path))
        with open(path, "rb") as fh:
            fmt = ADAPTER.sniff(path, fh.read(64))
        assert fmt is not None, f"{path} not recognised"
        return ADAPTER.read(path, fmt, **options)
    return read


@pytest.fixture
def torch_numpy():
    """torch_numpy(tensor) -> numpy array with torch's values (bf16 through its bits)."""
    torch = pytest.importorskip("torch")
    import ml_dtypes

    def convert(tensor):
        t = tensor.detach().resolve_conj().resolve_neg().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return np.asarray(t.numpy())
    return convert


@pytest.fixture
def torch_load(torch_numpy):
    """torch_load(path) -> {name: numpy array} of what torch.load(weights_only=True) gives for
    the flat state dict at ``key`` (None: the root)."""
    torch = pytest.importorskip("torch")

    def load(path: Path, key: str | None = None):
        obj = torch.load(path, weights_only=True, map_location="cpu")
        if key is not None:
            obj = obj[key]
        return {k: torch_numpy(v) for k, v in obj.items()}
    return load
