"""A ViT checkpoint for 32 x 32 images (timm's names, name-sorted safetensors) ported into the
same network for 64 x 64 images (``--adapt pos_embed``: the position grid resampled as timm's
``resample_abs_pos_embed`` does) and into a one-channel model (``--adapt in_chans``), with no
rules and no example_input. Judged by the outputs against torch references."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

import weightmap  # noqa: E402
from weightmap.errors import UsageError  # noqa: E402

MODELS = Path(__file__).parent / "models" / "vit_torch.py"
F = torch.nn.functional


@pytest.fixture(scope="module")
def vit(tmp_path_factory, run):
    model = run.model(MODELS, "vit_32")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if "norm" in name and
                                                                 name.endswith("weight")
                                                                 else 0.0))
    path = tmp_path_factory.mktemp("vit") / "model.safetensors"
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_file(state, path)
    return path, state


def resampled_reference(state):
    """timm's resample_abs_pos_embed(pos, (16, 16), num_prefix_tokens=1), written out."""
    pos = state["pos_embed"]
    prefix, grid = pos[:, :1], pos[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(16, 16), mode="bicubic", antialias=True,
                         align_corners=False)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, 256, -1)], dim=1)


def test_position_embeddings_resampled_to_a_larger_grid(vit, tmp_path, run):
    path, state = vit
    plain = weightmap.port(path, f"{MODELS}:vit_64", tmp_path / "plain.safetensors")
    assert plain.new == ("pos_embed",) and "cls_token" in plain.transferred
    # the Python API names its own keyword (the command line, --adapt pos_embed)
    assert any(d.startswith("<root>: left new: position embeddings pos_embed (1, 65, 16) -> "
                            "(1, 257, 16); adapt='pos_embed' would adapt it")
               for d in plain.decisions)
    out = tmp_path / "vit64.safetensors"
    report = weightmap.port(path, f"{MODELS}:vit_64", out, adapt=["pos_embed"])
    assert not report.new and not report.unused
    entry = report.manifest["params"]["pos_embed"]
    assert entry["status"] == "adapted" and entry["transforms"] == [
        {"op": "resample_grid", "prefix": 1, "grid": [8, 8], "size": [16, 16]}]
    assert report.manifest["summary"]["adapted"] == 1
    assert report.manifest["policy"]["options"] == {"adapt": ["pos_embed"]}
    got = load_file(out)["pos_embed"]
    want = resampled_reference(state)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # the ported model computes what the source's weights with timm's resampling compute
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    reference = run.model(MODELS, "vit_64")
    reference.load_state_dict({**state, "pos_embed": want}, strict=True)
    with torch.no_grad():
        expected = reference(x).numpy()
    assert run.rel(run.outputs(MODELS, "vit_64", out, x), expected) <= 1e-5


def test_a_gray_stem_sums_the_rgb_kernel(vit, tmp_path, run):
    path, state = vit
    out = tmp_path / "gray.safetensors"
    r = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "weightmap", "port", path, "--to",
         f"{MODELS}:vit_gray", "--out", out, "--adapt", "in_chans"], capture_output=True,
        text=True)
    assert r.returncode == 0, r.stderr
    assert "1 adapted; new 0" in r.stdout
    # one channel fed to the gray model = that channel repeated into the RGB source model
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    source = run.model(MODELS, "vit_32")
    source.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = source(x.repeat(1, 3, 1, 1)).numpy()
    assert run.rel(run.outputs(MODELS, "vit_gray", out, x), expected) <= 1e-5


def test_an_unknown_adaptation_is_a_usage_error(vit, tmp_path):
    path, _ = vit
    with pytest.raises(UsageError, match="unknown adaptation 'pos_emb'"):
        weightmap.plan(path, f"{MODELS}:vit_64", adapt="pos_emb")


@pytest.mark.parametrize("target,channels", [("vit_gray", 1), ("vit_rgbn", 4)])
def test_an_adapted_stem_verifies_through_its_input_map(vit, tmp_path, proven, target,
                                                         channels):
    """``--adapt in_chans`` is exact for one map of inputs: the source takes the target's probe
    through the adapted kernel's own channel map (one gray channel repeated on R, G and B; four
    channels folded onto three, scaled by 3/4), so the whole models are compared, outputs too
    (before: the source ran on the target's one-channel probe and failed, exit 10, hint 'give
    the model file an example_input')."""
    path, _ = vit
    report = weightmap.port(path, f"{MODELS}:{target}", tmp_path / "out.safetensors",
                            adapt=["in_chans"], verify=True, source_model=f"{MODELS}:vit_32")
    result = proven(report)
    assert result.probe["shape"][1] == channels
    assert f"the source takes it through --adapt in_chans (its 3 input channels made of the " \
           f"target's {channels})" in result.probe["origin"]


def test_resampled_position_embeddings_cannot_be_verified_and_say_so(vit, tmp_path):
    """``--adapt pos_embed`` makes the target compute another function, on inputs of another
    size: nothing can be compared exactly. Verification says so plainly and never passes
    (before: the source ran on the target's probe, 'size of tensor a (257) must match ...
    (65)', hint 'give the model file an example_input')."""
    from weightmap.errors import VerifyError
    path, _ = vit
    out = tmp_path / "vit64.safetensors"
    options = dict(adapt=["pos_embed"], source_model=f"{MODELS}:vit_32")
    with pytest.raises(VerifyError) as caught:
        weightmap.port(path, f"{MODELS}:vit_64", out, verify=True, **options)
    text = str(caught.value)
    assert text.startswith("verify INCOMPLETE: nothing can be compared: --adapt pos_embed "
                           "resampled pos_embed's 8x8 grid to 16x16, so the target "
                           "computes another function, on inputs of another size, by design")
    assert "example_input" not in text and not out.exists()
    result = weightmap.port(path, f"{MODELS}:vit_64", out, verify="warn", **options).verify
    assert not result.passed and result.verdict() == "INCOMPLETE"
    assert not result.layers and not result.outputs and result.first_divergence is None
    assert result.to_dict()["unverifiable"].startswith("--adapt pos_embed resampled")
