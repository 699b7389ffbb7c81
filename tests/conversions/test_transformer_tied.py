"""Tied token embedding / lm_head, numpy only."""
import numpy as np

import weightmap
from weightmap.api import plan as make_plan
from weightmap.transform.execute import produce
from weightmap.graph import ArrayData, ParamGraph
from weightmap import registry
from weightmap.reading.statedict import Entry, group

V, E = 13, 6


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def gpt(rng, emb="wte", head=None, final="ln_f"):
    out = {f"{emb}.weight": _rand(rng, V, E), "pos.weight": _rand(rng, 5, E),
           "fc.weight": _rand(rng, E, E), "fc.bias": _rand(rng, E),
           f"{final}.weight": _rand(rng, E), f"{final}.bias": _rand(rng, E)}
    if head:
        out[f"{head}.weight"] = _rand(rng, V, E)
    return out


def ported(source, target):
    plan = make_plan(source, target)
    values = {t.target: a for t, a in produce(plan, weightmap.read(source),
                                               weightmap.read(target))}
    return plan, values


def test_untied_target_head_takes_the_token_embedding():
    src = gpt(np.random.default_rng(0))                       # wte only, as HF stores GPT-2
    tgt = gpt(np.random.default_rng(1), emb="tok_emb", head="lm_head", final="norm")
    plan, got = ported(src, tgt)
    np.testing.assert_array_equal(got["lm_head.weight"], src["wte.weight"])
    np.testing.assert_array_equal(got["tok_emb.weight"], src["wte.weight"])
    head = next(t for t in plan.tensors if t.target == "lm_head.weight")
    assert head.status == "transferred" and head.match["strategy"] == "tied"
    assert head.notes[0].startswith("tied: the source stores one tensor for wte and its lm_head")
    assert "lm_head: the source stores no lm_head (tied to wte); its weight takes wte.weight" \
        in plan.decisions


def test_a_head_the_source_stores_is_not_replaced():
    src = gpt(np.random.default_rng(2), head="lm_head")
    tgt = gpt(np.random.default_rng(3), emb="tok_emb", head="lm_head", final="norm")
    plan, got = ported(src, tgt)
    np.testing.assert_array_equal(got["lm_head.weight"], src["lm_head.weight"])
    assert not any("tied" in d for d in plan.decisions)


def test_token_embedding_chosen_by_name_when_shapes_agree():
    rng = np.random.default_rng(4)
    src = {"wte.weight": _rand(rng, V, E), "wpe.weight": _rand(rng, V, E)}  # both (V, E)
    tgt = {"tok.weight": np.zeros((V, E), np.float32), "pos.weight": np.zeros((V, E), np.float32),
           "head.weight": np.zeros((V, E), np.float32)}
    plan, got = ported(src, tgt)
    np.testing.assert_array_equal(got["pos.weight"], src["wpe.weight"])
    np.testing.assert_array_equal(got["head.weight"], src["wte.weight"])
    assert next(t for t in plan.tensors if t.target == "head.weight").match["strategy"] == "tied"


def _graph(arrays, ties, source):
    entries = [Entry(k, v.shape, "float32", ArrayData(v), ties.get(k)) for k, v in arrays.items()]
    return ParamGraph("arrays", "torch", source, tuple(group(entries, registry.convention("torch"))),
                      order="stored")


def test_tie_followed_from_the_tied_name_to_its_owner():
    """A target whose head owns the tensor and the embedding is the tied name."""
    rng = np.random.default_rng(5)
    src = {"lm_head.weight": _rand(rng, V, E), "ln_f.weight": _rand(rng, E)}
    tgt_arrays = {"head.weight": np.zeros((V, E), np.float32),
                  "norm.weight": np.ones(E, np.float32)}
    shared = tgt_arrays["head.weight"]
    tgt_arrays = {"emb.weight": shared, **tgt_arrays}
    tgt = _graph(tgt_arrays, {"emb.weight": "head.weight"}, "tgt")
    plan = make_plan(src, tgt)
    by = {t.target: t for t in plan.tensors}
    assert by["head.weight"].sources == by["emb.weight"].sources == ("lm_head.weight",)


def test_two_source_tensors_into_one_target_tensor_are_reported():
    rng = np.random.default_rng(6)
    src = {"wte.weight": _rand(rng, V, E), "ln_f.weight": _rand(rng, E),
           "lm_head.weight": _rand(rng, V, E)}
    arrays = {"tok.weight": np.zeros((V, E), np.float32), "norm.weight": np.ones(E, np.float32),
              "lm_head.weight": np.zeros((V, E), np.float32)}
    tgt = _graph(arrays, {"lm_head.weight": "tok.weight"}, "tgt")
    plan = make_plan(src, tgt)
    assert any(d.startswith("lm_head.weight is tied to tok.weight in the target") and
               "different source tensors" in d for d in plan.decisions)
