"""Large graphs: name lookups are indexed, and a ~10,000-tensor pair matches and plans completely
(no timing asserted here; ``benchmarks/port_bench.py`` prints the figures)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from weightmap.graph import Layer, Param, ParamGraph
from weightmap.match import match
from weightmap.planning.build import build_plan

ROOT = Path(__file__).resolve().parents[2]




def _match_bench():
    spec = importlib.util.spec_from_file_location("wm_match_bench",
                                                  ROOT / "benchmarks" / "match_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_param_and_layer_lookups_return_the_first_of_a_name():
    a = Param("x.weight", "kernel", (2,), "float32", None)
    g = ParamGraph(format="arrays", framework="torch", source="s",
                   layers=(Layer("x", "dense", (a,)), Layer("x", "opaque")))
    assert g.param("x.weight") is a
    assert g.layer("x").params == (a,)
    with pytest.raises(KeyError):
        g.param("nope")
    with pytest.raises(KeyError):
        g.layer("nope")


def test_ten_thousand_tensors_match_and_plan_completely():
    bench = _match_bench()
    base = bench.resnet((40, 80, 300, 135))
    src = bench.graph([(f"module.{n}", s) for n, s in base], "src")
    tgt = bench.graph(base, "tgt")
    assert src.totals()["tensors"] > 9_900
    matching = match(src, tgt)
    plan = build_plan(src, tgt, matching)
    plan.check(src, tgt)
    assert len(matching.layers) == len([l for l in tgt.layers if l.params])
    assert plan.counts()["new"] == 0
    assert all(t.sources == (f"module.{t.target}",) for t in plan.tensors)
