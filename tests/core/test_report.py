"""A report people read: summary first, parameters and buffers apart, repeated notes grouped,
one line per layer only with -v; ``print(report)`` is what the command line prints."""
import json

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")
torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.cli import main  # noqa: E402
from weightmap.emit.report import render  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

BLOCKS = 4
TORCH_TWIN = f"""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 6, 6, 3, padding=1)
                                   for i in range({BLOCKS}))
        self.bns = nn.ModuleList(nn.BatchNorm2d(6) for _ in range({BLOCKS}))
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = torch.relu(bn(conv(x)))
        return self.fc(x.mean((2, 3)))


torch.manual_seed(0)
model = Net().eval()


def example_input():
    return torch.zeros(1, 3, 8, 8)
"""


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    """A Keras conv-BN stack (BatchNorm epsilon 1.001e-5, as keras.applications) saved by
    tf_keras, and its torch twin in a model file."""
    folder = tmp_path_factory.mktemp("report")
    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 3))
    x = inp
    for i in range(BLOCKS):
        x = L.Conv2D(6, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(epsilon=1.001e-5, name=f"bn{i}")(x)
        x = L.ReLU()(x)
    out = L.Dense(3, name="fc")(L.GlobalAveragePooling2D()(x))
    kmodel = tf_keras.Model(inp, out)
    rng = np.random.default_rng(0)
    kmodel.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                        for w in kmodel.get_weights()])
    src = folder / "net.h5"
    kmodel.save(src, save_format="h5")
    (folder / "net_torch.py").write_text(TORCH_TWIN)
    xs = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    return folder, src, folder / "net_torch.py", xs, kmodel.predict(xs, verbose=0)


def test_the_port_computes_what_the_source_computes(ported, tmp_path):
    folder, src, twin, xs, expected = ported
    report = weightmap.port(src, twin, tmp_path / "o.safetensors")
    model = load_python_object(twin)[0]
    model.load_state_dict(load_file(tmp_path / "o.safetensors"), strict=True)
    with torch.no_grad():
        got = model(torch.from_numpy(xs.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not report.unused


def test_repeated_notes_are_one_line_each_and_layers_only_with_verbose(ported, tmp_path):
    _, src, twin, _, _ = ported
    report = weightmap.port(src, twin, dry_run=True)
    text = str(report)
    eps = [l for l in text.splitlines() if "eps 1.001e-05->1e-05 compensated" in l]
    assert eps == [f"  {BLOCKS} BatchNorm layers (bns.0, bns.1, bns.2 ... and 1 more): "
                   "eps 1.001e-05->1e-05 compensated (gamma scaled)"]
    assert not any(l.startswith("  bns.0:") for l in text.splitlines())
    verbose = report.summary(verbose=True).splitlines()
    assert sum(l.startswith("  bns.") for l in verbose) == BLOCKS
    assert sum(l.startswith("  convs.") for l in verbose) == BLOCKS


def test_the_summary_counts_parameters_and_buffers_apart(ported, tmp_path):
    _, src, twin, _, _ = ported
    report = weightmap.port(src, twin, dry_run=True, freeze="transferred")
    model = load_python_object(twin)[0]
    n_params = len(list(model.named_parameters()))
    n_buffers = len(list(model.named_buffers()))
    s = report.manifest["summary"]
    assert (s["parameters"], s["buffers"]) == (n_params, n_buffers) == (2 * BLOCKS * 2 + 2,
                                                                        3 * BLOCKS)
    assert s["frozen"] == n_params                  # buffers are not trained: not counted
    first = str(report).splitlines()[0]
    assert first == f"target: {n_params + n_buffers} tensors (parameters {n_params}, buffers " \
                    f"{n_buffers}); frozen {n_params}"
    kinds = {n: e["kind"] for n, e in report.manifest["params"].items()}
    assert kinds["bns.0.running_var"] == "buffer" and kinds["bns.0.weight"] == "parameter"
    # the batch counters Keras does not keep are no weights: one kept: line, none left new
    lines = str(report).splitlines()
    assert not [l for l in lines if l.startswith("new: ")]
    assert [l for l in lines if l.startswith("kept: ")] == [
        f"kept: {BLOCKS} tensors (bns.0.num_batches_tracked, bns.1.num_batches_tracked,"
        f" bns.2.num_batches_tracked ... and 1 more): a counter, no weight: keeps the target's "
        f"value (num_batches_tracked has no counterpart in keras; used only with momentum=None)"]


def test_print_report_is_what_the_command_line_prints(ported, tmp_path, monkeypatch, capsys):
    _, src, twin, _, _ = ported
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli").mkdir()
    (tmp_path / "py").mkdir()
    assert main(["port", str(src), "--to", str(twin), "--out", "cli/o.safetensors"]) == 0
    printed = capsys.readouterr().out
    report = weightmap.port(src, twin, "py/o.safetensors")
    print(report)
    assert capsys.readouterr().out == printed.replace("cli/", "py/")
    assert str(report) == report.summary() == render(report)
    assert printed.startswith("wrote cli/o.safetensors\nmanifest cli/o.manifest.json\ntarget: ")
    assert len(repr(report)) < 200 and "carried over" in repr(report)
    data = report.to_dict()
    assert data["summary"]["parameters"] == 2 * BLOCKS * 2 + 2
    json.dumps(data)


def test_a_decision_said_of_several_layers_in_the_same_words_is_one_line():
    from weightmap.emit import manifest, report
    from weightmap.planning.plan import Plan, TensorPlan
    tensors = tuple(TensorPlan(f"{l}.weight", l, (2,), "float32", "transferred", ("s",))
                    for l in ("a", "b", "c"))
    p = Plan({}, {}, tensors, decisions=("a: pads asymmetrically", "b: pads asymmetrically",
                                         "c: something else", "a graph-wide fact"))
    text = str(report.make(p, manifest.build(p)))
    checks = [l for l in text.splitlines() if l.startswith("check: ")]
    assert checks == ["check: 2 layers (a, b): pads asymmetrically",
                      "check: c: something else", "check: a graph-wide fact"]
