"""Tracing a meta-built model without weights (adapters/weightmap_torch/meta_trace.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from weightmap.errors import UsageError  # noqa: E402
from weightmap_torch import live_trace, meta_trace  # noqa: E402

nn = torch.nn


class HFConv1D(nn.Module):
    """Hugging Face's Conv1D: ``addmm(bias, x, weight)`` with weight (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(
            *x.shape[:-1], self.nf)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = HFConv1D(6, 4)
        self.fc = nn.Linear(6, 3)
        self.w = nn.Parameter(torch.empty(3, 2))
        self.norm = nn.LayerNorm(2)

    def forward(self, x):
        return self.norm(self.fc(self.proj(x)) @ self.w)


def meta_net():
    with torch.device("meta"):
        return Net()


def test_trace_on_stand_ins_gives_the_real_order_and_restores_the_model():
    model = meta_net()
    before = {k: v for k, v in model.state_dict(keep_vars=True).items()}
    trace = meta_trace.trace(model, torch.ones(2, 5, 4), torch)
    real = live_trace.run(Net(), torch.ones(2, 5, 4), torch)
    order = sorted(trace.first_call.values())
    assert len(order) == len(real.first_call) == 4             # root, proj, fc, norm
    after = model.state_dict(keep_vars=True)
    assert all(after[k] is v for k, v in before.items())
    assert all(v.device.type == "meta" for v in after.values())


def test_stand_ins_are_zero_views_and_go_back_even_after_an_error():
    model = meta_net()
    with pytest.raises(RuntimeError):
        with meta_trace.stand_ins(model, torch) as ids:
            w = model.fc.weight
            assert w.device.type == "cpu" and tuple(w.shape) == (3, 6)
            assert float(w.abs().sum()) == 0.0 and id(w) in ids
            raise RuntimeError("boom")
    assert model.fc.weight.device.type == "meta"


def test_zero_products_answer_exactly_what_the_kernels_would():
    model = meta_net()
    x = torch.randn(2, 5, 4)
    with meta_trace.stand_ins(model, torch) as ids:
        expect = [torch.nn.functional.linear(x[..., :4].repeat(1, 1, 2)[..., :6], model.fc.weight,
                                             model.fc.bias),
                  torch.addmm(model.proj.bias, x.reshape(-1, 4), model.proj.weight),
                  torch.randn(3, 3) @ model.w]
        with meta_trace.zero_products(torch, ids):
            got = [torch.nn.functional.linear(x[..., :4].repeat(1, 1, 2)[..., :6],
                                              model.fc.weight, model.fc.bias),
                   torch.addmm(model.proj.bias, x.reshape(-1, 4), model.proj.weight),
                   torch.randn(3, 3) @ model.w]
            real_w = torch.randn(6, 3)
            assert float(torch.nn.functional.linear(torch.ones(1, 3), real_w).abs().sum()) > 0
    for a, b in zip(expect, got):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_meta_inputs_become_zeros_of_their_shape():
    value = {"ids": torch.empty(2, 3, dtype=torch.long, device="meta"),
             "extra": (torch.ones(2), [torch.empty(1, device="meta")]), "n": 3}
    cpu = meta_trace.on_cpu(value, torch)
    assert cpu["ids"].device.type == "cpu" and cpu["ids"].dtype == torch.long
    assert int(cpu["ids"].abs().sum()) == 0 and cpu["n"] == 3
    assert cpu["extra"][0] is value["extra"][0] and cpu["extra"][1][0].shape == (1,)


def test_a_forward_failing_everywhere_raises_a_usage_error():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            raise ValueError("no")

    with torch.device("meta"):
        model = Bad()
    with pytest.raises(UsageError, match="example_input"):
        meta_trace.trace(model, torch.ones(1, 2), torch)
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize("rank, kwargs", [
    (2, {}), (2, {"stride": 2, "padding": 1}), (2, {"padding": "same", "dilation": 2}),
    (2, {"padding": "valid", "groups": 2}), (1, {"stride": 3, "padding": 2, "dilation": 2}),
    (3, {"stride": (1, 2, 2), "padding": (0, 1, 1)}), (2, {"padding_mode": "reflect",
                                                           "padding": 1})])
def test_zero_convolutions_are_answered_with_the_kernels_shape(rank, kwargs):
    x = torch.randn((2, 4) + (9,) * rank)
    with torch.device("meta"):
        model = getattr(nn, f"Conv{rank}d")(4, 6, 3, **kwargs)
    with meta_trace.stand_ins(model, torch) as ids:
        expect = model(x)
        with meta_trace.zero_products(torch, ids):
            got = model(x)
            unbatched = model(x[0])
    assert got.shape == expect.shape and unbatched.shape == expect.shape[1:]
    torch.testing.assert_close(got, expect, rtol=0, atol=0)
    if model.padding_mode == "zeros":            # answered without running the kernel
        call = {"stride": model.stride, "padding": model.padding, "dilation": model.dilation,
                "groups": model.groups}
        assert meta_trace.conv_shape(x, expect.new_zeros(model.weight.shape), rank, call,
                                     torch) == tuple(expect.shape)
