"""The --adapt plan pass (weightmap/conversions/adapt.py), numpy only; the ports themselves are
judged by outputs in tests/e2e/test_exact_vit.py."""
import numpy as np
import pytest

import weightmap
from weightmap.conversions.adapt import check_option, prefix_tokens, requested
from weightmap.errors import UsageError


def vit_state(grid, cls=True, channels=3, reg=0, dim=4):
    tokens = (1 if cls else 0) + reg + grid * grid
    out = {"patch_embed.proj.weight": np.ones((dim, channels, 2, 2), np.float32),
           "patch_embed.proj.bias": np.zeros(dim, np.float32),
           "pos_embed": np.arange(tokens * dim, dtype=np.float32).reshape(1, tokens, dim)}
    if cls:
        out["cls_token"] = np.ones((1, 1, dim), np.float32)
    if reg:
        out["reg_token"] = np.ones((1, reg, dim), np.float32)
    out["head.weight"] = np.ones((3, dim), np.float32)
    return out


def test_option_names_are_checked():
    assert requested(["pos_embed", "in_chans,pos_embed"]) == ("pos_embed", "in_chans")
    assert check_option("in_chans") == ["in_chans"]
    with pytest.raises(UsageError, match="unknown adaptation 'pos' .*pos_embed, in_chans"):
        requested("pos")


def test_prefix_tokens_leave_a_square_grid_and_count_the_source_tokens():
    graph = weightmap.read(vit_state(4))
    assert prefix_tokens(graph, 17, 65) == 1                 # 16 + 1 -> 64 + 1
    assert prefix_tokens(weightmap.read(vit_state(4, cls=False)), 16, 64) == 0
    # 5 = 4 + 1 and 10 = 9 + 1, or 1 + 4 and 1 + 9: the source's tokens decide
    assert prefix_tokens(weightmap.read(vit_state(2, cls=False, reg=1)), 5, 10) == 1
    assert prefix_tokens(weightmap.read(vit_state(2, cls=False)), 21, 50) is None


def test_pos_embed_is_adapted_on_request_and_named_otherwise():
    src, tgt = vit_state(4), vit_state(8)
    plan = weightmap.plan(src, tgt)
    by = {t.target: t for t in plan.tensors}
    assert by["pos_embed"].status == "new" and by["cls_token"].status == "transferred"
    assert any("adapt='pos_embed' would adapt it" in d for d in plan.decisions)
    plan = weightmap.plan(src, tgt, adapt="pos_embed")
    pos = {t.target: t for t in plan.tensors}["pos_embed"]
    assert pos.status == "adapted" and [s.to_dict() for s in pos.steps] == [
        {"op": "resample_grid", "prefix": 1, "grid": [4, 4], "size": [8, 8]}]
    assert plan.options == {"adapt": ["pos_embed"]}


def test_in_chans_adapts_the_first_convolution_only():
    plan = weightmap.plan(vit_state(4), vit_state(4, channels=1), adapt=["in_chans"])
    by = {t.target: t for t in plan.tensors}
    kernel = by["patch_embed.proj.weight"]
    assert kernel.status == "adapted" and [s.op for s in kernel.steps] == ["adapt_in_channels"]
    assert by["patch_embed.proj.bias"].status == "transferred"
    assert "summed over the input channels, as timm's adapt_input_conv" in kernel.notes[0]


def test_a_grid_that_is_not_square_is_refused_with_a_reason():
    src, tgt = vit_state(4), vit_state(4)
    tgt["pos_embed"] = np.zeros((1, 1 + 12, 4), np.float32)            # a 3 x 4 grid
    plan = weightmap.plan(src, tgt, adapt="pos_embed")
    assert {t.target: t for t in plan.tensors}["pos_embed"].status == "new"
    assert any(d.startswith("pos_embed: adapt='pos_embed' cannot: position embeddings") and
               "no square grid" in d for d in plan.decisions)
