"""Live Keras models describe the same graph as the files they are saved to."""
from __future__ import annotations

import numpy as np
import pytest

from weightmap.errors import UsageError
from weightmap.graph import ArrayData


def _layers(graph):
    return [l.describe() for l in graph.layers]


@pytest.mark.parametrize("name", ["tfk_vgg.h5", "tfk_seq.h5", "k3_convs.keras",
                                  "k3_mixed.keras", "k3_lambda.keras",
                                  "k3_channels_first.keras"])
def test_live_model_equals_its_file(kx, loaded, name):
    from weightmap_keras import ADAPTER
    model = loaded(name)
    assert ADAPTER.accepts(model)
    live, stored = ADAPTER.read_live(model), kx.read(name)
    # a tf_keras model lists its layers in its config's order (topological); Keras 3's live
    # reader walks the objects it tracks
    order = "config" if name.startswith("tfk") else "registration"
    assert (live.format, live.framework, live.order) == ("keras-live", "keras", order)
    assert live.live is model
    assert _layers(live) == _layers(stored)
    assert all(isinstance(p.data, ArrayData) for p in live.params())
    kx.same((p, stored.param(p.name).read()) for p in live.params())


@pytest.mark.parametrize("name, build", [("k3_convs.weights.h5", "k3_convs"),
                                         ("tfk_vgg_weights_only.h5", "tfk_vgg")])
def test_live_names_equal_the_weights_only_file(kx, keras3, tf_keras, name, build):
    """A freshly built model (auto names differ from the saved ones) still has the file's
    parameter names, roles and shapes: the names are paths, not layer names."""
    from weightmap_keras import ADAPTER
    (tf_keras if name.startswith("tfk") else keras3).backend.clear_session()
    model = getattr(kx.gen(), build)()
    model.load_weights(str(kx.fixture(name)))
    live, stored = ADAPTER.read_live(model), kx.read(name)
    assert [(p.name, p.role, p.shape, p.axes) for p in live.params()] == \
        [(p.name, p.role, p.shape, p.axes) for p in stored.params()]
    kx.same((p, stored.param(p.name).read()) for p in live.params())


def test_live_flatten_shape_comes_from_the_built_model(kx, tf_keras, tmp_path):
    """A Lambda hides the shape from the config (tf_keras configs carry no built shapes), so the
    saved file cannot size the Flatten; the live model can."""
    from weightmap_keras import ADAPTER
    L = tf_keras.layers
    model = tf_keras.Sequential([L.InputLayer(input_shape=(6, 6, 3)),
                                 L.Lambda(lambda t: t[:, ::2, ::2, :], name="every_other"),
                                 L.Flatten(name="flat"), L.Dense(2, name="head")])
    head = ADAPTER.read_live(model).layer("head")
    assert (head.attrs["flatten_input_shape"], head.attrs["data_format"]) == \
        ((3, 3, 3), "channels_last")
    path = tmp_path / "lambda.h5"
    model.save(path, save_format="h5")
    assert "flatten_input_shape" not in kx.read(path).layer("head").attrs


def test_subclassed_keras3_model_equals_its_weights_file(kx, keras3, tmp_path):
    from weightmap_keras import ADAPTER

    class Net(keras3.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras3.layers.Conv2D(2, 3)
            self.head = keras3.layers.Dense(2)

        def call(self, x):
            return self.head(keras3.layers.Flatten()(self.conv(x)))

    net = Net()
    net(np.zeros((1, 5, 5, 3), "float32"))
    path = tmp_path / "net.weights.h5"
    net.save_weights(path)
    live, stored = ADAPTER.read_live(net), kx.read(path)
    assert live.meta["order_source"] == "walk"
    assert [(l.name, l.op, [(p.name, p.role, p.shape) for p in l.params]) for l in live.layers] \
        == [(l.name, l.op, [(p.name, p.role, p.shape) for p in l.params]) for l in stored.layers]
    assert live.layer("conv").attrs["filters"] == 2        # from the object's own config
    kx.same((p, stored.param(p.name).read()) for p in live.params())


def test_unbuilt_model_is_refused(keras3):
    from weightmap_keras import ADAPTER
    model = keras3.Sequential([keras3.layers.Dense(2)])
    with pytest.raises(UsageError, match="not built"):
        ADAPTER.read_live(model)
    graph = ADAPTER.read_live(model, example_input=np.zeros((1, 3), "float32"))
    assert [(p.name, p.shape) for p in graph.params()] == \
        [("layers/dense/vars/0", (3, 2)), ("layers/dense/vars/1", (2,))]


def test_accepts_keras_objects_only(keras3, tf_keras):
    from weightmap_keras import ADAPTER
    assert ADAPTER.accepts(keras3.layers.Dense(2))
    assert ADAPTER.accepts(tf_keras.layers.Dense(2))
    assert not ADAPTER.accepts(np.zeros(3))
    assert not ADAPTER.accepts({"a": np.zeros(3)})
    assert not ADAPTER.accepts(keras3.Variable(np.zeros(2)))


def test_single_layers_are_read_too(keras3, tf_keras):
    from weightmap_keras import ADAPTER
    k3 = keras3.layers.Dense(2, name="solo")
    k3.build((None, 3))
    k2 = tf_keras.layers.Conv1D(2, 3, name="solo2")
    k2.build((None, 5, 4))
    g3, g2 = ADAPTER.read_live(k3), ADAPTER.read_live(k2)
    assert [(l.name, l.op, [(p.name, p.role, p.shape) for p in l.params]) for l in g3.layers] \
        == [("solo", "dense", [("vars/0", "kernel", (3, 2)), ("vars/1", "bias", (2,))])]
    assert [(l.name, l.op, [(p.name, p.role, p.shape) for p in l.params]) for l in g2.layers] \
        == [("solo2", "conv1d", [("kernel:0", "kernel", (3, 4, 2)),    # tf_keras' own names
                                 ("bias:0", "bias", (2,))])]
    np.testing.assert_array_equal(g3.layers[0].params[0].read(), k3.kernel.numpy())


def test_a_users_subclass_of_sequential_keeps_the_config_path(kx, keras3, tmp_path):
    from weightmap_keras import ADAPTER

    class MySeq(keras3.Sequential):
        pass

    model = MySeq([keras3.Input((3,)), keras3.layers.Dense(2, name="a"),
                   keras3.layers.Dense(4, name="b")])
    path = tmp_path / "myseq.weights.h5"
    model.save_weights(path)
    live, stored = ADAPTER.read_live(model), kx.read(path)
    assert live.meta["model_class"] == "Sequential"
    assert [(l.name, [p.name for p in l.params]) for l in live.layers] == \
        [(l.name, [p.name for p in l.params]) for l in stored.layers] == \
        [("a", ["layers/dense/vars/0", "layers/dense/vars/1"]),
         ("b", ["layers/dense_1/vars/0", "layers/dense_1/vars/1"])]
