"""Embeddings move as they are in every direction; padding_idx, max_norm and mask_zero are
reported, never changed."""
import numpy as np
import pytest

from weightmap.planning.conversions import LayerPair, convert
from weightmap.graph import ArrayData, Layer, Param, ParamGraph
from weightmap import registry

VOCAB, DIM = 11, 5


def _layer(fw, attrs, rng):
    name = {"torch": "emb.weight", "keras": "embedding/embeddings:0", "onnx": "emb.weight"}[fw]
    arr = rng.standard_normal((VOCAB, DIM)).astype(np.float32)
    p = Param(name, "embeddings", arr.shape, "float32", registry.convention(fw).axes("embedding", "embeddings", 2),
              ArrayData(arr))
    return Layer(name.split(".")[0].split("/")[0], "embedding", (p,), attrs)


def _convert(sfw, sattrs, tfw, tattrs):
    rng = np.random.default_rng(0)
    src, tgt = _layer(sfw, sattrs, rng), _layer(tfw, tattrs, rng)
    sg = ParamGraph("arrays", sfw, "s", (src,))
    tg = ParamGraph("arrays", tfw, "t", (tgt,))
    (plan,) = convert(LayerPair(src, tgt, sg, tg,
                                ((tgt.params[0].name, (src.params[0].name,), ""),)))
    return src, plan


@pytest.mark.parametrize("sfw", ["torch", "keras", "onnx"])
@pytest.mark.parametrize("tfw", ["torch", "keras", "onnx"])
def test_embeddings_are_copied_unchanged(sfw, tfw):
    src, plan = _convert(sfw, {}, tfw, {})
    assert plan.status == "transferred" and not plan.steps and not plan.notes
    assert plan.sources == (src.params[0].name,)


def test_torch_padding_idx_is_reported_only():
    _, plan = _convert("keras", {}, "torch", {"padding_idx": 0})
    assert plan.status == "transferred" and not plan.steps
    assert plan.notes == ("padding_idx=0: row 0 copied from the source as is (torch keeps its "
                          "gradient at zero, it is not re-zeroed)",)
    _, back = _convert("torch", {"padding_idx": 3}, "keras", {})
    assert back.notes == ("the source's padding_idx=3 has no keras counterpart; row 3 copied "
                          "as is",)


def test_keras_mask_zero_becomes_a_decision_across_frameworks():
    _, plan = _convert("keras", {"mask_zero": True}, "torch", {})
    (note,) = plan.notes
    assert note.startswith("decision: embedding: the Keras source has mask_zero=True")
    _, same = _convert("keras", {"mask_zero": True}, "keras", {"mask_zero": True})
    assert not same.notes


def test_max_norm_is_reported():
    _, plan = _convert("torch", {"max_norm": 1.0}, "keras", {})
    assert plan.notes == ("source max_norm=1.0: torch renormalises rows at lookup",)
