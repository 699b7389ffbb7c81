"""weightmap.torch: the freeze manifest applied to a torch model."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

import weightmap  # noqa: E402
import weightmap.torch as wmt  # noqa: E402
from weightmap.reading.modelfile import load_python_object  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TGT = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"


def test_a_fully_frozen_model_warns_and_still_gives_an_optimizer_something(tmp_path):
    out = tmp_path / "o.safetensors"
    report = weightmap.port(SRC, TGT, out, freeze="transferred")    # every layer carried over
    model = load_python_object(TGT)[0]
    model.load_state_dict(load_file(out), strict=True)
    assert len(wmt.freeze(model, report)) == 12
    with pytest.warns(wmt.FrozenModelWarning, match="every one of the model's 12 parameters is "
                                                    "frozen"):
        groups = wmt.param_groups(model, report, lr=0.1)
    opt = torch.optim.SGD(groups, lr=0.1)          # an empty list would be refused here
    opt.step()
    assert [g["params"] for g in opt.param_groups] == [[]]


def test_groups_hold_exactly_the_trainable_parameters(tmp_path):
    report = weightmap.port(SRC, TGT, tmp_path / "o.safetensors", freeze="until:features",
                            lr_scale={"transferred": 0.1})
    model = load_python_object(TGT)[0]
    wmt.freeze(model, report)
    groups = wmt.param_groups(model, report, lr=1.0)
    assert [(g["lr"], len(g["params"])) for g in groups] == [(0.1, 4)]
    assert {n for g in groups for n in g["names"]} == {n for n, p in model.named_parameters()
                                                       if p.requires_grad}
