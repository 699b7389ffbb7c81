"""Fused qkv ⇄ separate q/k/v (slice / concat on the out axis), numpy only: the ported layers
compute what the source layers computed."""
import dataclasses

import numpy as np

import weightmap
from weightmap.api import plan as make_plan
from weightmap.transform.execute import produce

E = 8


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def attention_state(rng, kind, q=E, kv=E, conv1d=False, blocks=1):
    """norm, attention (fused or separate), proj, norm, per block. ``q``/``kv`` out sizes."""
    out = {}
    for i in range(blocks):
        b = f"blocks.{i}"
        out[f"{b}.norm1.weight"], out[f"{b}.norm1.bias"] = _rand(rng, E), _rand(rng, E)
        if kind == "separate":
            for leaf, n in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
                out[f"{b}.attn.{leaf}.weight"] = _rand(rng, n, E)
                out[f"{b}.attn.{leaf}.bias"] = _rand(rng, n)
        else:
            n = q + 2 * kv
            out[f"{b}.attn.{kind}.weight"] = _rand(rng, E, n) if conv1d else _rand(rng, n, E)
            out[f"{b}.attn.{kind}.bias"] = _rand(rng, n)
        out[f"{b}.attn.{'c_proj' if conv1d else 'o_proj'}.weight"] = _rand(rng, E, q)
        out[f"{b}.attn.{'c_proj' if conv1d else 'o_proj'}.bias"] = _rand(rng, E)
        out[f"{b}.norm2.weight"], out[f"{b}.norm2.bias"] = _rand(rng, E), _rand(rng, E)
    return out


def ported(source, target):
    plan = make_plan(source, target)
    values = {t.target: a for t, a in produce(plan, weightmap.read(source), weightmap.read(target))}
    return plan, values


def _project(state, prefix, x, conv1d=False):
    w, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    return x @ (w if conv1d else w.T) + b


def test_fused_linear_split_into_grouped_query_projections():
    rng = np.random.default_rng(0)
    src = attention_state(rng, "qkv", q=E, kv=E // 2, blocks=2)
    tgt = attention_state(np.random.default_rng(1), "separate", q=E, kv=E // 2, blocks=2)
    plan, got = ported(src, tgt)
    assert not plan.unused and plan.counts()["new"] == 0
    x = _rand(rng, 5, E)
    for i in range(2):
        fused = _project(src, f"blocks.{i}.attn.qkv", x)
        parts = [_project(got, f"blocks.{i}.attn.{p}_proj", x) for p in "qkv"]
        np.testing.assert_allclose(np.concatenate(parts, axis=1), fused, rtol=1e-6)
    k = next(t for t in plan.tensors if t.target == "blocks.1.attn.k_proj.weight")
    assert [s.to_dict() for s in k.steps] == [{"op": "slice", "axis": 0, "start": 8, "stop": 12}]
    assert k.notes[0] == "split from fused blocks.1.attn.qkv: k = out 8:12"
    assert k.match["strategy"] == "qkv-split"


def test_conv1d_c_attn_split_on_its_last_axis():
    rng = np.random.default_rng(2)
    src = attention_state(rng, "c_attn", conv1d=True)
    tgt = attention_state(np.random.default_rng(3), "separate")
    plan, got = ported(src, tgt)
    x = _rand(rng, 4, E)
    fused = _project(src, "blocks.0.attn.c_attn", x, conv1d=True)
    parts = [_project(got, f"blocks.0.attn.{p}_proj", x) for p in "qkv"]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), fused, rtol=1e-6)
    v = next(t for t in plan.tensors if t.target == "blocks.0.attn.v_proj.weight")
    assert [s.op for s in v.steps] == ["slice", "transpose"] and v.steps[0].args["axis"] == 1
    assert "source kernel stored (in,out): the only layout that fits (8, 24)" in v.notes
    # the split counted as evidence for the square c_proj of the same family
    np.testing.assert_array_equal(got["blocks.0.attn.o_proj.weight"],
                                  src["blocks.0.attn.c_proj.weight"].T)


