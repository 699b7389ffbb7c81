"""Networks that branch, built by the real Keras and torch, ported both ways and proven by
``verify`` (issue 11, "fix what verification exposes").

* A DenseNet (``models/densenet_*.py``): its head reads 32 features pooled from a concatenation
  whose last conv has 8 channels. Before the graphs said so, the head was taken for a flattened
  2x2 map, and permuted wrong, without a sign but a ``check:`` line.
* A ResNet v1 (``models/resnet_v1_*.py``): Keras creates each stage's shortcut conv before the
  main branch and lists conv0, conv3, bn0, bn3 interleaved; its convs carry biases the torch
  convs lack. Before the layers were put in data-flow order, the shortcut BatchNorms were paired
  with the main branch's and the shortcut convs left new.
"""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
keras = pytest.importorskip("keras")

import weightmap  # noqa: E402

MODELS = Path(__file__).parent / "models"


def _keras_module(name):
    spec = importlib.util.spec_from_file_location(name, MODELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomised_torch(path, seed=0):
    model = weightmap.read(f"{path}:model").live
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith(("running_var", "norm1.weight", "norm2.weight")) or \
                    (t.ndim == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.ndim == 1:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * np.sqrt(2.0 / t[0].numel()))
    return model.eval()


@pytest.fixture(scope="module", params=["densenet", "resnet_v1"])
def family(request, tmp_path_factory, randomised_keras):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    source = folder / f"{name}.keras"
    randomised_keras(_keras_module(f"{name}_keras").build()).save(source)
    return name, source


def test_keras_into_torch(family, tmp_path, proven):
    name, source = family
    out = tmp_path / f"{name}.safetensors"
    report = weightmap.port(source, MODELS / f"{name}_torch.py", out, verify=True)
    result = proven(report)
    assert not report.unused and not report.decisions, report.decisions
    assert all(t.endswith("num_batches_tracked") for t in report.new)
    man = report.manifest["params"]
    if name == "densenet":           # pooled features: a transpose, no flatten permutation
        assert [t["op"] for t in man["classifier.weight"]["transforms"]] == ["transpose"]
    else:                            # shortcuts with shortcuts; conv biases into the means
        assert man["layer1.0.downsample.0.weight"]["source"] == \
            [f"layers/conv2d_{n}/vars/0" for n in [_conv_index(source, "conv2_block1_0_conv")]]
        assert man["layer1.0.downsample.1.running_mean"]["status"] == "transformed"
        assert ("layer1.0.downsample.1", "conv2_block1_0_bn") in \
            [(l.target, l.source) for l in result.layers]


def _conv_index(source, layer):
    graph = weightmap.read(source)
    return graph.layer(layer).params[0].name.split("/")[1].partition("_")[2] or "0"


def test_torch_into_keras(family, tmp_path, proven):
    name, _ = family
    torch_file = MODELS / f"{name}_torch.py"
    state = tmp_path / f"{name}.pt"
    torch.save(_randomised_torch(torch_file).state_dict(), state)
    out = tmp_path / f"{name}.weights.h5"
    report = weightmap.port(state, f"{MODELS / f'{name}_keras.py'}:model", out, verify=True,
                            source_model=torch_file)
    proven(report)
    assert not report.new and all(u.endswith("num_batches_tracked") for u in report.unused)
    # a bare state dict stores no epsilon: torch's default is assumed, and said so
    assert all("torch default, not stored" in d for d in report.decisions), report.decisions
