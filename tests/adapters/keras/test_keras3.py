"""Keras 3 files: bare ``.weights.h5`` (order recovered from the file) and ``.keras`` zips."""
from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap.graph import CallableData, MappedData

KHWIO, C, OUT, IO = ("kh", "kw", "in", "out"), ("c",), ("out",), ("in", "out")


def _conv(name, cin):
    return (name, "conv2d", [(f"layers/{name}/vars/0", "kernel", (3, 3, cin, 2), KHWIO),
                             (f"layers/{name}/vars/1", "bias", (2,), OUT)])


def _bn(name):
    return (name, "batchnorm", [(f"layers/{name}/vars/{i}", role, (2,), C) for i, role in
                                enumerate(("gamma", "beta", "moving_mean", "moving_var"))])


# model order: three convs, a BatchNormalization, four times; conv2d_10 comes after conv2d_9
CONV_ORDER = ["conv2d", "conv2d_1", "conv2d_2", "batch_normalization", "conv2d_3", "conv2d_4",
              "conv2d_5", "batch_normalization_1", "conv2d_6", "conv2d_7", "conv2d_8",
              "batch_normalization_2", "conv2d_9", "conv2d_10", "conv2d_11",
              "batch_normalization_3"]
CONVS = [_bn(n) if n.startswith("batch") else _conv(n, 3 if n == "conv2d" else 2)
         for n in CONV_ORDER] + [
    ("dense", "dense", [("layers/dense/vars/0", "kernel", (8, 3), IO),
                        ("layers/dense/vars/1", "bias", (3,), OUT)])]


def _cell(base, n_in, units, gates, bias_shape=None, bias_axes=OUT):
    return [(f"{base}/vars/0", "kernel", (n_in, gates * units), IO),
            (f"{base}/vars/1", "recurrent_kernel", (units, gates * units), IO),
            (f"{base}/vars/2", "bias", bias_shape or (gates * units,), bias_axes)]


def _mha():
    out = []
    for part, kshape, bshape in (("query", (3, 2, 2), (2, 2)), ("key", (3, 2, 2), (2, 2)),
                                 ("value", (3, 2, 2), (2, 2)), ("output", (2, 2, 3), (3,))):
        base = f"layers/multi_head_attention/{part}_dense/vars"
        out += [(f"{base}/0", f"{part}_kernel", kshape, None),
                (f"{base}/1", f"{part}_bias", bshape, OUT if len(bshape) == 1 else None)]
    return out


MIXED = [
    ("embedding", "embedding", [("layers/embedding/vars/0", "embeddings", (20, 4),
                                 ("vocab", "dim"))]),
    ("depthwise_conv2d", "depthwise_conv2d",
     [("layers/depthwise_conv2d/vars/0", "kernel", (3, 3, 3, 2), ("kh", "kw", "c", "m")),
      ("layers/depthwise_conv2d/vars/1", "bias", (6,), OUT)]),
    ("lstm", "lstm", _cell("layers/lstm/cell", 4, 5, 4)),
    ("separable_conv2d", "separable_conv2d",
     [("layers/separable_conv2d/vars/0", "depthwise_kernel", (3, 3, 6, 1),
       ("kh", "kw", "c", "m")),
      ("layers/separable_conv2d/vars/1", "pointwise_kernel", (1, 1, 6, 4), KHWIO),
      ("layers/separable_conv2d/vars/2", "bias", (4,), OUT)]),
    ("gru", "gru", _cell("layers/gru/cell", 5, 3, 3, (2, 9), ("pair", "out"))),
    ("conv2d_transpose", "conv_transpose2d",
     [("layers/conv2d_transpose/vars/0", "kernel", (3, 3, 2, 4), ("kh", "kw", "out", "in")),
      ("layers/conv2d_transpose/vars/1", "bias", (2,), OUT)]),
    ("bidirectional", "lstm", _cell("layers/bidirectional/forward_layer/cell", 3, 2, 4)
     + _cell("layers/bidirectional/backward_layer/cell", 3, 2, 4)),
    ("layer_normalization", "layernorm",
     [("layers/layer_normalization/vars/0", "gamma", (2,), C),
      ("layers/layer_normalization/vars/1", "beta", (2,), C)]),
    ("time_distributed", "dense", [("layers/time_distributed/layer/vars/0", "kernel", (4, 3), IO),
                                   ("layers/time_distributed/layer/vars/1", "bias", (3,), OUT)]),
    ("group_normalization", "groupnorm",
     [("layers/group_normalization/vars/0", "gamma", (2,), C),
      ("layers/group_normalization/vars/1", "beta", (2,), C)]),
    ("multi_head_attention", "attention", _mha()),
    ("p_re_lu", "prelu", [("layers/p_re_lu/vars/0", "alpha", (1, 1, 2), None)]),
    ("head/dense_1", "dense", [("layers/sequential/layers/dense/vars/0", "kernel", (5, 4), IO),
                               ("layers/sequential/layers/dense/vars/1", "bias", (4,), OUT)]),
    ("head/batch_normalization", "batchnorm",
     [("layers/sequential/layers/batch_normalization/vars/0", "beta", (4,), C),
      ("layers/sequential/layers/batch_normalization/vars/1", "moving_mean", (4,), C),
      ("layers/sequential/layers/batch_normalization/vars/2", "moving_var", (4,), C)]),
    ("dense_2", "dense", [("layers/dense/vars/0", "kernel", (4, 2), IO),
                          ("layers/dense/vars/1", "bias", (2,), OUT)]),
]


