"""Shared helpers of the end-to-end tests: what every exact port of this folder also proves by
``verify`` (the figures it measured), seeded Keras weights, and for transformer ports: build a
model from a model file, load a port's output into it strictly, run it, compare outputs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

EXACT = 1e-5      # the suite's bar for an exact float32 port, relative to the largest output


def check_proven(report_or_result, *, exact=EXACT, outputs=True, skipped_ok=()):
    """The port's verification passed, with whole outputs compared and within ``exact``, and
    every paired layer within it too (a skipped layer must give a reason starting with one of
    ``skipped_ok``). Returns the result."""
    result = getattr(report_or_result, "verify", report_or_result)
    assert result is not None, "the port ran no verification"
    assert result.passed, result.summary()
    compared = [o for o in result.outputs if o.status != "skipped"]
    if outputs:
        assert compared and result.compared_up_to is None, result.summary()
    for o in compared:
        assert o.status == "ok" and o.rel is not None and o.rel <= exact, o
    assert result.layers, result.summary()
    for layer in result.layers:
        if layer.status == "skipped":
            assert layer.note.startswith(tuple(skipped_ok)) if skipped_ok else False, layer
        else:
            assert layer.status == "ok" and math.isfinite(layer.rel) and layer.rel <= exact, \
                layer
    return result


@pytest.fixture
def proven():
    return check_proven


def randomise_keras(model, seed=0, tiny_variance_every=0):
    """Seeded weights: He-scaled kernels, non-zero biases, BatchNorm gammas and variances in
    0.5..1.5 (every ``tiny_variance_every``-th variance 1e-6, where epsilons weigh)."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        shape, name = tuple(w.shape), w.path
        if name.endswith(("moving_variance", "gamma")):
            v = rng.uniform(0.5, 1.5, shape)
            if tiny_variance_every and name.endswith("moving_variance"):
                v[::tiny_variance_every] = 1e-6
        elif len(shape) == 1:
            v = rng.normal(0, 0.2, shape)
        else:
            v = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        values.append(v.astype(np.float32))
    model.set_weights(values)
    return model


@pytest.fixture(scope="session")
def randomised_keras():
    return randomise_keras



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