def test_separate_projections_merge_into_a_fused_linear():
    rng = np.random.default_rng(4)
    src = attention_state(rng, "separate", blocks=2)
    tgt = attention_state(np.random.default_rng(5), "qkv", blocks=2)
    plan, got = ported(src, tgt)
    assert not plan.unused
    x = _rand(rng, 3, E)
    for i in range(2):
        parts = [_project(src, f"blocks.{i}.attn.{p}_proj", x) for p in "qkv"]
        np.testing.assert_allclose(_project(got, f"blocks.{i}.attn.qkv", x),
                                   np.concatenate(parts, axis=1), rtol=1e-6)
    w = next(t for t in plan.tensors if t.target == "blocks.0.attn.qkv.weight")
    assert w.sources == tuple(f"blocks.0.attn.{p}_proj.weight" for p in "qkv")
    assert [s.to_dict() for s in w.steps] == [{"op": "concat", "axis": 0}]
    assert w.match["strategy"] == "qkv-merge"


def test_separate_projections_merge_into_a_conv1d_state_dict():
    rng = np.random.default_rng(6)
    src = attention_state(rng, "separate")
    tgt = attention_state(np.random.default_rng(7), "c_attn", conv1d=True)
    plan, got = ported(src, tgt)
    x = _rand(rng, 3, E)
    parts = [_project(src, f"blocks.0.attn.{p}_proj", x) for p in "qkv"]
    np.testing.assert_allclose(_project(got, "blocks.0.attn.c_attn", x, conv1d=True),
                               np.concatenate(parts, axis=1), rtol=1e-6)
    w = next(t for t in plan.tensors if t.target == "blocks.0.attn.c_attn.weight")
    assert [s.op for s in w.steps] == ["concat", "transpose"]


def test_two_fused_candidates_in_one_place_are_ambiguous():
    rng = np.random.default_rng(8)
    src = {}
    for k, v in attention_state(rng, "qkv").items():      # in_proj right after qkv
        src[k] = v
        if "attn.qkv" in k:
            src[k.replace("attn.qkv", "attn.in_proj")] = v + 1
    tgt = attention_state(np.random.default_rng(9), "separate")
    plan = make_plan(src, tgt)
    q = next(t for t in plan.tensors if t.target == "blocks.0.attn.q_proj.weight")
    assert q.status == "new"
    assert any("fused qkv split ambiguous" in d and "blocks.0.attn.qkv" in d and
               "blocks.0.attn.in_proj" in d for d in plan.decisions)
    # outside the place of the triple (after o_proj, in a graph in execution order, which the
    # transformer order pass leaves alone), a second fused layer is no candidate
    src = {k: v for k, v in src.items() if "in_proj" not in k}
    src = {**{k: v for k, v in src.items() if "norm2" not in k},
           "blocks.0.attn.in_proj.weight": src["blocks.0.attn.qkv.weight"] + 1,
           "blocks.0.attn.in_proj.bias": src["blocks.0.attn.qkv.bias"] + 1,
           **{k: v for k, v in src.items() if "norm2" in k}}
    plan = make_plan(dataclasses.replace(weightmap.read(src), order="execution"), tgt)
    q = next(t for t in plan.tensors if t.target == "blocks.0.attn.q_proj.weight")
    assert q.sources == ("blocks.0.attn.qkv.weight",)
    assert "blocks.0.attn.in_proj.weight" in {u["name"] for u in plan.unused}


def test_head_interleaved_fused_names_are_not_split():
    """GPT-NeoX's query_key_value interleaves heads: not a [q; k; v] stack."""
    rng = np.random.default_rng(10)
    src = {k.replace("attn.qkv", "attn.query_key_value"): v
           for k, v in attention_state(rng, "qkv").items()}
    tgt = attention_state(np.random.default_rng(11), "separate")
    plan = make_plan(src, tgt)
    assert "blocks.0.attn.query_key_value.weight" in {u["name"] for u in plan.unused}
    assert all(t.status == "new" for t in plan.tensors if "_proj" in t.target
               and "o_proj" not in t.target)


def test_the_bounds_of_every_position_are_those_of_a_scan():
    """Anchors' lookup tables give what scanning the matched positions gives, for any map."""
    import random
    from weightmap.planning.conversions.transformer_qkv import bounds
    rng = random.Random(3)
    for _ in range(200):
        count, end = rng.randint(0, 30), rng.randint(1, 40)
        at = {i: rng.randrange(end) for i in range(count) if rng.random() < 0.4}
        before, after = bounds(at, count, end)
        for i in range(count):
            assert before[i] == max([p for j, p in at.items() if j < i], default=-1)
            assert after[i] == min([p for j, p in at.items() if j > i], default=end)
