"""A small collection without any framework: safetensors sources and a safetensors template
target (a checkpoint used as a template of names and shapes)."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file


def _write_state(path, seed: int, prefix: str = "") -> dict:
    rng = np.random.default_rng(seed)
    state = {f"{prefix}fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
             f"{prefix}fc.bias": rng.standard_normal(3).astype(np.float32)}
    save_file(state, str(path))
    return state


@pytest.fixture
def write_state():
    """``write_state(path, seed, prefix="")``: a small seeded state dict saved as safetensors."""
    return _write_state


@pytest.fixture
def collection(tmp_path):
    """tmp_path with runs/run{1,2,10}.safetensors, template.safetensors and a spec dict."""
    (tmp_path / "runs").mkdir()
    for i in (1, 2, 10):
        _write_state(tmp_path / "runs" / f"run{i}.safetensors", i, prefix="module.")
    save_file({"fc.weight": np.zeros((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32)},
              str(tmp_path / "template.safetensors"))
    spec = {"out_dir": "out", "target": "template.safetensors",
            "jobs": [{"source": "runs/*.safetensors"}]}
    return tmp_path, spec
