"""BatchNorm ports judged by outputs: Keras (eps 1.001e-5, 1e-3) ⇄ torch (eps 1e-5).

Some channels have a running variance of 1e-6, where the epsilons weigh: each test also shows
that the port without the compensation would miss the tolerance, so it cannot pass by luck.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf_keras = pytest.importorskip("tf_keras")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.emit.report import render  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

MODELS = Path(__file__).parent / "models"
TORCH = MODELS / "norm_torch.py"
KERAS = MODELS / "norm_keras.py"
TINY = 1e-6


def import_file(path):
    spec = importlib.util.spec_from_file_location(f"e2e_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rel_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def bn_stats(rng, n):
    var = rng.uniform(0.5, 1.5, n)
    var[::3] = TINY                                   # where a wrong epsilon shows
    return {"gamma": rng.uniform(0.5, 1.5, n), "beta": rng.normal(0, 0.2, n),
            "moving_mean": rng.normal(0, 0.2, n), "moving_variance": var}


def randomise_keras(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            stats = bn_stats(rng, layer.weights[0].shape[0])
            values = [stats[w.name.split("/")[-1].split(":")[0]] for w in layer.weights]
        else:
            values = [rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[:-1])), w.shape) if w.ndim > 1
                      else rng.uniform(-0.3, 0.3, w.shape) for w in (np.asarray(v) for v in
                                                                     layer.get_weights())]
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])


def randomise_torch(model, seed=0):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                s = bn_stats(rng, module.num_features)
                for attr, key in (("weight", "gamma"), ("bias", "beta"),
                                  ("running_mean", "moving_mean"),
                                  ("running_var", "moving_variance")):
                    getattr(module, attr).copy_(torch.from_numpy(s[key].astype(np.float32)))
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                w.copy_(torch.from_numpy(rng.normal(0, np.sqrt(2 / fan_in), tuple(w.shape))
                                         .astype(np.float32)))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(
                        rng.uniform(-0.3, 0.3, tuple(module.bias.shape)).astype(np.float32)))
    return model.eval()


def torch_out(model, x_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.fixture(scope="module")
def keras_h5(tmp_path_factory):
    tf_keras.utils.set_random_seed(0)
    model = import_file(KERAS).build(tf_keras, affine_last=False)
    randomise_keras(model)
    path = tmp_path_factory.mktemp("keras") / "convbn.h5"
    model.save(path, save_format="h5")
    x = np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype(np.float32)
    return path, x, model.predict(x, verbose=0), model


def test_keras_batchnorm_into_torch_gives_the_same_logits(keras_h5, tmp_path, proven):
    path, x, expected, kmodel = keras_h5
    out = tmp_path / "convbn.safetensors"
    # strict: every weight carried over; the batch counters Keras does not keep are no weights
    report = weightmap.port(path, f"{TORCH}:model", out, verify=True, strict=True)
    proven(report)
    state = load_file(out)
    model = load_python_object(TORCH, "model")[0]
    model.load_state_dict(state, strict=True)
    got = torch_out(model.eval(), x)
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    assert np.abs(expected).max() > 1e-2

    # without the epsilon compensation the port would be off: already 1.001e-5 vs 1e-5 shows
    raw = dict(state)
    for bn, k in (("bn1", "b1"), ("bn2", "b2")):
        raw[f"{bn}.weight"] = torch.from_numpy(kmodel.get_layer(k).get_weights()[0])
    model.load_state_dict(raw, strict=True)
    assert rel_error(torch_out(model, x), expected) > 1e-5
    raw["bn3.weight"] = torch.ones(16)
    model.load_state_dict(raw, strict=True)
    assert rel_error(torch_out(model, x), expected) > 1e-2

    man = report.manifest["params"]
    assert man["bn1.weight"]["notes"][0] == "eps 1.001e-05->1e-05 compensated (gamma scaled)"
    assert man["bn1.weight"]["status"] == "transformed"
    assert [t["op"] for t in man["bn1.weight"]["transforms"]] == ["bn_eps_gamma"]
    assert man["bn1.weight"]["source"] == ["b1/gamma:0", "b1/moving_variance:0"]
    # c1's bias has no place in conv1 (bias=False): it moves into bn1's running mean
    assert man["bn1.running_mean"]["source"] == ["b1/moving_mean:0", "c1/bias:0"]
    assert any("mean' = mean - b" in n for n in man["bn1.running_mean"]["notes"])
    # c2 has no bias, conv2 has one: 0
    assert man["conv2.bias"]["status"] == "synthetic"
    # b3 has no gamma/beta (scale=False, center=False): 1 (eps-compensated) and 0, synthetic
    assert man["bn3.weight"]["status"] == "synthetic"
    assert "eps 0.001->1e-05 compensated (gamma scaled)" in man["bn3.weight"]["notes"]
    assert man["bn3.bias"]["status"] == "synthetic"
    np.testing.assert_array_equal(state["bn3.bias"].numpy(), np.zeros(16, np.float32))
    assert man["bn1.num_batches_tracked"]["status"] == "new"
    assert man["bn1.num_batches_tracked"]["notes"][0].startswith(
        "a counter, no weight: keeps the target's value (num_batches_tracked has no counterpart")
    assert "kept: 3 tensors (bn1.num_batches_tracked, bn2.num_batches_tracked, " \
        "bn3.num_batches_tracked): a counter" in render(report)
    assert any("momentum 0.99 (keras) = 0.01 torch-style" in n for n in man["bn1.weight"]["notes"])
    assert not report.unused and not report.decisions
    lines = {l.split(":")[0].strip(): l for l in render(report, verbose=True).splitlines()
             if l.startswith("  ")}
    assert "eps 1.001e-05->1e-05 compensated (gamma scaled)" in lines["bn1"]
    assert lines["bn3"].startswith("  bn3: new/synthetic/transferred <- b3")


@pytest.fixture(scope="module")
def torch_trained(tmp_path_factory):
    model = randomise_torch(load_python_object(TORCH, "model")[0], seed=2)
    path = tmp_path_factory.mktemp("torch") / "convbn.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_torch_state_dict_into_keras_gives_the_same_logits(torch_trained, tmp_path, proven):
    pytest.importorskip("keras")
    path, tmodel = torch_trained
    out = tmp_path / "convbn.weights.h5"
    report = weightmap.port(path, KERAS, out, verify=True, source_model=f"{TORCH}:model")
    proven(report)
    kmodel = load_python_object(KERAS, "model")[0]
    kmodel.load_weights(out)
    x = np.random.default_rng(3).standard_normal((4, 8, 8, 3)).astype(np.float32)
    expected = torch_out(tmodel, x)
    got = np.asarray(kmodel(x))
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)

    # raw gammas (no compensation) would be off: b3's epsilon is 1e-3
    weights = kmodel.get_layer("b3").get_weights()
    weights[0] = tmodel.bn3.weight.detach().numpy()
    kmodel.get_layer("b3").set_weights(weights)
    assert rel_error(np.asarray(kmodel(x)), expected) > 1e-3

    man = report.manifest["params"]
    by_layer = {}
    for name, entry in man.items():
        by_layer.setdefault(entry["layer"], {})[name] = entry
    gamma3 = next(e for n, e in by_layer["b3"].items() if e["source"][:1] == ["bn3.weight"])
    assert "eps 1e-05->0.001 compensated (gamma scaled)" in gamma3["notes"]
    mean2 = next(e for e in by_layer["b2"].values() if "bn2.running_mean" in e["source"])
    assert mean2["source"] == ["bn2.running_mean", "conv2.bias"]
    bias1 = next(e for n, e in by_layer["c1"].items() if e["status"] == "synthetic")
    assert "0 keeps its output" in bias1["notes"][0]
    # a bare state dict does not store epsilon: alone, torch's default is assumed and said
    # so; the source model states it
    assert not any("torch default" in d for d in report.decisions)
    assert any("torch default" in d for d in weightmap.plan(path, KERAS).decisions)
