"""Shared helpers for the end-to-end tests of transformer ports: build a model from a model
file, load a port's output into it strictly, run it, compare outputs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def _model(models, name):
    import weightmap
    return weightmap.read(f"{models}:{name}").live


def _outputs(models, name, weights, inputs):
    """The outputs of model ``name`` of the file ``models`` with ``weights`` loaded strictly."""
    import torch
    from safetensors.torch import load_file
    model = _model(models, name)
    model.load_state_dict(load_file(weights), strict=True)
    with torch.no_grad():
        return model(inputs).numpy()


def _rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="session")
def run():
    """``run.model(models, name)``, ``run.outputs(models, name, weights, inputs)``,
    ``run.rel(got, want)`` (max abs error over max abs value)."""
    return SimpleNamespace(model=_model, outputs=_outputs, rel=_rel)
