import pytest

from weightmap.errors import UsageError
from weightmap.emit.manifest import build, parse_freeze, parse_lr_scales
from weightmap.planning.plan import Plan, TensorPlan


def _plan():
    t = []
    for layer, status in [("f.0", "transformed"), ("f.1", "new"), ("f.2", "transferred"),
                          ("f.3", "transformed"), ("head", "new")]:
        t.append(TensorPlan(f"{layer}.weight", layer, (2, 2), "float32", status,
                            ("s",) if status != "new" else ()))
    return Plan({"path": "s"}, {"path": "t"}, tuple(t))


def _frozen(m):
    return [n for n, e in m["params"].items() if e["frozen"]]


def test_policies():
    p = _plan()
    assert _frozen(build(p)) == []
    assert _frozen(build(p, freeze="transferred")) == ["f.0.weight", "f.2.weight", "f.3.weight"]
    assert _frozen(build(p, freeze="first:2")) == ["f.0.weight", "f.2.weight"]
    assert _frozen(build(p, freeze="until:f.2")) == ["f.0.weight", "f.2.weight"]
    assert _frozen(build(p, freeze="until:f")) == ["f.0.weight", "f.2.weight", "f.3.weight"]


def test_unknown_until_layer_names_some_layers():
    with pytest.raises(UsageError, match="no layer of that name.*f.0"):
        build(_plan(), freeze="until:nope")


def test_lr_scales_and_layerwise_decay():
    m = build(_plan(), lr_scale=["transferred=0.1", "decay=0.5"])
    scales = {n: e["lr_scale"] for n, e in m["params"].items()}
    assert scales == {"f.0.weight": 0.025, "f.1.weight": 1.0, "f.2.weight": 0.05,
                      "f.3.weight": 0.1, "head.weight": 1.0}


def test_summary_and_schema():
    m = build(_plan(), freeze="transferred")
    assert m["weightmap_manifest"] == 1
    assert m["summary"]["params"] == 5 and m["summary"]["carried_over"] == 3
    assert m["summary"]["coverage"] == 0.6 and m["summary"]["element_coverage"] == 0.6
    assert m["policy"]["freeze"] == "transferred"
    e = m["params"]["f.0.weight"]
    assert set(e) >= {"layer", "status", "source", "transforms", "frozen", "lr_scale"}


@pytest.mark.parametrize("bad", ["freeze", "first:x", "until:", "all"])
def test_bad_freeze_policies(bad):
    with pytest.raises(UsageError, match="freeze policy"):
        parse_freeze(bad)


@pytest.mark.parametrize("bad,msg", [(["head=1"], "unknown learning-rate group"),
                                     (["new=fast"], "not a number"), (["new=-1"], "negative")])
def test_bad_lr_scales(bad, msg):
    with pytest.raises(UsageError, match=msg):
        parse_lr_scales(bad)


def test_layerwise_decay_counts_blocks_by_module_path():
    layers = ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.downsample.0",
              "layer1.1.conv1", "layer1.1.bn1", "fc"]
    p = Plan({}, {}, tuple(TensorPlan(f"{l}.weight", l, (2,), "float32", "transferred", ("s",))
                           for l in layers))
    scales = {e["layer"]: e["lr_scale"] for e in build(p, lr_scale={"decay": 0.5})["params"]
              .values()}
    assert scales == {"conv1": 0.0625, "bn1": 0.125, "layer1.0.conv1": 0.25,
                      "layer1.0.bn1": 0.25, "layer1.0.downsample.0": 0.25,
                      "layer1.1.conv1": 0.5, "layer1.1.bn1": 0.5, "fc": 1.0}


def test_a_deep_decay_never_rounds_a_scale_to_zero():
    p = Plan({}, {}, tuple(TensorPlan(f"blocks.{i}.w", f"blocks.{i}", (2,), "float32",
                                      "transferred", ("s",)) for i in range(48)))
    scales = [e["lr_scale"] for e in build(p, lr_scale=["decay=0.5"])["params"].values()]
    assert min(scales) == pytest.approx(0.5 ** 47, rel=1e-10) and min(scales) > 0
    assert scales[-1] == 1.0 and scales == sorted(scales)


def test_freeze_until_a_weightless_keras_layer(tmp_path):
    """``until:block1_pool`` (a pooling layer, no weights) freezes what comes before it."""
    from pathlib import Path

    import weightmap
    h5 = Path(__file__).resolve().parents[2] / "fixtures" / "examples" / "small_vgg_keras.h5"
    report = weightmap.port(h5, h5, tmp_path / "o.h5", freeze="until:block1_pool",
                            dry_run=True)
    frozen = sorted({e["layer"] for e in report.manifest["params"].values() if e["frozen"]})
    assert frozen == ["block1_conv1", "block1_conv2"]
    report = weightmap.port(h5, h5, tmp_path / "o.h5", freeze="until:flatten", dry_run=True)
    assert report.manifest["summary"]["frozen"] == 8
    with pytest.raises(UsageError, match="no layer of that name.*block1_pool"):
        weightmap.port(h5, h5, tmp_path / "o.h5", freeze="until:block9_pool", dry_run=True)


def test_freeze_until_a_weightless_torch_module(tmp_path):
    """``until:features.4`` (the first MaxPool of the torch twin) freezes the two convs
    before it, as ``until:block1_pool`` does on the Keras side."""
    pytest.importorskip("torch")
    from pathlib import Path

    import weightmap
    examples = Path(__file__).resolve().parents[2] / "fixtures" / "examples"
    report = weightmap.port(examples / "small_vgg_keras.h5", str(examples / "small_vgg_torch.py"),
                            tmp_path / "o.safetensors", freeze="until:features.4", dry_run=True)
    frozen = sorted({e["layer"] for e in report.manifest["params"].values() if e["frozen"]})
    assert frozen == ["features.0", "features.2"]


def test_census_records_each_tensor_and_the_totals():
    from weightmap.emit.manifest import Census
    from weightmap.transform import Step
    man = {"params": {"a": {"status": "transferred"}}, "summary": {"params": 2}}
    census = Census(man)
    step = Step("cast", {"dtype": "bfloat16"})
    census("a", step, {"from": "float32", "to": "bfloat16", "overflow": 2, "subnormal": 0,
                       "zero": 1})
    census("b", step, {"from": "float32", "to": "bfloat16", "overflow": 1, "subnormal": 3,
                       "zero": 0})
    assert man["params"]["a"] == {"status": "transferred",
                                  "cast": {"from": "float32", "to": "bfloat16", "overflow": 2,
                                           "subnormal": 0, "zero": 1}}
    assert man["summary"]["cast"] == {"tensors": 2, "overflow": 3, "subnormal": 3, "zero": 1}
