import json

from weightmap.match import LayerMatch, Matching, ParamPair, Unmatched


def _matching():
    lm = LayerMatch(target="fc", source="dense", strategy="structure", score=0.8,
                    evidence=("op dense==dense", "shapes equal after layout"),
                    params=(ParamPair("fc.weight", ("dense/kernel:0",)),
                            ParamPair("fc.bias", ("dense/bias:0",))))
    un = (Unmatched("target", "head", ("head.weight",), "shape (10, 4) vs (1000, 4)", "shape",
                    ("predictions",)),
          Unmatched("source", "aux", ("aux/kernel:0",), "no counterpart", "missing"))
    return Matching(layers=(lm,), unmatched=un, notes=("source: wrapper prefix 'module.' "
                                                       "stripped from every name",))


def test_to_dict_is_plain_json_with_every_field():
    d = _matching().to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["layers"][0] == {
        "target": "fc", "source": "dense", "strategy": "structure", "score": 0.8,
        "evidence": ["op dense==dense", "shapes equal after layout"],
        "params": [{"target": "fc.weight", "sources": ["dense/kernel:0"], "note": ""},
                   {"target": "fc.bias", "sources": ["dense/bias:0"], "note": ""}]}
    assert d["unmatched"][0] == {"side": "target", "layer": "head", "params": ["head.weight"],
                                 "reason": "shape (10, 4) vs (1000, 4)", "kind": "shape",
                                 "candidates": ["predictions"]}
    assert d["notes"] == ["source: wrapper prefix 'module.' stripped from every name"]


def test_summary_counts_strategies_and_leftovers_by_side_and_kind():
    assert _matching().summary() == {
        "matched": 1, "strategies": {"rule": 0, "name": 0, "structure": 1, "role": 0},
        "unmatched": {"source": {"missing": 1}, "target": {"shape": 1}}}


def test_lookups_by_target_layer_and_parameter():
    m = _matching()
    assert m.by_target()["fc"].source == "dense"
    assert m.param_sources()["fc.bias"].sources == ("dense/bias:0",)


def test_results_are_frozen():
    import dataclasses
    import pytest
    with pytest.raises(dataclasses.FrozenInstanceError):
        _matching().layers[0].score = 1.0
