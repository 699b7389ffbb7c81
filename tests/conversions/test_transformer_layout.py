"""Conv1D (in, out) kernels: family marking, orientation by fit, square kernels by their family.
Numpy only (state dicts as dicts of arrays), except the live-module test."""
import numpy as np
import pytest

import weightmap
from weightmap.api import plan as make_plan
from weightmap.planning.passes import prepare_graphs
from weightmap.planning.conversions.transformer_layout import (IN_OUT, OUT_IN, Pending,
                                                               conv1d_layout, orient)
from weightmap.errors import ConversionError, UsageError
from weightmap.transform.execute import produce
from weightmap.graph import Param

E, V, P = 8, 11, 6


def hf_state(seed=0, layers=2, conv1d=True):
    """A GPT-2 state dict; ``conv1d=False`` stores the same kernels as nn.Linear (nanoGPT)."""
    rng = np.random.default_rng(seed)
    out = {"transformer.wte.weight": rng.standard_normal((V, E)),
           "transformer.wpe.weight": rng.standard_normal((P, E))}
    for i in range(layers):
        h = f"transformer.h.{i}"
        for name, n_in, n_out in (("attn.c_attn", E, 3 * E), ("attn.c_proj", E, E),
                                  ("mlp.c_fc", E, 4 * E), ("mlp.c_proj", 4 * E, E)):
            shape = (n_in, n_out) if conv1d else (n_out, n_in)
            out[f"{h}.{name}.weight"] = rng.standard_normal(shape)
            out[f"{h}.{name}.bias"] = rng.standard_normal(n_out)
        for ln in ("ln_1", "ln_2"):
            out[f"{h}.{ln}.weight"] = rng.standard_normal(E)
            out[f"{h}.{ln}.bias"] = rng.standard_normal(E)
    out["transformer.ln_f.weight"] = rng.standard_normal(E)
    out["transformer.ln_f.bias"] = rng.standard_normal(E)
    return {k: v.astype(np.float32) for k, v in sorted(out.items())}     # name-sorted, as HF


def linear_state(seed=1, layers=2):
    """The same network written with nn.Linear (out, in), other names, in forward order."""
    rng = np.random.default_rng(seed)
    out = {"tok_emb.weight": rng.standard_normal((V, E)),
           "pos_emb.weight": rng.standard_normal((P, E))}
    for i in range(layers):
        b = f"blocks.{i}"
        for name, n_in, n_out in (("norm1", 0, E), ("attn.qkv", E, 3 * E), ("attn.proj", E, E),
                                  ("norm2", 0, E), ("mlp.fc1", E, 4 * E), ("mlp.fc2", 4 * E, E)):
            shape = (n_out, n_in) if n_in else (n_out,)
            out[f"{b}.{name}.weight"] = rng.standard_normal(shape)
            out[f"{b}.{name}.bias"] = rng.standard_normal(n_out)
    out["norm.weight"], out["norm.bias"] = np.ones(E), np.zeros(E)
    return {k: v.astype(np.float32) for k, v in out.items()}


def ported(source, target, **options):
    plan = make_plan(source, target, **options)
    values = dict((t.target, a) for t, a in produce(plan, weightmap.read(source),
                                                      weightmap.read(target)))
    return plan, values


def test_family_of_a_state_dict_loses_its_labels_before_matching():
    src, tgt = prepare_graphs(weightmap.read(hf_state()), weightmap.read(linear_state()))
    layer = src.layer("transformer.h.0.attn.c_proj")
    assert layer.attrs["layout_from"] == "undecided"
    assert layer.attrs["conv1d_family"] == "c_attn/c_proj/c_fc"
    assert [(p.role, p.axes) for p in layer.params] == [("bias", ("out",)), ("kernel", None)]
    assert src.layer("transformer.wte").params[0].axes == ("vocab", "dim")
    assert tgt.layer("blocks.0.attn.proj").params[0].axes == ("out", "in")
    assert "layout_from" not in tgt.layer("blocks.0.attn.proj").attrs


def test_option_gives_the_layout():
    state = weightmap.read(hf_state())
    src, _ = conv1d_layout(state, state, {"conv1d_layout": "in,out"})
    layer = src.layer("transformer.h.1.mlp.c_fc")
    assert layer.param("kernel").axes == IN_OUT
    assert layer.attrs["layout_from"] == "option conv1d_layout"
    src, tgt = conv1d_layout(state, state, {"conv1d_layout": {"target": "out,in"}})
    assert src.layer("transformer.h.1.mlp.c_fc").param("kernel").axes is None
    assert tgt.layer("transformer.h.1.mlp.c_fc").param("kernel").axes == OUT_IN
    with pytest.raises(UsageError, match="conv1d_layout"):
        conv1d_layout(state, state, {"conv1d_layout": "rows"})


def _param(name, shape, axes):
    return Param(name, "kernel", shape, "float32", axes)


def test_orient_by_the_one_layout_that_fits():
    steps, notes, fit = orient(_param("s", (8, 24), None), _param("t", (24, 8), OUT_IN), True,
                               False)
    assert [s.to_dict() for s in steps] == [{"op": "transpose", "perm": [1, 0]}]
    assert notes[0] == "source kernel stored (in,out): the only layout that fits (8, 24)"
    assert fit == ("source", "in,out")
    steps, notes, fit = orient(_param("s", (24, 8), OUT_IN), _param("t", (8, 24), None), False,
                               True)
    assert notes[0] == "target kernel stored (in,out): the only layout that fits (8, 24)"
    assert fit == ("target", "in,out")
    steps, notes, fit = orient(_param("s", (24, 8), None), _param("t", (24, 8), OUT_IN), True,
                               False)
    assert steps == [] and notes[0].startswith("source kernel stored (out,in)")
    assert fit == ("source", "out,in")
    assert orient(_param("s", (24, 8), OUT_IN), _param("t", (24, 8), OUT_IN), False, False)[2] \
        is None