def _role_of_variable(var) -> str:
    """The role a Keras 3 variable's own name and path say (the ground truth for k3_roles)."""
    name = {"moving_variance": "moving_var"}.get(var.name, var.name)
    for part in ("query", "key", "value"):
        if f"/{part}/" in var.path:
            return f"{part}_{name}"
    if "/attention_output/" in var.path:
        return f"output_{name}"
    return name if name in ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_var",
                            "recurrent_kernel", "depthwise_kernel", "pointwise_kernel",
                            "embeddings", "alpha") else "other"


def test_bare_weights_file_recovers_model_order(kx):
    path = kx.fixture("k3_convs.weights.h5")
    with h5py.File(path) as f:                      # what a plain listing gives: name order
        listed = list(f["layers"])
    assert listed.index("conv2d_10") < listed.index("conv2d_2")
    g = kx.read(path)
    assert (g.format, g.order, g.meta["order_source"]) == \
        ("keras3-weights-h5", "stored", "hdf5-creation-order")
    assert kx.specs(g) == CONVS
    assert g.meta["weightless_layers"] == ["zero_padding2d", "max_pooling2d", "flatten",
                                           "dropout"]
    assert all(l.attrs.get("inferred") for l in g.layers)
    assert all(isinstance(p.data, MappedData) for p in g.params())


def test_keras_zip_takes_order_types_and_flatten_from_config(kx):
    g = kx.read("k3_convs.keras")
    assert (g.format, g.order, g.meta["order_source"], g.meta["keras_version"]) == \
        ("keras-zip", "config", "config", "3.15.1")
    assert kx.specs(g) == CONVS
    assert g.meta["input_shape"] == [8, 8, 3]
    assert g.layer("conv2d_9").attrs["strides"] == (2, 2)
    assert g.layer("conv2d_9").attrs["padding"] == "valid"
    dense = g.layer("dense")
    assert (dense.attrs["flatten_input_shape"], dense.attrs["data_format"]) == \
        ((2, 2, 2), "channels_last")
    assert g.layer("batch_normalization").attrs["epsilon"] == 0.001
    for p in g.params():                            # mapped in place inside the zip
        assert isinstance(p.data, MappedData) and p.data.path == str(kx.fixture("k3_convs.keras"))


def test_mixed_model_specs_and_attributes(kx):
    zipped, bare = kx.read("k3_mixed.keras"), kx.read("k3_mixed.weights.h5")
    assert kx.specs(zipped) == MIXED
    assert zipped.meta["skipped_groups"] == ["optimizer"] == bare.meta["skipped_groups"]
    gru = zipped.layer("gru")
    assert (gru.attrs["reset_after"], gru.attrs["gate_order"], gru.attrs["return_sequences"]) \
        == (True, "zrh", True)
    assert zipped.layer("lstm").attrs["gate_order"] == "ifco"
    bi = zipped.layer("bidirectional")
    assert bi.source_type == "Bidirectional(LSTM)" and bi.attrs["merge_mode"] == "concat"
    assert bi.attrs["directions"]["backward"] == tuple(p.name for p in bi.params[3:])
    assert zipped.layer("time_distributed").source_type == "TimeDistributed(Dense)"
    assert zipped.layer("p_re_lu").attrs["shared_axes"] == (1, 2)
    assert zipped.layer("head/batch_normalization").attrs["scale"] is False
    # the bare file knows neither the config nor whether the BN lacks gamma or beta
    assert [l.name for l in bare.layers] == [l.name for l in zipped.layers]
    bare_bn = bare.layer("head/batch_normalization")
    assert [p.role for p in bare_bn.params] == ["other", "moving_mean", "moving_var"]


def test_config_option_types_a_bare_file(kx):
    typed = kx.read("k3_mixed.weights.h5", config=kx.fixture("k3_mixed.keras"))
    zipped = kx.read("k3_mixed.keras")
    assert [l.describe() for l in typed.layers] == [l.describe() for l in zipped.layers]
    assert (typed.order, typed.meta["config"]) == ("config", "option")


