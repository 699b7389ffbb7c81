"""A checkpoint as target: its names and shapes are the template, the output has its format."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

MODELS = Path(__file__).parent / "models" / "resnet_torch.py"


def _models():
    trained, _ = load_python_object(MODELS, "trained")       # a factory: called with no args
    net = type(trained)
    torch.manual_seed(7)
    return trained, net(classes=3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_template_gives_the_same_format(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    src, target = _models()
    template = tmp_path / f"template{suffix}"
    fresh = {("net." + k): v.clone() for k, v in target.state_dict().items()}
    if suffix == ".safetensors":
        save_file(fresh, template)
    else:
        torch.save(fresh, template)
    report = weightmap.port(src.state_dict(), template)   # default output name and format
    out = Path(report.output)
    assert out.parent == Path(".")
    try:
        assert out.suffix == suffix
        state = load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True)
        assert sorted(state) == sorted(fresh)
        assert list(state) == [p.name for p in weightmap.read(template).params()]
        for name, value in state.items():
            plain = name[len("net."):]
            expected = fresh[name] if plain.startswith("fc.") else src.state_dict()[plain]
            torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
        assert set(report.mismatched) == {"net.fc.weight", "net.fc.bias"}
    finally:
        out.unlink(missing_ok=True)
        Path(report.manifest_path).unlink(missing_ok=True)
