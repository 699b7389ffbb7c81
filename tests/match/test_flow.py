"""Names against data flow (weightmap/match/flow.py): same-shaped layers whose names pair them
the other way round than the order both traced models run them in pair by that order, and the
report says so in a check: line."""
import textwrap

import numpy as np
import pytest

from weightmap.dataflow import FED_BY
from weightmap.graph import Layer
from weightmap.match import match

TARGET = '''
import torch
from torch import nn

class Net(nn.Module):
    # a refactor renamed the attributes: the second conv is called conv3, the third conv2
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))

model = Net()
{example}
'''


def pairs(m):
    return {lm.target: lm.source for lm in m.layers}


@pytest.fixture(scope="module")
def keras_chain(tmp_path_factory):
    """A tf_keras conv1 -> conv2 -> conv3 -> head functional model, random weights, its .h5
    and its outputs on a seeded input."""
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(1)
    L = tf_keras.layers
    i = tf_keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(i)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(x)
    o = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x))
    model = tf_keras.Model(i, o)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                           for w in layer.get_weights()])
    path = tmp_path_factory.mktemp("flow") / "src.h5"
    model.save(path)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    return path, x, model.predict(x, verbose=0)


def _target(tmp_path, example):
    path = tmp_path / "renamed.py"
    path.write_text(TARGET.format(example=textwrap.dedent(example)))
    return path


def test_names_contradicting_both_traced_orders_pair_by_the_order(keras_chain, tmp_path):
    torch = pytest.importorskip("torch")
    import weightmap
    from safetensors.torch import load_file
    src, x, expected = keras_chain
    target = _target(tmp_path, "def example_input():\n    return torch.zeros(1, 3, 8, 8)\n")
    out = tmp_path / "out.safetensors"
    report = weightmap.port(src, f"{target}:model", out)
    man = report.manifest["params"]
    assert man["conv3.weight"]["source"] == ["conv2/kernel:0"]
    assert man["conv2.weight"]["source"] == ["conv3/kernel:0"]
    checks = [d for d in report.decisions if "contradict the data flow" in d]
    assert len(checks) == 1 and "conv2 <- conv3" in checks[0] and "conv3 <- conv2" in checks[0]
    assert any(line == f"check: {checks[0]}" for line in str(report).splitlines())
    # what the ported model computes is what the Keras model computes
    ns = {}
    exec(compile(target.read_text(), str(target), "exec"), ns)
    net = ns["model"]
    net.load_state_dict(load_file(out))
    with torch.no_grad():
        got = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_without_the_target_order_names_win_and_say_so(keras_chain, tmp_path):
    pytest.importorskip("torch")
    import weightmap
    src, _, _ = keras_chain
    # no example_input: the target's order is its registration order, which a refactor may
    # change freely; names win, as the evidence says
    plan = weightmap.plan(src, f"{_target(tmp_path, '')}:model")
    planned = {t.target: t.sources for t in plan.tensors}
    assert planned["conv3.weight"] == ("conv3/kernel:0",)
    assert not any("contradict the data flow" in d for d in plan.decisions)


def test_parallel_branches_stay_ambiguous(mk):
    """Where neither layer feeds the other, the data flow decides nothing."""
    def graph(names):
        layers = [mk.keras_layer(n, "conv2d", kernel=(3, 3, 8, 8)) for n in names]
        layers = [Layer(name=l.name, op=l.op, params=l.params, attrs={FED_BY: ("stem",)})
                  for l in layers]
        return mk.keras_graph(layers, order="execution")
    m = match(graph(["a", "b"]), graph(["b", "a"]))
    assert m.layers == () and {u.kind for u in m.unmatched} == {"ambiguous"}
    assert m.checks == ()


def test_a_chain_in_both_graphs_pairs_by_position_with_a_check(mk):
    def graph(names):
        layers, prev = [], ()
        for n in names:
            l = mk.keras_layer(n, "conv2d", kernel=(3, 3, 8, 8))
            layers.append(Layer(name=l.name, op=l.op, params=l.params, attrs={FED_BY: prev}))
            prev = (n,)
        return mk.keras_graph(layers, order="execution")
    m = match(graph(["a", "b"]), graph(["b", "a"]))
    assert pairs(m) == {"b": "a", "a": "b"} and m.unmatched == ()
    assert len(m.checks) == 1 and "contradict the data flow" in m.checks[0]


def test_names_against_both_trusted_orders_win_with_a_check(mk):
    """Layers of different shapes: only the names' pairing fits, against both config orders;
    the evidence and a check: line say so."""
    def graph(names):
        return mk.keras_graph([mk.keras_layer(n, "conv2d", kernel=k) for n, k in names])
    a, b = ("a", (3, 3, 8, 8)), ("b", (3, 3, 4, 4))
    m = match(graph([a, b]), graph([b, a]))
    assert pairs(m) == {"a": "a", "b": "b"}
    crossed = [lm for lm in m.layers if any("names win" in e for e in lm.evidence)]
    assert len(crossed) == 1 and len(m.checks) == 1
    assert m.checks[0].startswith(f"{crossed[0].target} <- {crossed[0].source}: paired by name")