def test_orient_never_decides_a_square_kernel_or_two_unknowns():
    with pytest.raises(Pending) as exc:
        orient(_param("s", (8, 8), None), _param("t", (8, 8), OUT_IN), True, False)
    assert str(exc.value) == "source"
    with pytest.raises(ConversionError, match="both sides"):
        orient(_param("s", (8, 24), None), _param("t", (24, 8), None), True, True)
    with pytest.raises(ConversionError, match="neither"):
        orient(_param("s", (8, 24), None), _param("t", (8, 8), OUT_IN), True, False)


def test_hf_state_dict_into_linear_kernels():
    src = hf_state()
    plan, got = ported(src, linear_state())
    for i in range(2):
        h, b = f"transformer.h.{i}", f"blocks.{i}"
        for t, s, transposed in (("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj",
                                 True), ("mlp.fc2", "mlp.c_proj", True), ("norm1", "ln_1", False),
                                 ("norm2", "ln_2", False)):
            want = src[f"{h}.{s}.weight"]
            np.testing.assert_array_equal(got[f"{b}.{t}.weight"], want.T if transposed else want)
    proj = next(t for t in plan.tensors if t.target == "blocks.1.attn.proj.weight")
    assert proj.notes[0] == ("source layout (in,out) inferred from 6 non-square tensors of the "
                             "same family")
    assert any(d.startswith("source Conv1D-style kernels (c_attn/c_proj/c_fc)") and
               "2 square kernel(s) read as (in,out); layout (in,out) inferred from 6 non-square"
               in d for d in plan.decisions)
    assert not plan.unused


def test_nanogpt_state_dict_keeps_out_in():
    """Same names, nn.Linear kernels: the family says (out,in), so the square one is copied."""
    src = hf_state(conv1d=False)
    plan, got = ported(src, linear_state())
    np.testing.assert_array_equal(got["blocks.0.attn.proj.weight"],
                                  src["transformer.h.0.attn.c_proj.weight"])
    np.testing.assert_array_equal(got["blocks.0.attn.qkv.weight"],
                                  src["transformer.h.0.attn.c_attn.weight"])
    assert any("layout (out,in) inferred from 6 non-square" in d for d in plan.decisions)


def test_family_that_disagrees_leaves_square_kernels_new():
    src = hf_state(layers=1)
    src["transformer.h.0.mlp.c_fc.weight"] = np.ascontiguousarray(
        src["transformer.h.0.mlp.c_fc.weight"].T)          # (4E, E): fits only (out,in)
    plan = make_plan(src, linear_state(layers=1))
    proj = next(t for t in plan.tensors if t.target == "blocks.0.attn.proj.weight")
    assert proj.status == "new" and not proj.sources
    assert "undecided" in proj.notes[0]
    assert any("disagree (2 fit (in,out), 1 fit (out,in))" in d and "conv1d_layout" in d
               for d in plan.decisions)
    assert "transformer.h.0.attn.c_proj.weight" in {u["name"] for u in plan.unused}


def test_family_without_non_square_kernels_stays_undecided():
    rng = np.random.default_rng(3)
    src = {"h.0.attn.c_proj.weight": rng.standard_normal((E, E)).astype(np.float32),
           "h.0.attn.c_proj.bias": np.zeros(E, np.float32)}
    tgt = {"blocks.0.proj.weight": np.zeros((E, E), np.float32),
           "blocks.0.proj.bias": np.zeros(E, np.float32)}
    plan = make_plan(src, tgt)
    w = next(t for t in plan.tensors if t.target == "blocks.0.proj.weight")
    assert w.status == "new"
    assert any("no non-square tensor of the family" in d for d in plan.decisions)
    plan, got = ported(src, tgt, conv1d_layout="in,out")
    np.testing.assert_array_equal(got["blocks.0.proj.weight"], src["h.0.attn.c_proj.weight"].T)
    assert any("layout from option conv1d_layout" in d for d in plan.decisions)


def test_linear_kernels_into_a_conv1d_state_dict_target():
    src = linear_state()
    plan, got = ported(src, hf_state(seed=5))
    np.testing.assert_array_equal(got["transformer.h.0.attn.c_attn.weight"],
                                  src["blocks.0.attn.qkv.weight"].T)
    np.testing.assert_array_equal(got["transformer.h.1.attn.c_proj.weight"],
                                  src["blocks.1.attn.proj.weight"].T)
    assert any(d.startswith("target Conv1D-style kernels") for d in plan.decisions)


def test_live_conv1d_module_is_a_dense_layer_stored_in_out():
    torch = pytest.importorskip("torch")

    class Conv1D(torch.nn.Module):                     # Hugging Face's, as transformers has it
        def __init__(self, nf, nx):
            super().__init__()
            self.nf = nf
            self.weight = torch.nn.Parameter(torch.randn(nx, nf))
            self.bias = torch.nn.Parameter(torch.zeros(nf))

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = Conv1D(3 * E, E), Conv1D(E, E)

    layer = weightmap.read(Attn()).layer("c_proj")
    assert layer.op == "dense" and layer.source_type == "Conv1D"
    assert [(p.role, p.axes) for p in layer.params] == [("kernel", IN_OUT), ("bias", ("out",))]
    assert layer.attrs["layout_from"] == "module type Conv1D"
    assert layer.attrs["in_features"] == E and layer.attrs["out_features"] == E
