"""The probe: shape and dtype from the models' own words, layouts aligned, seeded values."""
import numpy as np
import pytest

from weightmap.equivalence.probe import DEFAULT_SIZES, make
from weightmap.equivalence.runner import InputSpec
from weightmap.errors import VerifyError
from weightmap.graph import Layer, Param, ParamGraph
from weightmap.layouts import axes_for


def _graph(fw, op, shape, attrs=None, order="execution", extra=()):
    role = "embeddings" if op == "embedding" else "kernel"
    p = Param(f"first.{role}", role, shape, "float32", axes_for(fw, op, role, len(shape)))
    return ParamGraph("arrays", fw, f"{fw} model", (Layer("first", op, (p,), attrs or {}),)
                      + tuple(extra), order=order)


KERAS_CONV = _graph("keras", "conv2d", (3, 3, 3, 8))
TORCH_CONV = _graph("torch", "conv2d", (8, 3, 3, 3))


def test_keras_spec_and_torch_example_agree_across_layouts():
    keras_spec = [InputSpec("img", (None, 24, 20, 3), "float32", "Keras input")]
    torch_spec = [InputSpec("input", (1, 3, 24, 20), "float32", "example_input", fixed=False)]
    probe = make(KERAS_CONV, TORCH_CONV, keras_spec, torch_spec, seed=3)
    (src,), (tgt,) = probe.feeds["source"], probe.feeds["target"]
    assert src.shape == (2, 24, 20, 3) and tgt.shape == (2, 3, 24, 20)   # batch at least 2
    np.testing.assert_array_equal(src.transpose(0, 3, 1, 2), tgt)
    assert src.dtype == np.float32 and tgt.flags["C_CONTIGUOUS"]
    info = probe.info
    assert info["shape"] == [2, 3, 24, 20] and info["seed"] == 3
    assert info["origin"] == "the target file's example_input"
    assert info["layout"] == {"source": "channels_last", "target": "channels_first"}
    again = make(KERAS_CONV, TORCH_CONV, keras_spec, torch_spec, seed=3)
    np.testing.assert_array_equal(again.feeds["source"][0], src)


def test_fixed_dimensions_must_agree():
    keras_spec = [InputSpec("img", (None, 24, 24, 3), "float32", "Keras input")]
    onnx_spec = [InputSpec("x", (2, 3, 32, 32), "float32", "ONNX input")]
    with pytest.raises(VerifyError, match="different input sizes"):
        make(KERAS_CONV, TORCH_CONV, keras_spec, onnx_spec)


def test_without_any_spec_the_first_layer_and_defaults_decide():
    probe = make(KERAS_CONV, TORCH_CONV, [], [])
    assert probe.feeds["target"][0].shape == (DEFAULT_SIZES["n"], 3, 32, 32)
    assert "first layer first (conv2d, 3 input channels)" in probe.info["origin"]
    assert "defaults for n=2, h=32, w=32" in probe.info["origin"]


def test_token_ids_below_the_smallest_vocabulary_of_execution_ordered_graphs():
    wpe = Layer("wpe", "embedding", (Param("wpe.weight", "embeddings", (16, 4), "float32",
                                           ("vocab", "dim")),))
    sorted_src = _graph("torch", "embedding", (50, 4), order="stored")
    src = ParamGraph("arrays", "torch", "s", (wpe,) + sorted_src.layers, order="stored")
    tgt = _graph("keras", "embedding", (50, 4), order="config", extra=(wpe,))
    spec = [InputSpec("ids", (None, 7), "int32", "Keras input")]
    probe = make(src, tgt, [], spec)
    ids_src, ids_tgt = probe.feeds["source"][0], probe.feeds["target"][0]
    assert ids_src.dtype == np.int64 and ids_tgt.dtype == np.int32
    assert ids_src.shape == (2, 7) and ids_src.max() < 50 and ids_src.max() >= 16
    assert "token ids below 50" in probe.info["origin"]


def test_different_numbers_of_inputs_or_axes_are_refused():
    one = [InputSpec("x", (None, 8, 8, 3), "float32", "Keras input")]
    two = [InputSpec("a", (1, 3, 8, 8), "float32", "ONNX input"),
           InputSpec("b", (1, 3, 8, 8), "float32", "ONNX input")]
    with pytest.raises(VerifyError, match="takes 1 input"):
        make(KERAS_CONV, TORCH_CONV, one, two)
    flat = [InputSpec("x", (None, 27), "float32", "Keras input")]
    image = [InputSpec("x", (1, 3, 8, 8), "float32", "example_input", fixed=False)]
    with pytest.raises(VerifyError, match="not the same number of axes"):
        make(KERAS_CONV, TORCH_CONV, flat, image)


