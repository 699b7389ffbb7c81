"""The traced forward: first-call order, flatten shapes, modes and hooks restored."""
from __future__ import annotations

import pytest

from weightmap.errors import UsageError
from weightmap_torch import live_trace

torch = pytest.importorskip("torch")
nn = torch.nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * 3 * 3, 4)        # registered first, called last
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.flat = nn.Flatten()
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        return self.fc(self.flat(self.bn(self.conv(x))))


def test_first_calls_and_flatten_shape():
    net = Net()
    trace = live_trace.run(net, torch.randn(2, 1, 3, 3), torch)
    order = sorted(trace.first_call, key=trace.first_call.get)
    assert order == [id(net), id(net.conv), id(net.bn), id(net.flat), id(net.fc)]
    assert trace.flatten_shape == {id(net.fc): (2, 3, 3)}


def test_flatten_shape_needs_matching_in_features():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = nn.Flatten()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.flat(x)[:, :3])
    assert live_trace.run(Odd(), torch.randn(1, 2, 2, 2), torch).flatten_shape == {}


def test_modes_restored_per_module_and_stats_untouched():
    net = Net()
    net.train()
    net.conv.eval()
    before = net.bn.running_mean.clone()
    live_trace.run(net, torch.randn(4, 1, 3, 3), torch)
    assert net.training and net.bn.training and not net.conv.training
    assert torch.equal(net.bn.running_mean, before) and net.bn.num_batches_tracked == 0


def test_failure_is_a_usage_error_and_cleans_up():
    net = Net()
    net.train()
    with pytest.raises(UsageError, match="running example_input through the model failed"):
        live_trace.run(net, torch.randn(2, 5), torch)
    assert net.training and net.bn.training
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_tuple_and_dict_inputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x, y=None):
            return self.b(y) + self.a(x)
    two = Two()
    x = torch.randn(1, 2)
    by_tuple = live_trace.run(two, (x, x), torch)
    by_dict = live_trace.run(two, {"x": x, "y": x}, torch)
    for trace in (by_tuple, by_dict):
        assert trace.first_call[id(two.b)] < trace.first_call[id(two.a)]


class Branchy(nn.Module):
    """A residual block whose shortcut runs first, pooled features into a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.main = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.short = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)
        self.drop = nn.Dropout()

    def forward(self, x):
        x = torch.relu(self.stem(x))
        identity = self.short(x)
        x = torch.relu(self.norm(self.main(x)) + identity)
        return self.fc(self.drop(x.mean((2, 3))))


def test_fed_by_follows_tensors_through_functions():
    net = Branchy()
    trace = live_trace.run(net, torch.randn(2, 1, 5, 5), torch)
    fed = {name: {n for n, m in net.named_modules() if id(m) in trace.fed_by[id(mod)]}
           for name, mod in net.named_modules() if id(mod) in trace.fed_by}
    assert fed == {"stem": set(), "short": {"stem"}, "main": {"stem"}, "norm": {"main"},
                   "fc": {"norm", "short"}}
    assert trace.reads_features == {id(net.fc)} and trace.flatten_shape == {}


def test_a_flatten_through_dropout_is_kept_and_a_slice_of_it_is_nobodys():
    class Flat(nn.Module):
        def __init__(self, cut):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(6 if cut else 18, 2)
            self.cut = cut

        def forward(self, x):
            x = nn.functional.dropout(self.conv(x).view(x.shape[0], -1), 0.5, False)
            return self.fc(x[:, :6] if self.cut else x)
    whole, cut = Flat(False), Flat(True)
    assert live_trace.run(whole, torch.randn(2, 1, 3, 3), torch).flatten_shape == {
        id(whole.fc): (2, 3, 3)}
    traced = live_trace.run(cut, torch.randn(2, 1, 3, 3), torch)
    assert traced.flatten_shape == {} and traced.reads_features == set()
