"""Conv+BN fusion across torch and ONNX, judged by outputs (torch eval mode and onnxruntime).

* An eval-mode ONNX export (``dynamo=False``: BatchNorms fused into the convs, weights renamed
  ``onnx::Conv_N``; the dynamo exporter: fused, torch names kept) → the torch model with
  Conv(bias=False) + BN, freshly initialised: unfused exactly, the BN statistics synthetic.
* A torch state dict → the ONNX export of a freshly initialised copy (fused): fused exactly.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.reading import read as sources  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

MODEL = Path(__file__).parent / "models" / "resnet_bn_torch.py"
BNS = ("bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2", "layer2.0.bn1",
       "layer2.0.bn2", "layer2.0.downsample.1", "layer2.1.bn1", "layer2.1.bn2")


def rel_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def fresh_model(name="model"):
    return load_python_object(MODEL, name)[0].eval()


def export(model, path, x, dynamo=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False)
    return path


def run_onnx(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def randomised(name):
    """Random weights, non-trivial BN statistics, a tiny running variance in every third channel."""
    model = fresh_model(name)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                v = rng.uniform(0.5, 1.5, t.shape)
                v[::3] = 1e-6
            elif name.endswith(("running_mean", "bias")):
                v = rng.normal(0, 0.2, t.shape)
            elif t.ndim == 1:                                        # BN weight
                v = rng.uniform(0.5, 1.5, t.shape)
            else:
                v = rng.normal(0, np.sqrt(2.0 / t[0].numel()), t.shape)
            t.copy_(torch.from_numpy(v.astype(np.float32)))
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(expected).max() > 1e-2
    return model, x, expected


@pytest.fixture(scope="module")
def trained():
    return randomised("model")


def port_into_fresh_model(fused, x, tmp_path, name="model"):
    """Port ``fused`` into a freshly built target, load it strictly, run it on ``x``."""
    out = tmp_path / "unfused.safetensors"
    report = weightmap.port(fused, f"{MODEL}:{name}", out, verify=True)
    target = fresh_model(name)
    target.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        return report, target(x).numpy()


def test_fused_onnx_export_unfuses_into_torch_conv_bn(trained, tmp_path, proven):
    model, x, expected = trained
    fused = export(model, tmp_path / "fused.onnx", x)
    graph = weightmap.read(fused)
    assert not [l for l in graph.layers if l.op == "batchnorm"]           # fused ...
    convs = [l for l in graph.layers if l.op == "conv2d"]
    assert len(convs) == 10 and all(p.name.startswith("onnx::Conv_")     # ... and names lost
                                    for l in convs for p in l.params)
    report, got = port_into_fresh_model(fused, x, tmp_path)
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    assert rel_error(got, run_onnx(fused, x)) <= 1e-5
    # proven by verify too: each fused Conv against the BatchNorm it was unfused into
    result = proven(report)
    assert len(result.synthetic) == 30 and len(result.layers) == 11

    man = report.manifest["params"]
    for bn in BNS:
        assert [man[f"{bn}.{n}"]["status"] for n in ("weight", "bias", "running_mean",
                                                    "running_var", "num_batches_tracked")] == \
            ["synthetic", "transferred", "synthetic", "synthetic", "new"], bn
        assert man[f"{bn}.bias"]["source"][0].startswith("onnx::Conv_")
        assert man[f"{bn}.weight"]["notes"][0].startswith("unfused BN (synthetic stats)")
        assert any(d.startswith(f"{bn}: unfused from") and "re-estimate the statistics "
                   "before training in train mode" in d for d in report.decisions)
    assert man["layer2.0.downsample.0.weight"]["source"][0].startswith("onnx::Conv_")
    assert not report.unused and report.manifest["summary"]["synthetic"] == 30
    # the report says it once for all BatchNorms, as it does of a Keras port's
    lines = str(report).splitlines()
    checks = [l for l in lines if l.startswith("check:")]
    assert len(checks) == 1 and checks[0].startswith("check: 10 BatchNorm layers (bn1, ")
    assert not [l for l in lines if l.startswith("new:")]
    assert [l for l in lines if l.startswith("kept:")] == [
        "kept: 10 tensors (bn1.num_batches_tracked, layer1.0.bn1.num_batches_tracked, "
        "layer1.0.bn2.num_batches_tracked ... and 7 more): a counter, no weight: keeps the "
        "target's value (unfused BN, synthetic stats)"]


def test_dynamo_export_keeps_names_and_unfuses_the_same(trained, tmp_path, proven):
    model, x, expected = trained
    fused = export(model, tmp_path / "dynamo.onnx", x, dynamo=True)
    convs = [l for l in weightmap.read(fused).layers if l.op == "conv2d"]
    assert all("FuseBatchNormIntoConv" in l.attrs.get("rewrite_rule", "") for l in convs)
    assert convs[0].params[0].name == "conv1.weight"
    report, got = port_into_fresh_model(fused, x, tmp_path)
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    assert report.manifest["params"]["bn1.running_var"]["status"] == "synthetic"
    proven(report)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_conv_biases_before_batchnorm_unfuse_from_either_exporter(dynamo, tmp_path, proven):
    """Convs with biases before each BatchNorm (a Keras-style ResNet50): the TorchScript
    exporter leaves no mark on the fused convs, only its own onnx::Conv_N names; it unfuses
    like the dynamo export (all BatchNorms were left new)."""
    model, x, expected = randomised("biased")
    fused = export(model, tmp_path / "fused.onnx", x, dynamo=dynamo)
    assert not [l for l in weightmap.read(fused).layers if l.op == "batchnorm"]
    report, got = port_into_fresh_model(fused, x, tmp_path, "biased")
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    man = report.manifest["params"]
    for bn in BNS:
        assert [man[f"{bn}.{n}"]["status"] for n in ("weight", "bias", "running_mean",
                                                    "running_var")] == ["synthetic"] * 4, bn
    assert man["conv1.bias"]["status"] == "transferred"
    assert {t.rsplit(".", 1)[1] for t in report.new} == {"num_batches_tracked"}
    result = proven(report)
    assert len(result.layers) == 11


def test_torch_state_dict_fuses_into_an_onnx_target(trained, tmp_path, proven):
    model, x, expected = trained
    target = export(fresh_model(), tmp_path / "fresh.onnx", x)
    tied = [p for p in weightmap.read(target).params() if p.tied_to]
    assert tied                      # the fresh fused biases are all zero: deduplicated
    src = tmp_path / "trained.pt"
    torch.save(model.state_dict(), src)
    out = tmp_path / "ported.onnx"
    report = weightmap.port(src, target, out, verify=True, source_model=f"{MODEL}:model")
    proven(report)
    got = run_onnx(out, x)
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    assert rel_error(run_onnx(target, x), expected) > 0.1          # the target was not it

    man = report.manifest["params"]
    biases = [e for e in man.values() if e["transforms"][:1]
              and e["transforms"][0]["op"] == "bn_fold_bias"]
    kernels = [e for e in man.values() if e["transforms"][:1]
               and e["transforms"][0]["op"] == "bn_fold_kernel"]
    assert len(biases) == len(kernels) == 10
    assert all(e["status"] == "transformed" and e["notes"][0].startswith("fused BN")
               for e in biases + kernels)
    assert {u["name"].rsplit(".", 1)[1] for u in report.manifest["unused"]} == \
        {"num_batches_tracked"}
    # a bare state dict does not store eps: alone, the fusion says it assumed torch's default;
    # the source model states it
    assert biases[0]["notes"][0].endswith(", eps 1e-05)")
    alone = {t.target: t for t in weightmap.plan(src, target).tensors}
    assert any("torch default" in n for t in alone.values() for n in t.notes
               if n.startswith("fused BN"))


def test_shape_operands_of_a_dynamo_target_are_kept_not_new(trained, tmp_path, proven):
    """The dynamo exporter's int64 shape operands (the <unconsumed> pseudo-layer) are no
    weights: kept as they are, not reported as a layer left new."""
    model, x, expected = trained
    fresh = fresh_model()
    with torch.no_grad():            # fused biases not all zero: the exporter keeps them
        for m in fresh.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(0.5)
    target = export(fresh, tmp_path / "fresh_dynamo.onnx", x, dynamo=True)
    kept = weightmap.read(target).layer("<unconsumed>")
    assert kept.attrs["shape_operands"] and all(p.dtype == "int64" for p in kept.params)
    src = tmp_path / "trained.pt"
    torch.save(model.state_dict(), src)
    out = tmp_path / "ported.onnx"
    report = weightmap.port(src, target, out, source_model=f"{MODEL}:model")
    lines = str(report).splitlines()
    assert not [l for l in lines if l.startswith("new:")]
    assert [l for l in lines if l.startswith("kept:")] == [
        "kept: <unconsumed> (opaque): not a weight (the graph reads it as a shape or index "
        "operand, or not at all): kept as it is"]
    # kept as they are: the ported graph still runs, and computes the trained model
    assert rel_error(run_onnx(out, x), expected) <= 1e-5
    assert rel_error(run_onnx(target, x), expected) > 0.1


RESNET = Path(__file__).parent / "models" / "resnet_torch.py"     # no example_input in it


def test_onnx_export_into_a_model_file_without_example_input(tmp_path):
    """The target's blocks run their downsample before the main path but create it last: only
    its execution order lines up with the export's node order. The file defines no
    example_input; the target is traced on an input made for its stem (3 channels, 16 x 16 from
    the ONNX graph's input)."""
    factory, _ = load_python_object(RESNET, "ResNet")
    model = __import__("sys").modules[type(factory).__module__].trained(seed=3)
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    with torch.no_grad():
        expected = model(x).numpy()
    fused = export(model, tmp_path / "resnet.onnx", x)
    out = tmp_path / "resnet.safetensors"
    report = weightmap.port(fused, f"{RESNET}:ResNet", out)
    assert not report.unused and not report.mismatched
    assert [n for n in report.new if not n.endswith("num_batches_tracked")] == []
    target = load_python_object(RESNET, "ResNet")[0].eval()
    target.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        got = target(x).numpy()
    assert rel_error(got, expected) <= 1e-5, rel_error(got, expected)
    assert not any("registration order" in d for d in report.decisions)
    graph = sources.read(f"{RESNET}:ResNet", lazy=True, input_hint=[3, 16, 16])   # as api does
    assert graph.meta["trace_input"] == ("synthesized input (1, 3, 16, 16) float32 for the stem "
                                         "'stem' (spatial size from the source graph)")
