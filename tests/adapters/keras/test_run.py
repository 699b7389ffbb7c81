"""Running Keras models for verification: rebuilt from built-in configs only, layer outputs,
weights loaded and a caller's model given back as it was."""
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from weightmap.errors import VerifyError
from weightmap_keras import run as keras_run

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[3]
HOSTILE = ROOT / "fixtures" / "hostile" / "keras"


def _open(kx, name, **kw):
    path = name if isinstance(name, Path) else kx.fixture(name)
    graph = kx.read(path)
    from weightmap.sources import detect
    _, fmt = detect(path)
    return keras_run.run_file(path, fmt, graph=graph, **kw)


@pytest.mark.parametrize("path,why", [
    (HOSTILE / "lambda_and_module_refs.keras", "carries code|from module 'os'"),
    (HOSTILE / "legacy_lambda.h5", "Lambda layer, which carries code"),
    (ROOT / "fixtures" / "keras" / "k3_lambda.keras", "Lambda layer, which carries code"),
    (ROOT / "fixtures" / "keras" / "k3_convs.weights.h5", "holds weights only"),
    (ROOT / "fixtures" / "keras" / "tfk_vgg_weights_only.h5", "holds weights only"),
])
def test_code_and_weights_only_files_are_never_run(kx, path, why):
    with pytest.raises(VerifyError, match=why):
        _open(kx, path)


def test_config_refusals_read_the_json_only():
    custom = {"class_name": "Functional", "config": {"layers": [
        {"module": "my_package.layers", "class_name": "Scale", "config": {}}]}}
    with pytest.raises(VerifyError, match="not a built-in Keras class"):
        keras_run.refuse_code(custom, "x")
    registered = {"class_name": "Dense", "module": "keras.layers",
                  "registered_name": "my_package>Dense"}
    with pytest.raises(VerifyError, match="custom object"):
        keras_run.refuse_code(registered, "x")
    tf_keras_style = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "NotAKerasLayer", "config": {}}]}}
    keras_run.refuse_code(tf_keras_style, "x")            # names only: checked against Keras
    keras = pytest.importorskip("keras")
    with pytest.raises(VerifyError, match="NotAKerasLayer, not built-in"):
        keras_run.check_builtin(tf_keras_style, keras, "x")


def test_a_keras3_file_runs_with_layer_outputs(kx):
    pytest.importorskip("keras")
    runner = _open(kx, "k3_convs.keras")
    spec, = runner.inputs()
    assert spec.shape[0] is None and spec.origin == "Keras input" and spec.dtype == "float32"
    config = json.loads(zipfile.ZipFile(kx.fixture("k3_convs.keras")).read("config.json"))
    names = [l["config"]["name"] for l in config["config"]["layers"][1:4]]
    x = np.random.default_rng(0).standard_normal((2,) + tuple(spec.shape[1:]))
    run = runner.run([x.astype(np.float32)], names + ["nope"])
    assert set(run.layers) == set(names) and run.skipped == {
        "nope": "no layer of this name in the model"}
    assert run.layers[names[0]].shape[:1] == (2,) and len(run.outputs) == 1
    assert run.described[names[0]][0] == "conv2d"
    assert "rebuilt from the config of k3_convs.keras" in runner.description


def test_a_legacy_full_model_runs_in_tf_keras(kx):
    pytest.importorskip("tf_keras")
    runner = _open(kx, "tfk_vgg.h5")
    assert runner.keras.__name__ == "tf_keras"
    spec, = runner.inputs()
    run = runner.run([np.zeros((2,) + tuple(spec.shape[1:]), np.float32)], ["block1_conv1"])
    assert run.layers["block1_conv1"].shape[0] == 2


def test_a_callers_model_gets_its_weights_back(kx, tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    before = [w.copy() for w in model.get_weights()]
    other = keras.models.clone_model(model)
    other.set_weights([w + 1 for w in before])
    other.save_weights(tmp_path / "other.weights.h5")
    from weightmap import read
    runner = keras_run.run_live(model, graph=read(model), weights=tmp_path / "other.weights.h5")
    run = runner.run([np.ones((2, 3), np.float32)], ["d"])
    np.testing.assert_allclose(run.outputs[0][1], other(np.ones((2, 3), np.float32)),
                               rtol=1e-6)
    runner.close()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_subclassed_model_compares_its_outputs_only():
    keras = pytest.importorskip("keras")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)
    model = Sub()
    model(np.zeros((1, 3), np.float32))
    from weightmap import read
    runner = keras_run.run_live(model, graph=read(model))
    assert runner.inputs() == []
    run = runner.run([np.ones((2, 3), np.float32)], ["d"])
    assert run.outputs[0][1].shape == (2, 2)
    assert "subclassed" in run.skipped["d"]


def test_tf_keras_layer_names_with_a_slash_are_ordinary_layers(kx, tf_keras, tmp_path):
    """tf_keras allows ``/`` in a layer name (DenseNet121's ``conv1/conv``, ``conv1/bn``):
    such a layer is one of the model's own and its output is taken; a layer of a nested model
    (graph name ``inner/dense``) is not (before: both skipped as nested)."""
    tf_keras.utils.set_random_seed(0)
    inner = tf_keras.Sequential([tf_keras.layers.Dense(4, name="dense")], name="inner")
    x = tf_keras.Input((6, 6, 3))
    y = tf_keras.layers.Conv2D(4, 3, padding="same", name="conv1/conv")(x)
    y = tf_keras.layers.BatchNormalization(name="conv1/bn")(y)
    y = tf_keras.layers.GlobalAveragePooling2D(name="pool")(y)
    model = tf_keras.Model(x, inner(y))
    path = tmp_path / "slash.h5"
    model.save(path)
    graph = kx.read(path)
    assert {"conv1/conv", "conv1/bn", "inner/dense"} <= {l.name for l in graph.layers}
    runner = _open(kx, path)
    feed = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    run = runner.run([feed], ["conv1/conv", "conv1/bn", "inner/dense"])
    want = tf_keras.Model(x, model.get_layer("conv1/bn").output)(feed, training=False)
    np.testing.assert_allclose(run.layers["conv1/bn"], want, rtol=1e-6)
    assert set(run.layers) == {"conv1/conv", "conv1/bn"}
    assert run.skipped == {"inner/dense": "a layer of a nested model: its output is not one "
                                          "of this model's"}
    assert run.described["conv1/bn"][0] == "batchnorm"
