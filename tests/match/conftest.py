"""Graph builders for the matching tests: torch-style state-dict shapes (grouped by the real
``statedict.group``) and Keras-convention layers labelled by
``registry.convention("keras").axes(...)``.

Tests get them through the ``mk`` fixture (pytest runs with --import-mode=importlib, so a
conftest is not importable as a module).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from weightmap.graph import Layer, Param, ParamGraph
from weightmap import registry
from weightmap.reading.statedict import Entry, group

KERAS_LEAF = {"kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta",
              "moving_mean": "moving_mean", "moving_var": "moving_variance",
              "recurrent_kernel": "recurrent_kernel", "depthwise_kernel": "depthwise_kernel",
              "embeddings": "embeddings"}


def torch_graph(spec, order="registration", framework="torch", meta=None) -> ParamGraph:
    """``spec``: (name, shape) pairs or a dict, in state-dict order."""
    items = spec.items() if isinstance(spec, dict) else spec
    entries = [Entry(name, tuple(shape), "float32", None) for name, shape in items]
    return ParamGraph(format="test", framework=framework, source="torch-test",
                      layers=tuple(group(entries, registry.convention(framework))), order=order, meta=meta or {})


def keras_layer(name, op, **roles) -> Layer:
    """``keras_layer("fc1", "dense", kernel=(512, 10), bias=(10,))``: Keras names and axes."""
    params = tuple(Param(name=f"{name}/{KERAS_LEAF[role]}:0", role=role, shape=tuple(shape),
                         dtype="float32", axes=registry.convention("keras").axes(op, role, len(shape)))
                   for role, shape in roles.items())
    return Layer(name=name, op=op, params=params)


def keras_graph(layers, order="config") -> ParamGraph:
    return ParamGraph(format="test", framework="keras", source="keras-test",
                      layers=tuple(layers), order=order)


VGG16 = [(3, 64), (64, 64), None, (64, 128), (128, 128), None, (128, 256), (256, 256),
         (256, 256), None, (256, 512), (512, 512), (512, 512), None, (512, 512), (512, 512),
         (512, 512), None]


def vgg_keras(classes=1000):
    layers, block, conv = [], 1, 1
    for item in VGG16:
        if item is None:
            block, conv = block + 1, 1
            continue
        cin, cout = item
        layers.append(keras_layer(f"block{block}_conv{conv}", "conv2d", kernel=(3, 3, cin, cout),
                                  bias=(cout,)))
        conv += 1
    layers += [keras_layer("fc1", "dense", kernel=(7 * 7 * 512, 4096), bias=(4096,)),
               keras_layer("fc2", "dense", kernel=(4096, 4096), bias=(4096,)),
               keras_layer("predictions", "dense", kernel=(4096, classes), bias=(classes,))]
    return keras_graph(layers)


def vgg_torch_spec(classes=1000, bn=False):
    """torchvision's vgg16 / vgg16_bn state-dict names and shapes."""
    spec, k = [], 0
    for item in VGG16:
        if item is None:
            k += 1                                        # MaxPool
            continue
        cin, cout = item
        spec += [(f"features.{k}.weight", (cout, cin, 3, 3)), (f"features.{k}.bias", (cout,))]
        k += 1
        if bn:
            spec += [(f"features.{k}.{leaf}", (cout,)) for leaf in
                     ("weight", "bias", "running_mean", "running_var")]
            spec.append((f"features.{k}.num_batches_tracked", ()))
            k += 1
        k += 1                                            # ReLU
    spec += [("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
             ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
             ("classifier.6.weight", (classes, 4096)), ("classifier.6.bias", (classes,))]
    return spec


def bn_spec(prefix, c):
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)),
            (f"{prefix}.running_mean", (c,)), (f"{prefix}.running_var", (c,)),
            (f"{prefix}.num_batches_tracked", ())]


def resnet_spec(blocks=(3, 4, 6, 3), classes=1000):
    """torchvision ResNet (bottleneck) state-dict names and shapes: resnet50 = (3, 4, 6, 3),
    resnet101 = (3, 4, 23, 3)."""
    spec = [("conv1.weight", (64, 3, 7, 7))] + bn_spec("bn1", 64)
    cin = 64
    for stage, count in enumerate(blocks, start=1):
        width = 64 * 2 ** (stage - 1)
        for b in range(count):
            p = f"layer{stage}.{b}"
            spec += [(f"{p}.conv1.weight", (width, cin, 1, 1))] + bn_spec(f"{p}.bn1", width)
            spec += [(f"{p}.conv2.weight", (width, width, 3, 3))] + bn_spec(f"{p}.bn2", width)
            spec += [(f"{p}.conv3.weight", (width * 4, width, 1, 1))] + \
                bn_spec(f"{p}.bn3", width * 4)
            if b == 0:
                spec += [(f"{p}.downsample.0.weight", (width * 4, cin, 1, 1))] + \
                    bn_spec(f"{p}.downsample.1", width * 4)
            cin = width * 4
    spec += [("fc.weight", (classes, 2048)), ("fc.bias", (classes,))]
    return spec


def renamed_layers(spec, scheme="net"):
    """The same tensors under names sharing nothing with torchvision's: ``net.17.w``."""
    layer_ids: dict[str, int] = {}
    out = []
    for name, shape in spec:
        layer, _, leaf = name.rpartition(".")
        k = layer_ids.setdefault(layer, len(layer_ids))
        out.append((f"{scheme}.{k}.{leaf}", shape))
    return out, {f"{scheme}.{k}": layer for layer, k in layer_ids.items()}


@pytest.fixture
def mk():
    return SimpleNamespace(torch_graph=torch_graph, keras_layer=keras_layer,
                           keras_graph=keras_graph, vgg_keras=vgg_keras,
                           vgg_torch_spec=vgg_torch_spec, resnet_spec=resnet_spec,
                           renamed_layers=renamed_layers, bn_spec=bn_spec)
