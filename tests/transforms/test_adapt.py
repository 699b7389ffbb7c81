"""The --adapt transforms (weightmap/transform/adapt.py) against torch: the grid resampling is
``F.interpolate(mode="bicubic", antialias=True, align_corners=False)`` as timm calls it, the
channel adaptation timm's ``adapt_input_conv`` written out in torch."""
import math

import numpy as np
import pytest

from weightmap.errors import PlanError
from weightmap.transform import Step, apply_steps, check_steps

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("grid, size", [((8, 8), (16, 16)), ((8, 8), (12, 12)),
                                        ((14, 14), (24, 24)), ((16, 16), (8, 8)),
                                        ((14, 14), (10, 10)), ((7, 5), (3, 11)),
                                        ((24, 24), (7, 7)), ((1, 1), (3, 3))])
def test_grid_resampling_is_torchs_antialiased_bicubic(grid, size):
    rng = np.random.default_rng(sum(grid) + sum(size))
    pos = rng.standard_normal((1, 2 + grid[0] * grid[1], 6)).astype(np.float32)
    step = Step("resample_grid", {"prefix": 2, "grid": list(grid), "size": list(size)})
    assert check_steps([step], [pos.shape], "pos") == (1, 2 + size[0] * size[1], 6)
    got = apply_steps([step], [pos])
    t = torch.from_numpy(pos[:, 2:]).reshape(1, *grid, 6).permute(0, 3, 1, 2)
    want = F.interpolate(t, size=size, mode="bicubic", antialias=True, align_corners=False)
    want = want.permute(0, 2, 3, 1).reshape(1, -1, 6).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:, :2], pos[:, :2])            # prefix tokens kept
    # torch accumulates in float32, the numpy port in float64: they agree to float32 rounding
    np.testing.assert_allclose(got[:, 2:], want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_grid_contract_is_checked():
    step = Step("resample_grid", {"prefix": 1, "grid": [8, 8], "size": [16, 16]})
    with pytest.raises(PlanError, match="does not hold 1 prefix tokens and a 8x8 grid"):
        check_steps([step], [(1, 64, 6)], "pos")


def timm_adapt_input_conv(in_chans, w):
    """timm.models._manipulate.adapt_input_conv, as published."""
    o, i, j, k = w.shape
    if in_chans == 1:
        if i > 3:
            return w.reshape(o, i // 3, 3, j, k).sum(dim=2)
        return w.sum(dim=1, keepdim=True)
    repeat = int(math.ceil(in_chans / 3))
    return w.repeat(1, repeat, 1, 1)[:, :in_chans, :, :] * (3 / float(in_chans))


@pytest.mark.parametrize("have, want", [(3, 1), (3, 2), (3, 4), (3, 7), (12, 1)])
def test_input_channels_as_timm_adapts_them(have, want):
    kernel = np.random.default_rng(have * want).standard_normal((5, have, 3, 3)).astype(
        np.float32)
    step = Step("adapt_in_channels", {"axis": 1, "channels": want})
    out_channels = want if want != 1 else (1 if have == 3 else have // 3)
    assert check_steps([step], [kernel.shape], "k")[1] == want
    got = apply_steps([step], [kernel])
    expected = timm_adapt_input_conv(want, torch.from_numpy(kernel)).numpy()
    assert got.shape == expected.shape == (5, out_channels, 3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_channels_timm_refuses_are_refused():
    with pytest.raises(PlanError, match="only a 3-channel"):
        check_steps([Step("adapt_in_channels", {"axis": 1, "channels": 2})], [(5, 4, 3, 3)], "k")