@pytest.mark.parametrize("name", ["k3_convs.keras", "k3_mixed.keras", "k3_lambda.keras",
                                  "k3_channels_first.keras"])
def test_zip_data_and_roles_equal_what_keras_loads(kx, loaded, name):
    model = loaded(name)
    g = kx.read(name)
    params = list(g.params())
    assert [p.shape for p in params] == [tuple(v.shape) for v in model.weights]
    assert [p.role for p in params] == [_role_of_variable(v) for v in model.weights]
    kx.same(zip(params, (v.numpy() for v in model.weights), strict=True))


@pytest.mark.parametrize("name, build", [("k3_convs.weights.h5", "k3_convs"),
                                         ("k3_mixed.weights.h5", "k3_mixed")])
def test_bare_data_equals_what_keras_loads(kx, keras3, name, build):
    keras3.backend.clear_session()
    model = getattr(kx.gen(), build)()
    model.load_weights(str(kx.fixture(name)))
    kx.same(zip(kx.read(name).params(), (v.numpy() for v in model.weights), strict=True))


def test_deflated_zip_reads_through_zipfile(kx, tmp_path):
    src, dst = kx.fixture("k3_convs.keras"), tmp_path / "deflated.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    stored, deflated = kx.read(src), kx.read(dst)
    assert kx.specs(deflated) == kx.specs(stored)
    assert all(isinstance(p.data, CallableData) for p in deflated.params())
    kx.same((p, q.read()) for p, q in zip(deflated.params(), stored.params()))


def test_new_style_groups_fall_back_to_natural_sort(kx, tmp_path):
    """A file rewritten with libver='latest' keeps no name heap: the order falls back to
    natural sort (right within a class, not across classes) and says so."""
    dst = tmp_path / "latest.weights.h5"
    with h5py.File(kx.fixture("k3_convs.weights.h5")) as fin, \
            h5py.File(dst, "w", libver="latest") as fout:
        for key in fin:
            fin.copy(fin[key], fout, name=key)
        for key, value in fin.attrs.items():
            fout.attrs[key] = value
    g = kx.read(dst)
    assert g.meta["order_source"] == "natural-sort"
    names = [l.name for l in g.layers]
    assert names[:4] == ["batch_normalization", "batch_normalization_1",
                         "batch_normalization_2", "batch_normalization_3"]
    assert names[4:] == [f"conv2d{s}" for s in [""] + [f"_{i}" for i in range(1, 12)]] + \
        ["dense"]
    kx.same((p, kx.read("k3_convs.weights.h5").param(p.name).read()) for p in g.params())


def test_config_and_weights_of_different_models_are_refused(kx, tmp_path):
    dst = tmp_path / "mismatch.keras"
    with zipfile.ZipFile(kx.fixture("k3_mixed.keras")) as a, \
            zipfile.ZipFile(kx.fixture("k3_convs.keras")) as b, zipfile.ZipFile(dst, "w") as z:
        z.writestr("config.json", a.read("config.json"))
        z.writestr("metadata.json", a.read("metadata.json"))
        z.writestr("model.weights.h5", b.read("model.weights.h5"))
    with pytest.raises(FormatError, match="different models"):
        kx.read(dst)


def test_zip_without_weights_or_with_bad_json(kx, tmp_path):
    from weightmap_keras import ADAPTER
    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(FormatError, match="model.weights.h5"):
        ADAPTER.read(no_weights, "keras-zip")
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(kx.fixture("k3_convs.keras")) as src, zipfile.ZipFile(bad, "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", src.read("model.weights.h5"))
    with pytest.raises(FormatError, match="config.json is not valid JSON"):
        ADAPTER.read(bad, "keras-zip")


def test_lambda_and_custom_layer_stay_data(kx, tmp_path):
    """The Lambda's function (marshalled bytecode in config.json) is never run: reading specs
    and data with the frameworks blocked leaves the sentinel untouched."""
    sentinel = tmp_path / "lambda_ran"
    config = json.loads(zipfile.ZipFile(kx.fixture("k3_lambda.keras")).read("config.json"))
    lam = next(l for l in config["config"]["layers"] if l["class_name"] == "Lambda")
    assert lam["config"]["function"]["class_name"] == "__lambda__"      # code is in the file
    result = kx.run_blocked(f"""
        import os
        os.environ["WEIGHTMAP_LAMBDA_SENTINEL"] = {str(sentinel)!r}
        from pathlib import Path
        from weightmap_keras import ADAPTER
        g = ADAPTER.read(Path({str(kx.fixture("k3_lambda.keras"))!r}), "keras-zip")
        total = sum(float(p.read().sum()) for p in g.params())
        print([(l.name, l.op, l.source_type) for l in g.layers], g.meta["weightless_layers"])
    """)
    assert result.returncode == 0, result.stderr
    assert "[('dense', 'dense', 'Dense'), ('scale', 'opaque', 'Scale'), " \
           "('dense_1', 'dense', 'Dense')] ['lambda']" in result.stdout
    assert not sentinel.exists()
    scale = kx.read("k3_lambda.keras").layer("scale")
    assert [(p.name, p.role, p.shape, p.axes) for p in scale.params] == \
        [("layers/scale/vars/0", "other", (3,), None)]


