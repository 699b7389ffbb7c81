"""load_partial into live torch models, checked tensor by tensor."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import weightmap  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

MODELS = Path(__file__).parent / "models" / "resnet_torch.py"
rn, _ = load_python_object(MODELS, "ResNet")          # the class itself is a factory
mod = __import__("sys").modules[type(rn).__module__]


def _assert_loaded(model, source_state, mapping=lambda n: n, skip=()):
    state = model.state_dict()
    for name, value in state.items():
        if any(s in name for s in skip):
            continue
        torch.testing.assert_close(value, source_state[mapping(name)], rtol=0, atol=0,
                                   msg=f"{name} differs")


@pytest.mark.parametrize("prefix,wrap", [
    ("module.", lambda sd: sd),                                     # DataParallel
    ("_orig_mod.", lambda sd: sd),                                  # torch.compile
    ("model.", lambda sd: {"state_dict": sd, "epoch": 3, "global_step": 30}),   # Lightning
])
def test_wrapped_checkpoints(tmp_path, prefix, wrap):
    src = mod.trained(seed=1)
    sd = {prefix + k: v for k, v in src.state_dict().items()}
    path = tmp_path / ("x.ckpt" if "state_dict" in wrap({}) else "x.pt")
    torch.save(wrap(sd), path)
    target = mod.ResNet()
    report = weightmap.load_partial(target, path)
    assert not report.unused and not report.mismatched
    _assert_loaded(target, src.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), src(x), rtol=1e-5, atol=1e-6)


def test_other_class_count_keeps_the_new_head(tmp_path):
    src = mod.trained(seed=2, classes=10)
    target = mod.ResNet(classes=3)
    head = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("fc.")}
    report = weightmap.load_partial(target, src.state_dict())
    assert set(report.mismatched) == {"fc.weight", "fc.bias"}
    assert set(report.unused) == {"fc.weight", "fc.bias"}
    _assert_loaded(target, src.state_dict(), skip=("fc.",))
    for k, v in head.items():
        torch.testing.assert_close(target.state_dict()[k], v, rtol=0, atol=0)


def test_deeper_target_keeps_correspondences_and_leaves_extra_blocks_new():
    src = mod.trained(seed=3, blocks=(1, 2, 2))
    target = mod.ResNet(blocks=(1, 4, 3))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = weightmap.load_partial(target, src.state_dict())
    new_blocks = ("layer2.2.", "layer2.3.", "layer3.2.")
    state = target.state_dict()
    for name in state:
        if name.startswith(new_blocks):
            assert name in report.new
            torch.testing.assert_close(state[name], fresh[name], rtol=0, atol=0)
        elif not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(state[name], src.state_dict()[name], rtol=0, atol=0,
                                       msg=name)
    assert not report.unused


def test_renamed_layers_match_by_structure():
    src = mod.trained(seed=4)
    renamed = {k.replace("layer", "stage").replace("downsample", "shortcut"): v
               for k, v in src.state_dict().items()}
    target = mod.ResNet()
    report = weightmap.load_partial(target, renamed)
    assert not report.unused and not report.mismatched
    _assert_loaded(target, src.state_dict())
