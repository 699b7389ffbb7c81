"""What an adapted plan means for verification (``equivalence.adapted``): the source's input
made from the target's through the adapted stem's own channel map, or why nothing compares."""
import numpy as np

from weightmap.equivalence.adapted import adaptation
from weightmap.equivalence.pairs import Entry
from weightmap.graph import Layer, Param, ParamGraph

SOURCE = ParamGraph("arrays", "torch", "torch", (Layer("stem", "conv2d", (
    Param("stem.weight", "kernel", (8, 3, 3, 3), "float32", ("out", "in", "kh", "kw")),)),))


def _stem(channels):
    return Entry("stem.weight", "stem", "adapted", ("stem.weight",), (
        {"op": "adapt_in_channels", "axis": 1, "channels": channels},))


def test_the_channel_map_is_the_adapted_kernels_own():
    gray = adaptation([_stem(1)], SOURCE)
    np.testing.assert_array_equal(gray.channel_map, np.ones((3, 1)))
    assert gray.another is None and "its 3 input channels made of the target's 1" in gray.mapped
    rgbn = adaptation([_stem(4)], SOURCE).channel_map      # R+N, G, B, scaled by 3/4
    np.testing.assert_allclose(rgbn, 0.75 * np.array([[1, 0, 0, 1], [0, 1, 0, 0],
                                                      [0, 0, 1, 0]]))
    # the stem's output on x equals the source stem's on M @ x: the equivalence itself
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((8, 3)), rng.standard_normal(4)
    adapted = w @ rgbn                                    # what adapt_in_channels made
    np.testing.assert_allclose(adapted @ x, w @ (rgbn @ x))


def test_resampled_position_embeddings_compute_another_function():
    entry = Entry("pos_embed", "<root>", "adapted", ("pos_embed",), (
        {"op": "resample_grid", "prefix": 1, "grid": [8, 8], "size": [16, 16]},))
    found = adaptation([entry, _stem(1)], SOURCE)
    assert found.another.startswith("--adapt pos_embed resampled pos_embed's 8x8 grid to 16x16")
    assert adaptation([Entry("x", "x", "transferred", ("x",))], SOURCE).channel_map is None