def test_keras_itself_would_run_the_lambda(kx, keras3, scale_layer, tmp_path, monkeypatch):
    """The control for the test above: the fixture's Lambda does touch the sentinel when Keras
    deserializes it with safe_mode off, and Keras refuses it in safe mode."""
    sentinel = tmp_path / "keras_ran"
    monkeypatch.setenv("WEIGHTMAP_LAMBDA_SENTINEL", str(sentinel))
    path = str(kx.fixture("k3_lambda.keras"))
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras3.saving.load_model(path, compile=False)
    assert not sentinel.exists()
    model = keras3.saving.load_model(path, compile=False, safe_mode=False)
    model(np.zeros((1, 4), "float32"))
    assert sentinel.exists()


def test_channels_first_flatten_shapes(kx):
    g = kx.read("k3_channels_first.keras")
    assert g.layer("conv2d").attrs["data_format"] == "channels_first"
    cl, cf = g.layer("dense_cl"), g.layer("dense_cf")
    # Flatten(channels_last) of a (2, 6, 6) tensor enumerates c, h, w
    assert (cl.attrs["flatten_input_shape"], cl.attrs["data_format"]) == \
        ((2, 6, 6), "channels_first")
    # Flatten(channels_first) moves channels last first: h, w, c
    assert (cf.attrs["flatten_input_shape"], cf.attrs["data_format"]) == \
        ((6, 6, 2), "channels_last")


def test_flatten_data_format_semantics_match_keras(keras3):
    """What the flatten attributes claim, checked on Keras' own Flatten layer."""
    x = np.arange(2 * 3 * 4 * 5, dtype="float32").reshape(2, 3, 4, 5)
    last = keras3.layers.Flatten(data_format="channels_last")(x)
    first = keras3.layers.Flatten(data_format="channels_first")(x)
    np.testing.assert_array_equal(np.asarray(last), x.reshape(2, -1))
    np.testing.assert_array_equal(np.asarray(first), x.transpose(0, 2, 3, 1).reshape(2, -1))


def test_truncated_weights_file_is_a_format_error(kx, tmp_path):
    from weightmap_keras import ADAPTER
    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(kx.fixture("k3_convs.weights.h5").read_bytes()[:5000])
    with pytest.raises(FormatError):
        ADAPTER.read(cut, "keras3-weights-h5")


def test_subclassed_model_file_keeps_every_variable(kx, keras3, tmp_path):
    """No ``layers`` list: each saved object becomes a layer named by its path; the class comes
    from the object's auto-generated name."""
    class Net(keras3.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras3.layers.Conv2D(2, 3)
            self.blocks = [keras3.layers.Dense(3), keras3.layers.Dense(3)]
            self.extra = self.add_weight(shape=(3,), name="extra")

        def call(self, x):
            x = keras3.layers.Flatten()(self.conv(x))
            for block in self.blocks:
                x = block(x)
            return x * self.extra

    net = Net()
    net(np.zeros((1, 5, 5, 3), "float32"))
    path = tmp_path / "net.weights.h5"
    net.save_weights(path)
    g = kx.read(path)
    assert [(l.name, l.op, [p.role for p in l.params]) for l in g.layers] == [
        ("blocks/dense", "dense", ["kernel", "bias"]),
        ("blocks/dense_1", "dense", ["kernel", "bias"]),
        ("conv", "conv2d", ["kernel", "bias"]),
        (net.name, "opaque", ["other"])]
    by_path = {"blocks/dense": net.blocks[0], "blocks/dense_1": net.blocks[1], "conv": net.conv}
    kx.same((p, w) for l in g.layers[:3]
            for p, w in zip(l.params, by_path[l.name].get_weights(), strict=True))
    kx.same([(g.layers[3].params[0], net.extra.numpy())])


def test_an_object_name_that_is_not_utf8_is_a_format_error(tmp_path):
    import h5py

    from weightmap.errors import FormatError
    from weightmap.reading.read import read
    path = tmp_path / "bad.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "model"
        f.create_group("layers/dense/vars").create_dataset("0", data=np.ones((2, 3), np.float32))
        f.create_group(b"layers/\xff\xfe")
    with pytest.raises(FormatError, match="not valid UTF-8") as caught:
        read(str(path))
    assert caught.value.path == str(path)