def test_a_side_that_says_nothing_takes_the_other_sides_input_in_its_own_layout():
    """A torch model built from --source-model without example_input, against a Keras target:
    the Keras input, channels first for torch — not a guess from the state dict's first layer
    (a name-sorted checkpoint may list its classifier first)."""
    sorted_sd = ParamGraph("arrays", "torch", "sd", (
        Layer("classifier", "dense", (Param("classifier.weight", "kernel", (5, 200),
                                            "float32", ("out", "in")),)),) +
        TORCH_CONV.layers, order="stored")
    keras_spec = [InputSpec("img", (None, 12, 10, 3), "float32", "Keras input")]
    probe = make(sorted_sd, KERAS_CONV, [], keras_spec)
    assert probe.feeds["source"][0].shape == (2, 3, 12, 10)
    assert probe.feeds["target"][0].shape == (2, 12, 10, 3)
    np.testing.assert_array_equal(probe.feeds["source"][0],
                                  probe.feeds["target"][0].transpose(0, 3, 1, 2))
    assert probe.info["layout"] == {"source": "channels_first", "target": "channels_last"}
    # with no spec at all, the first layer of the graph whose order is its execution
    probe = make(sorted_sd, TORCH_CONV, [], [])
    assert probe.feeds["source"][0].shape == (2, 3, 32, 32)


def test_a_model_saying_nothing_whose_first_layer_says_nothing_is_refused():
    opaque = ParamGraph("arrays", "torch", "o", (Layer("x", "opaque", (
        Param("x.w", "other", (3,), "float32", None),)),))
    with pytest.raises(VerifyError, match="give the model file an example_input"):
        make(opaque, opaque, [], [])


def test_a_channel_map_makes_the_sources_input_from_the_targets():
    """An adapted stem (``--adapt in_chans``): the target's one gray channel, repeated on the
    source's three, across layouts; the source's own channel count does not have to agree."""
    keras_spec = [InputSpec("img", (None, 8, 8, 3), "float32", "Keras input")]
    gray = _graph("torch", "conv2d", (8, 1, 3, 3))
    torch_spec = [InputSpec("input", (1, 1, 8, 8), "float32", "example_input", fixed=False)]
    probe = make(KERAS_CONV, gray, keras_spec, torch_spec, channel_map=np.ones((3, 1)),
                 mapped="repeated")
    (src,), (tgt,) = probe.feeds["source"], probe.feeds["target"]
    assert tgt.shape == (2, 1, 8, 8) and src.shape == (2, 8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(src[..., c], tgt[:, 0])
    assert probe.info["origin"] == "the target file's example_input; repeated"
    with pytest.raises(VerifyError, match="the adapted stem takes 2 input channels"):
        make(KERAS_CONV, gray, keras_spec, torch_spec, channel_map=np.ones((3, 2)))


def test_a_name_sorted_state_dict_finds_its_stem_for_the_layout():
    """A state dict sorted by name lists ``bn`` before ``conv1``: the example_input's layout
    comes from the first convolution whose input channels fit it, not from the BatchNorm
    (before: positional labels, and a torch source was fed the Keras target's NHWC probe)."""
    bn = Layer("bn", "batchnorm", (Param("bn.weight", "gamma", (8,), "float32", ("c",)),))
    sorted_dict = _graph("torch", "conv2d", (8, 3, 3, 3), order="stored", extra=())
    sorted_dict = ParamGraph("arrays", "torch", "sd", (bn,) + sorted_dict.layers,
                             order="stored")
    torch_spec = [InputSpec("input", (1, 3, 8, 8), "float32", "example_input", fixed=False)]
    keras_spec = [InputSpec("img", (None, 8, 8, 3), "float32", "Keras input")]
    probe = make(sorted_dict, KERAS_CONV, torch_spec, keras_spec)
    (src,), (tgt,) = probe.feeds["source"], probe.feeds["target"]
    assert src.shape == (2, 3, 8, 8) and tgt.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(src.transpose(0, 2, 3, 1), tgt)
