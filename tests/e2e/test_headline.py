"""The README's headline: a Keras VGG16 saved by tf-keras as legacy .h5, ported into a torch
model defined in a .py file, computes the same logits; and the usual transfer recipe."""
from pathlib import Path

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")
torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402
import weightmap.torch as wmt  # noqa: E402

MODELS = Path(__file__).parent / "models" / "vgg_torch.py"


@pytest.fixture(scope="module")
def keras_vgg16(tmp_path_factory):
    """The full keras.applications VGG16 architecture, random weights, non-zero biases."""
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.applications.VGG16(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    weights = []
    for w in model.get_weights():
        if w.ndim == 1:
            weights.append(rng.uniform(-0.1, 0.1, w.shape).astype(np.float32))
        else:   # He-style scale keeps activations alive through 16 layers
            fan_in = int(np.prod(w.shape[:-1]))
            weights.append((rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
    model.set_weights(weights)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.h5"
    model.save(path, save_format="h5")
    x = rng.standard_normal((2, 224, 224, 3)).astype(np.float32)
    return path, x, model.predict(x, verbose=0)


def test_keras_vgg16_h5_to_torch_gives_the_same_logits(keras_vgg16, tmp_path, proven):
    path, x, expected = keras_vgg16
    out = tmp_path / "vgg16.safetensors"
    report = weightmap.port(path, f"{MODELS}:vgg16", out, verify=True)
    result = proven(report)      # the port proved itself: outputs and every paired layer
    assert len(result.layers) == 16 and report.manifest["verify"]["passed"]
    assert len(report.transferred) == 32 and not report.new and not report.unused
    model = weightmap.read(f"{MODELS}:vgg16").live
    model.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        got = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel <= 1e-5, rel
    assert np.abs(expected).max() > 1e-3        # the logits are not trivially zero
    fc1 = report.manifest["params"]["classifier.0.weight"]
    assert [t["op"] for t in fc1["transforms"]] == ["flatten_permute", "transpose"]


def test_transfer_recipe_into_vgg_bn_with_new_head(keras_vgg16, tmp_path):
    path, _, _ = keras_vgg16
    target = f"{MODELS}:vgg16_bn_10"
    out = tmp_path / "vgg16_bn.safetensors"
    report = weightmap.port(path, target, out, freeze="transferred")
    state = load_file(out)
    src = weightmap.read(path)
    fresh = weightmap.read(target).live.state_dict()
    man = report.manifest["params"]
    convs = [n for n, e in man.items() if e["layer"].startswith("features")
             and n.endswith("weight") and state[n].ndim == 4]
    assert len(convs) == 13
    kernels = [p for p in src.params() if p.role == "kernel" and len(p.shape) == 4]
    for name, kparam in zip(convs, kernels):
        np.testing.assert_array_equal(state[name].numpy(), kparam.read().transpose(3, 2, 0, 1))
        assert man[name]["frozen"] and man[name]["status"] == "transformed"
    trainable = []
    for name, entry in man.items():
        is_bn = state[name].ndim == 1 and entry["layer"].startswith("features") and \
            f"{entry['layer']}.running_mean" in man
        is_head = entry["layer"] == "classifier.6"
        if is_bn or is_head:
            assert entry["status"] == "new" and not entry["frozen"], name
            torch.testing.assert_close(state[name], fresh[name], rtol=0, atol=0)
            trainable.append(name)
    model = weightmap.read(target).live
    model.load_state_dict(state, strict=True)
    frozen = wmt.freeze(model, report.manifest)
    groups = wmt.param_groups(model, report.manifest, lr=0.01)
    in_groups = {n for g in groups for n in g["names"]}
    expected = {n for n, p in model.named_parameters()
                if (n.endswith(("weight", "bias")) and n in trainable)}
    assert in_groups == expected and len(in_groups) == 13 * 2 + 2
    assert {n for n, p in model.named_parameters() if p.requires_grad} == in_groups
    assert set(frozen).isdisjoint(in_groups)
    torch.optim.SGD(groups, lr=0.01)       # the groups are a valid optimizer spec
