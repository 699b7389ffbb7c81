"""The verdict from two runs (``weightmap.equivalence``): passes, divergences, what was not
compared and why, the result as data and as text. The runs here are arrays; tests/e2e run real
models."""
import json

import numpy as np
import pytest

import weightmap
from weightmap.equivalence import _judge
from weightmap.equivalence.pairs import Entry, pair_layers
from weightmap.equivalence.runner import Run
from weightmap.graph import Layer, Param, ParamGraph

RNG = np.random.default_rng(0)
PROBE = {"shape": [2, 4], "dtype": "float32", "origin": "a test", "seed": 0,
         "layout": {"source": "none", "target": "none"}}


def _graph(fw, names):
    return ParamGraph("arrays", fw, fw, tuple(
        Layer(n, "dense", (Param(f"{n}.kernel", "kernel", (4, 4), "float32", None),))
        for n in names))


SRC, TGT = _graph("keras", ["a", "b", "c"]), _graph("torch", ["x", "y", "z"])


def _judged(entries, src_acts, tgt_acts, out_s, out_t, tol=1e-4):
    pairing = pair_layers(entries, SRC, TGT)
    run_s = Run([("output", out_s)], layers=src_acts, order=["a", "b", "c"])
    run_t = Run([("output", out_t)], layers=tgt_acts, order=["x", "y", "z"],
                skipped={"z": "a reason the runner gave"})
    return _judge(pairing, SRC, TGT, run_s, run_t, PROBE, {"tol": tol, "synthetic": ()},
                  {"source": "s", "target": "t"})


def _entries(new_z=False):
    return [Entry("x.kernel", "x", "transformed", ("a.kernel",)),
            Entry("y.kernel", "y", "transformed", ("b.kernel",)),
            Entry("z.kernel", "z", "new" if new_z else "transformed",
                  () if new_z else ("c.kernel",))]


def test_all_agree():
    acts = {n: RNG.standard_normal((2, 4)) for n in "abc"}
    out = RNG.standard_normal((2, 3))
    result = _judged(_entries(), acts, {"x": acts["a"], "y": acts["b"]}, out, out + 1e-9)
    assert result.passed and result.first_divergence is None and result.compared_up_to is None
    assert [l.status for l in result.layers] == ["ok", "ok", "skipped"]
    assert result.layers[2].note == "a reason the runner gave"
    assert result.summary().startswith("verify passed; outputs agree to rel")
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["passed"] is True


def test_the_first_divergence_and_the_inputs_before_it():
    acts = {n: RNG.standard_normal((2, 4)) for n in "abc"}
    wrong = {"x": acts["a"] * (1 + 1e-7), "y": acts["b"] + 1.0, "z": acts["c"] + 2.0}
    result = _judged(_entries(), acts, wrong, np.zeros((2, 3)), np.ones((2, 3)))
    assert not result.passed
    first = result.first_divergence
    assert (first["target"], first["source"]) == ("y", "b")
    assert first["rel"] > 0.1 and first["inputs_rel"] < 1e-6
    assert "first divergence: y <- b (rel" in result.summary()
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))     # inf -> null
    assert data["outputs"][0]["rel"] is None and data["outputs"][0]["status"] == "diverged"


def test_a_new_layer_verifies_what_comes_before_and_says_so():
    acts = {n: RNG.standard_normal((2, 4)) for n in "ab"}
    result = _judged(_entries(new_z=True), acts, {"x": acts["a"], "y": acts["b"]},
                     np.ones((2, 3)), np.zeros((2, 5)))
    assert result.passed
    assert result.compared_up_to == {"source": "b", "target": "y", "compared": 2, "paired": 2,
                                     "unchecked": 0,
                                     "reason": "the target's z is new (z.kernel keeps its own "
                                               "value)"}
    assert [o.status for o in result.outputs] == ["skipped"]
    assert result.summary().startswith(
        "verify passed on 2 of 2 paired layers (up to y <- b; the target's z is new (z.kernel "
        "keeps its own value), so the outputs differ by design)")


def test_ported_layers_past_a_new_one_leave_the_verification_incomplete():
    acts = {n: RNG.standard_normal((2, 4)) for n in "abc"}
    entries = [Entry("x.kernel", "x", "transformed", ("a.kernel",)),
               Entry("y.kernel", "y", "new"),
               Entry("z.kernel", "z", "transformed", ("c.kernel",))]
    result = _judged(entries, acts, {"x": acts["a"], "z": acts["c"]}, np.ones((2, 3)),
                     np.ones((2, 3)))
    assert not result.passed and result.first_divergence is None
    assert [l.status for l in result.layers] == ["ok", "skipped"]
    assert result.compared_up_to["unchecked"] == 1 and result.verdict() == "INCOMPLETE"
    assert result.summary().startswith(
        "verify INCOMPLETE on 1 of 2 paired layers (up to x <- a; the target's y is new "
        "(y.kernel keeps its own value), so the rest compute another function by design); "
        "1 paired layer past it is not checked (z <- c)")


def test_nothing_compared_is_no_pass():
    result = _judged(_entries(new_z=True), {}, {}, np.ones((2, 3)), np.zeros((2, 5)))
    assert not result.passed and result.compared_up_to is None
    assert any(n.startswith("nothing was compared") for n in result.notes)


def test_equal_layers_and_different_outputs_say_where_the_difference_is():
    acts = {n: RNG.standard_normal((2, 4)) for n in "abc"}
    result = _judged(_entries(), acts, {"x": acts["a"], "y": acts["b"]}, np.ones((2, 3)),
                     np.zeros((2, 3)))
    assert not result.passed and result.first_divergence is None
    assert any("after the last of them" in n for n in result.notes)


def test_a_source_without_architecture_is_a_failed_result_not_an_exception(tmp_path):
    from safetensors.numpy import save_file
    state = {"fc.weight": RNG.standard_normal((3, 4)).astype(np.float32)}
    src, out = tmp_path / "w.safetensors", tmp_path / "out.safetensors"
    save_file(state, src)
    save_file(state, out)
    result = weightmap.verify(src, src, out)
    assert not result.passed and not result.layers and not result.outputs
    assert "cannot run the source" in result.notes[0]
    assert "pass source_model=FILE.py[:NAME]" in result.notes[0]      # Python's spelling
    with pytest.raises(weightmap.WeightmapError, match="no such weights file"):
        weightmap.verify(src, src, tmp_path / "missing.safetensors")


def test_split_parts_are_compared_side_by_side():
    src, tgt = _graph("torch", ["qkv"]), _graph("torch", ["q", "k", "v"])
    entries = [Entry(f"{n}.kernel", n, "transformed", ("qkv.kernel",)) for n in "qkv"]
    fused = RNG.standard_normal((2, 5, 12))
    parts = dict(zip("qkv", np.split(fused, 3, axis=-1)))
    pairing = pair_layers(entries, src, tgt)
    out = np.ones((2, 3))
    run_s = Run([("output", out)], layers={"qkv": fused})
    run_t = Run([("output", out)], layers=parts)
    result = _judge(pairing, src, tgt, run_s, run_t, PROBE, {"tol": 1e-4, "synthetic": ()}, {})
    layer, = result.layers
    assert layer.status == "ok" and layer.rel == 0.0
    assert layer.note == "the outputs of q, k, v side by side"
    swapped = dict(parts, k=parts["v"], v=parts["k"])
    result = _judge(pairing, src, tgt, run_s, Run([("output", out)], layers=swapped), PROBE,
                    {"tol": 1e-4, "synthetic": ()}, {})
    assert result.layers[0].status == "diverged"
