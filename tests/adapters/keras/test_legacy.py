"""Keras 2 legacy HDF5 files written by tf_keras: full models and weights-only files."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap.graph import MappedData

KHWIO, C, OUT, IO = ("kh", "kw", "in", "out"), ("c",), ("out",), ("in", "out")

VGG = [
    ("block1_conv1", "conv2d", [("block1_conv1/kernel:0", "kernel", (3, 3, 3, 4), KHWIO),
                                ("block1_conv1/bias:0", "bias", (4,), OUT)]),
    ("block1_conv2", "conv2d", [("block1_conv2/kernel:0", "kernel", (3, 3, 4, 4), KHWIO),
                                ("block1_conv2/bias:0", "bias", (4,), OUT)]),
    ("block2_conv1", "conv2d", [("block2_conv1/kernel:0", "kernel", (3, 3, 4, 8), KHWIO),
                                ("block2_conv1/bias:0", "bias", (8,), OUT)]),
    ("block2_bn", "batchnorm", [("block2_bn/gamma:0", "gamma", (8,), C),
                                ("block2_bn/beta:0", "beta", (8,), C),
                                ("block2_bn/moving_mean:0", "moving_mean", (8,), C),
                                ("block2_bn/moving_variance:0", "moving_var", (8,), C)]),
    ("fc1", "dense", [("fc1/kernel:0", "kernel", (128, 6), IO), ("fc1/bias:0", "bias", (6,), OUT)]),
    ("predictions", "dense", [("predictions/kernel:0", "kernel", (6, 3), IO),
                              ("predictions/bias:0", "bias", (3,), OUT)]),
]

LSTM_DIR = [("kernel", (4, 12), IO), ("recurrent_kernel", (3, 12), IO), ("bias", (12,), OUT)]
SEQ = [
    ("embedding", "embedding", [("embedding/embeddings:0", "embeddings", (12, 4),
                                 ("vocab", "dim"))]),
    ("bidirectional", "lstm",
     [(f"bidirectional/{d}_lstm/lstm_cell/{r}:0", r, s, a)
      for d in ("forward", "backward") for r, s, a in LSTM_DIR]),
    ("multi_head_attention", "attention",
     [(f"multi_head_attention/{part}/{kind}:0", f"{role}_{kind}", shape, axes)
      for part, role, kshape, bshape in (("query", "query", (6, 2, 3), (2, 3)),
                                         ("key", "key", (6, 2, 3), (2, 3)),
                                         ("value", "value", (6, 2, 3), (2, 3)),
                                         ("attention_output", "output", (2, 3, 6), (6,)))
      for kind, shape, axes in (("kernel", kshape, None),
                                ("bias", bshape, OUT if len(bshape) == 1 else None))]),
    ("gru", "gru", [("gru/gru_cell/kernel:0", "kernel", (6, 12), IO),
                    ("gru/gru_cell/recurrent_kernel:0", "recurrent_kernel", (4, 12), IO),
                    ("gru/gru_cell/bias:0", "bias", (2, 12), ("pair", "out"))]),
    ("p_re_lu", "prelu", [("p_re_lu/alpha:0", "alpha", (4,), C)]),
    ("head/dense", "dense", [("dense/kernel:0", "kernel", (4, 3), IO),
                             ("dense/bias:0", "bias", (3,), OUT)]),
    ("head/batch_normalization", "batchnorm",
     [("batch_normalization/gamma:0", "gamma", (3,), C),
      ("batch_normalization/moving_mean:0", "moving_mean", (3,), C),
      ("batch_normalization/moving_variance:0", "moving_var", (3,), C)]),
    ("dense_1", "dense", [("dense_1/kernel:0", "kernel", (3, 2), IO),
                          ("dense_1/bias:0", "bias", (2,), OUT)]),
]


def test_vgg_full_model_specs_and_attributes(kx):
    g = kx.read("tfk_vgg.h5")
    assert (g.format, g.framework, g.order) == ("keras2-h5", "keras", "config")
    assert kx.specs(g) == VGG
    assert all(p.dtype == "float32" and isinstance(p.data, MappedData) for p in g.params())
    assert g.meta["keras_version"] == "2.21.0" and g.meta["model_class"] == "Sequential"
    assert g.meta["weightless_layers"] == ["block1_pool", "block2_pool", "flatten"]
    assert g.meta["input_shape"] == [16, 16, 3]
    bn = g.layer("block2_bn")
    assert (bn.source_type, bn.attrs["epsilon"], bn.attrs["momentum"]) == \
        ("BatchNormalization", 1.001e-5, 0.99)
    assert (bn.attrs["center"], bn.attrs["scale"], bn.attrs["axis"]) == (True, True, (3,))
    conv = g.layer("block1_conv1")
    assert dict(conv.attrs) == {"filters": 4, "kernel_size": (3, 3), "strides": (1, 1),
                                "padding": "same", "dilation_rate": (1, 1), "groups": 1,
                                "use_bias": True, "data_format": "channels_last",
                                "activation": "relu", "fed_by": ()}
    assert g.layer("block1_conv2").attrs["fed_by"] == ("block1_conv1",)
    fc1 = g.layer("fc1")
    assert fc1.attrs["flatten_input_shape"] == (4, 4, 8)
    assert fc1.attrs["data_format"] == "channels_last"
    assert (fc1.attrs["dense_input"], fc1.attrs["fed_by"]) == ("flatten", ("block2_bn",))
    assert "flatten_input_shape" not in g.layer("predictions").attrs
    assert g.layer("predictions").attrs["dense_input"] == "features"


def test_vgg_weights_only_has_the_same_tensors_with_inferred_ops(kx):
    full, bare = kx.read("tfk_vgg.h5"), kx.read("tfk_vgg_weights_only.h5")
    assert bare.format == "keras2-h5-weights" and bare.meta["config"] == "none"
    assert kx.specs(bare) == kx.specs(full)
    assert all(l.attrs == {"inferred": True} for l in bare.layers)
    assert [l.source_type for l in bare.layers] == ["Conv2D"] * 3 + ["BatchNormalization"] + \
        ["Dense"] * 2


def test_seq_full_model_specs_nested_and_bidirectional(kx):
    g = kx.read("tfk_seq.h5")
    assert kx.specs(g) == SEQ
    bi = g.layer("bidirectional")
    assert bi.source_type == "Bidirectional(LSTM)"
    assert (bi.attrs["bidirectional"], bi.attrs["merge_mode"], bi.attrs["gate_order"]) == \
        (True, "concat", "ifco")
    assert bi.attrs["directions"]["forward"] == tuple(p.name for p in bi.params[:3])
    assert bi.attrs["directions"]["backward"] == tuple(p.name for p in bi.params[3:])
    gru = g.layer("gru")
    assert (gru.attrs["reset_after"], gru.attrs["gate_order"], gru.attrs["units"]) == \
        (True, "zrh", 4)
    bn = g.layer("head/batch_normalization")
    assert (bn.attrs["center"], bn.attrs["scale"]) == (False, True)
    assert g.layer("multi_head_attention").attrs["num_heads"] == 2


def test_seq_weights_only_splits_the_nested_model_by_weight_names(kx):
    bare = kx.read("tfk_seq_weights_only.h5")
    assert kx.specs(bare) == SEQ
    assert bare.layer("bidirectional").source_type == "Bidirectional(LSTM)"
    assert bare.layer("gru").attrs == {"inferred": True, "gate_order": "zrh", "units": 4,
                                       "reset_after": True}


def test_config_option_types_a_weights_only_file(kx):
    typed = kx.read("tfk_seq_weights_only.h5", config=kx.fixture("tfk_seq.h5"))
    full = kx.read("tfk_seq.h5")
    assert [l.describe() for l in typed.layers] == [l.describe() for l in full.layers]
    assert typed.meta["config"] == "option"


@pytest.mark.parametrize("name", ["tfk_vgg.h5", "tfk_seq.h5"])
def test_full_model_data_equals_what_tf_keras_loads(kx, loaded, name):
    model = loaded(name)
    by_name = {w.name: w.numpy() for w in model.weights}
    g = kx.read(name)
    assert sorted(p.name for p in g.params()) == sorted(by_name)
    kx.same((p, by_name[p.name]) for p in g.params())


@pytest.mark.parametrize("name, build", [("tfk_vgg_weights_only.h5", "tfk_vgg"),
                                         ("tfk_seq_weights_only.h5", "tfk_seq")])
def test_weights_only_data_equals_what_tf_keras_loads(kx, tf_keras, name, build):
    tf_keras.backend.clear_session()
    model = getattr(kx.gen(), build)()
    model.load_weights(str(kx.fixture(name)))
    g = kx.read(name)
    expected = [w.numpy() for layer in model.layers
                for w in layer.trainable_weights + layer.non_trainable_weights]
    kx.same(zip(g.params(), expected, strict=True))


def _copy(kx, tmp_path, name):
    dst = tmp_path / name
    shutil.copy(kx.fixture(name), dst)
    return dst


def test_missing_layer_group_is_a_format_error(kx, tmp_path):
    path = _copy(kx, tmp_path, "tfk_vgg_weights_only.h5")
    with h5py.File(path, "a") as f:
        del f["block2_bn"]
    with pytest.raises(FormatError, match="block2_bn"):
        kx.read(path)


def test_missing_weight_dataset_is_a_format_error(kx, tmp_path):
    path = _copy(kx, tmp_path, "tfk_vgg.h5")
    with h5py.File(path, "a") as f:
        del f["model_weights/fc1/fc1/bias:0"]
    with pytest.raises(FormatError) as err:
        kx.read(path)
    assert err.value.tensor == "fc1/bias:0"


def test_chunked_layer_names_and_duplicate_weight_names(kx, tmp_path):
    """Keras splits big attributes into name0, name1 ...; a weight name used by two groups (a
    layer and a nested model's layer of the same name) is qualified with its group."""
    path = tmp_path / "chunked.h5"
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype("f4"), rng.standard_normal((3, 3)).astype("f4")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = np.array([b"dense"])
        f.attrs["layer_names1"] = np.array([b"sub"])
        f.attrs["keras_version"] = b"2.21.0"
        for group, arr in (("dense", a), ("sub", b)):
            g = f.create_group(group)
            g.attrs["weight_names"] = np.array([b"dense/kernel:0"])
            g["dense/kernel:0"] = arr
    g = kx.read(path)
    assert g.format == "keras2-h5-weights"
    assert [(l.name, l.op, [p.name for p in l.params]) for l in g.layers] == [
        ("dense", "dense", ["dense/dense/kernel:0"]),
        ("sub/dense", "dense", ["sub/dense/kernel:0"])]
    kx.same(zip(g.params(), (a, b)))


def test_truncated_file_is_a_format_error(kx, tmp_path):
    path = tmp_path / "cut.h5"
    path.write_bytes(kx.fixture("tfk_vgg.h5").read_bytes()[:3000])
    from weightmap_keras import ADAPTER
    with pytest.raises(FormatError):
        ADAPTER.read(path, "keras2-h5")
