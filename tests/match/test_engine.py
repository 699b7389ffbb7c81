"""The matching scenarios of issue 3, end to end through ``match``."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from weightmap.errors import MatchError
from weightmap.match import load_rules, match
from weightmap.reading.read import graph_from_arrays

VGG_CONVS = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
             "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3",
             "block5_conv1", "block5_conv2", "block5_conv3"]
PLAIN_IDS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]     # torchvision vgg16
BN_IDS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]       # torchvision vgg16_bn


def pairs(m):
    return {lm.target: lm.source for lm in m.layers}


def unmatched(m, side=None, kind=None):
    return [u for u in m.unmatched if (side is None or u.side == side)
            and (kind is None or u.kind == kind)]


def test_keras_vgg_names_against_torch_features_pair_by_structure(mk):
    m = match(mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec()))
    expected = {f"features.{k}": name for k, name in zip(PLAIN_IDS, VGG_CONVS)}
    expected.update({"classifier.0": "fc1", "classifier.3": "fc2", "classifier.6": "predictions"})
    assert pairs(m) == expected
    assert [lm.target for lm in m.layers] == list(expected)                 # target order
    assert {lm.strategy for lm in m.layers} == {"structure"}
    first = m.layers[0]
    assert first.evidence[:2] == ("op conv2d==conv2d", "shapes equal after layout")
    assert [(p.target, p.sources) for p in first.params] == [
        ("features.0.weight", ("block1_conv1/kernel:0",)),
        ("features.0.bias", ("block1_conv1/bias:0",))]
    # fc1 follows an NHWC flatten: (25088, 4096) vs torch (4096, 25088) still matches
    assert m.by_target()["classifier.0"].score == 0.8
    assert m.unmatched == ()


def test_torch_vgg_into_a_keras_vgg_target(mk):
    m = match(mk.torch_graph(mk.vgg_torch_spec()), mk.vgg_keras())
    expected = dict(zip(VGG_CONVS, (f"features.{k}" for k in PLAIN_IDS)))
    expected.update({"fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6"})
    assert pairs(m) == expected and m.unmatched == ()
    assert [(p.target, p.sources) for p in m.by_target()["fc1"].params] == [
        ("fc1/kernel:0", ("classifier.0.weight",)), ("fc1/bias:0", ("classifier.0.bias",))]


def test_torch_vgg_into_vgg_bn_keeps_index_names_from_misleading(mk):
    # features.N means other layers once BatchNorms are inserted: only features.0 and the
    # classifier agree by name and shape; the rest pair by structure
    m = match(mk.torch_graph(mk.vgg_torch_spec()),
              mk.torch_graph(mk.vgg_torch_spec(bn=True, classes=10)))
    assert pairs(m) == {**{f"features.{b}": f"features.{p}" for b, p in zip(BN_IDS, PLAIN_IDS)},
                        "classifier.0": "classifier.0", "classifier.3": "classifier.3"}
    assert [lm.target for lm in m.layers if lm.strategy == "name"] == [
        "features.0", "classifier.0", "classifier.3"]
    assert [(u.layer, u.reason) for u in unmatched(m, "target", "shape")] == [
        ("classifier.6", "shape (10, 4096) vs (1000, 4096)")]


def test_batchnorm_added_in_target_and_a_new_ten_class_head(mk):
    m = match(mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec(classes=10, bn=True)))
    expected = {f"features.{k}": name for k, name in zip(BN_IDS, VGG_CONVS)}
    expected.update({"classifier.0": "fc1", "classifier.3": "fc2"})
    assert pairs(m) == expected
    new_bns = [u for u in unmatched(m, "target", "missing")]
    assert [u.layer for u in new_bns] == [f"features.{k + 1}" for k in BN_IDS]
    assert {u.reason for u in new_bns} == {"no counterpart"}
    assert new_bns[0].params == ("features.1.weight", "features.1.bias", "features.1.running_mean",
                                 "features.1.running_var", "features.1.num_batches_tracked")
    head = unmatched(m, "target", "shape")
    assert [(u.layer, u.reason, u.candidates) for u in head] == [
        ("classifier.6", "shape (10, 4096) vs (1000, 4096)", ("predictions",))]
    unused = unmatched(m, "source")
    assert [(u.layer, u.kind, u.reason, u.candidates, u.params) for u in unused] == [
        ("predictions", "shape", "shape (1000, 4096) vs (10, 4096)", ("classifier.6",),
         ("predictions/kernel:0", "predictions/bias:0"))]


def check_deeper(m, source_name_of=lambda name: name):
    got = pairs(m)
    for stage, blocks in ((1, 3), (2, 4), (3, 6), (4, 3)):
        for b in range(blocks):
            for part in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
                name = f"layer{stage}.{b}.{part}"
                assert source_name_of(got[name]) == name
    assert source_name_of(got["fc"]) == "fc" and source_name_of(got["conv1"]) == "conv1"
    new = {u.layer.rsplit(".", 1)[0] for u in unmatched(m, "target")}
    assert new == {f"layer3.{b}" for b in range(6, 23)}
    assert {u.reason for u in unmatched(m, "target")} == {"no counterpart"}
    assert unmatched(m, "source") == []


def test_deeper_target_resnet50_into_resnet101_by_structure(mk):
    spec50, original = mk.renamed_layers(mk.resnet_spec((3, 4, 6, 3)))
    m = match(mk.torch_graph(spec50), mk.torch_graph(mk.resnet_spec((3, 4, 23, 3))))
    assert {lm.strategy for lm in m.layers} == {"structure"}
    check_deeper(m, original.__getitem__)


def test_deeper_target_with_the_same_names(mk):
    m = match(mk.torch_graph(mk.resnet_spec((3, 4, 6, 3))),
              mk.torch_graph(mk.resnet_spec((3, 4, 23, 3))))
    assert {lm.strategy for lm in m.layers} == {"name"}
    check_deeper(m)


def test_shallower_target_leaves_the_extra_source_blocks_unused(mk):
    spec101, original = mk.renamed_layers(mk.resnet_spec((3, 4, 23, 3)))
    m = match(mk.torch_graph(spec101), mk.torch_graph(mk.resnet_spec((3, 4, 6, 3))))
    assert all(original[s] == t for t, s in pairs(m).items())
    assert len(m.layers) == len(mk.torch_graph(mk.resnet_spec((3, 4, 6, 3))).layers)
    unused = {original[u.layer].rsplit(".", 1)[0] for u in unmatched(m, "source")}
    assert unused == {f"layer3.{b}" for b in range(6, 23)}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_wrapper_prefixes_common_to_the_whole_checkpoint(mk, prefix):
    spec = mk.vgg_torch_spec()
    m = match(mk.torch_graph([(prefix + n, s) for n, s in spec]), mk.torch_graph(spec))
    assert pairs(m) == {f"{t}": f"{prefix}{t}" for t in pairs(m)}
    assert len(m.layers) == 16 and m.unmatched == ()
    assert {lm.strategy for lm in m.layers} == {"name"}
    assert all(f"wrapper prefix {p + '.'!r}" in " ".join(m.notes)
               for p in prefix.rstrip(".").split("."))


def test_a_prefix_on_part_of_the_graph_is_not_stripped_but_suffix_matches(mk):
    src = mk.torch_graph([("model.encoder.weight", (8, 4)), ("head.weight", (2, 8))])
    tgt = mk.torch_graph([("encoder.weight", (8, 4)), ("head.weight", (2, 8))])
    m = match(src, tgt)
    assert m.notes == ()
    assert m.by_target()["encoder"].evidence[0] == "name suffix 'encoder'"
    assert m.by_target()["head"].evidence[0] == "name 'head'"


def test_lightning_checkpoint_as_a_dict_of_arrays(mk):
    rng = np.random.default_rng(0)
    state = {f"model.{n}": rng.standard_normal(s).astype(np.float32) for n, s in
             [("conv.weight", (8, 3, 3, 3)), ("conv.bias", (8,)), ("fc.weight", (4, 8))]}
    target = graph_from_arrays({"conv.weight": np.zeros((8, 3, 3, 3), np.float32),
                                "conv.bias": np.zeros(8, np.float32),
                                "fc.weight": np.zeros((4, 8), np.float32)}, origin="target")
    m = match(graph_from_arrays(state, origin="ckpt"), target)
    assert pairs(m) == {"conv": "model.conv", "fc": "model.fc"}
    assert m.param_sources()["conv.bias"].sources == ("model.conv.bias",)


def res5_graphs(mk, shapes):
    src = mk.torch_graph([("backbone.stem.conv.weight", (64, 3, 3, 3)),
                          ("backbone.res5.conv.weight", shapes[0]),
                          ("head.res5.conv.weight", shapes[1]), ("head.fc.weight", (10, 128))])
    tgt = mk.torch_graph([("stem.conv.weight", (64, 3, 3, 3)), ("res5.conv.weight", shapes[0]),
                          ("fc.weight", (10, 128))])
    return src, tgt


def test_suffix_fitting_backbone_and_head_is_resolved_by_structure(mk):
    m = match(*res5_graphs(mk, [(128, 64, 3, 3), (128, 128, 3, 3)]))
    res5 = m.by_target()["res5.conv"]
    assert (res5.source, res5.strategy) == ("backbone.res5.conv", "structure")
    assert "name suffix fits backbone.res5.conv, head.res5.conv; structure chose " \
           "backbone.res5.conv" in res5.evidence
    assert [(u.side, u.layer, u.kind) for u in m.unmatched] == [
        ("source", "head.res5.conv", "missing")]


def test_suffix_resolved_by_position_between_name_anchors(mk):
    # same shapes; head.res5.conv lies after the head.fc anchor, so only one candidate fits
    src = mk.torch_graph([("backbone.stem.conv.weight", (64, 3, 3, 3)),
                          ("backbone.res5.conv.weight", (64, 64, 3, 3)),
                          ("head.fc.weight", (10, 64)), ("head.res5.conv.weight", (64, 64, 3, 3))])
    tgt = mk.torch_graph([("stem.conv.weight", (64, 3, 3, 3)), ("res5.conv.weight", (64, 64, 3, 3)),
                          ("fc.weight", (10, 64))])
    assert pairs(match(src, tgt))["res5.conv"] == "backbone.res5.conv"


def test_suffix_tie_is_reported_ambiguous_not_guessed(mk):
    m = match(*res5_graphs(mk, [(128, 128, 3, 3), (128, 128, 3, 3)]))
    assert "res5.conv" not in pairs(m)
    amb = unmatched(m, kind="ambiguous")
    assert [(u.side, u.layer, u.candidates) for u in amb] == [
        ("target", "res5.conv", ("backbone.res5.conv", "head.res5.conv")),
        ("source", "backbone.res5.conv", ("res5.conv",)),
        ("source", "head.res5.conv", ("res5.conv",))]
    assert amb[0].reason == "ambiguous between backbone.res5.conv and head.res5.conv"


def test_swapped_names_against_position_are_ambiguous(mk):
    src = mk.keras_graph([mk.keras_layer("left_conv", "conv2d", kernel=(3, 3, 8, 8)),
                          mk.keras_layer("right_conv", "conv2d", kernel=(3, 3, 8, 8)),
                          mk.keras_layer("fc", "dense", kernel=(8, 2))])
    tgt = mk.torch_graph([("right.conv.weight", (8, 8, 3, 3)), ("left.conv.weight", (8, 8, 3, 3)),
                          ("fc.weight", (2, 8))])
    m = match(src, tgt)
    assert pairs(m) == {"fc": "fc"}
    assert [(u.side, u.layer, u.candidates) for u in unmatched(m, kind="ambiguous")] == [
        ("target", "right.conv", ("left_conv", "right_conv")),
        ("target", "left.conv", ("right_conv", "left_conv")),
        ("source", "left_conv", ("right.conv", "left.conv")),
        ("source", "right_conv", ("left.conv", "right.conv"))]


def test_same_shapes_different_names_in_different_order_pair_by_position(mk):
    src = mk.keras_graph([mk.keras_layer("expand", "conv2d", kernel=(1, 1, 8, 8)),
                          mk.keras_layer("project", "conv2d", kernel=(1, 1, 8, 8))])
    tgt = mk.torch_graph([("b.conv_a.weight", (8, 8, 1, 1)), ("b.conv_b.weight", (8, 8, 1, 1))])
    assert pairs(match(src, tgt)) == {"b.conv_a": "expand", "b.conv_b": "project"}


def test_exact_names_in_swapped_order(mk):
    def keras(names):
        return mk.keras_graph([mk.keras_layer(n, "conv2d", kernel=(3, 3, 8, 8)) for n in names])
    # both graphs in execution/config order: names and order disagree -> ambiguous
    m = match(keras(["a", "b"]), keras(["b", "a"]))
    assert m.layers == () and {u.kind for u in m.unmatched} == {"ambiguous"}
    assert m.unmatched[0].reason == "ambiguous between b (name) and a (position)"
    # state dicts are in registration order, which a refactor may change: names win
    src = mk.torch_graph([("a.weight", (8, 8)), ("b.weight", (8, 8))])
    tgt = mk.torch_graph([("b.weight", (8, 8)), ("a.weight", (8, 8))])
    m = match(src, tgt)
    assert pairs(m) == {"a": "a", "b": "b"} and m.unmatched == ()


RULES_YAML = r"""
rename:
  - pattern: '^predictions$'
    replace: 'classifier.6'
ignore:
  source: ['fc2']
  target: ['classifier.3']
pair:
  - target: classifier.0
    source: fc1
expect:
  matched: 15
"""

RULES_TOML = r"""
[[rename]]
pattern = '^predictions$'
replace = 'classifier.6'

[ignore]
source = ['fc2']
target = ['classifier.3']

[[pair]]
target = 'classifier.0'
source = 'fc1'

[expect]
matched = 15
"""


@pytest.mark.parametrize("name,text", [("rules.yaml", RULES_YAML), ("rules.toml", RULES_TOML)])
def test_rules_file_rename_ignore_pair_expect(mk, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    m = match(mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec()), load_rules(path))
    by = m.by_target()
    assert (by["classifier.0"].source, by["classifier.0"].strategy) == ("fc1", "rule")
    assert by["classifier.0"].evidence[0] == "pair rule pair[0]"
    assert (by["classifier.6"].source, by["classifier.6"].strategy) == ("predictions", "name")
    assert by["classifier.6"].evidence[0] == \
        "name 'classifier.6' (stored 'predictions' / 'classifier.6')"
    assert "classifier.3" not in by
    ignored = [(u.side, u.layer, u.reason) for u in unmatched(m, kind="ignored")]
    assert ignored == [("target", "classifier.3", "ignored by rule ignore.target[0] "
                                                  "'classifier.3'"),
                       ("source", "fc2", "ignored by rule ignore.source[0] 'fc2'")]
    assert len(m.layers) == 15 and all(u.kind == "ignored" for u in m.unmatched)


def test_expect_violation_raises_with_both_numbers(mk, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("expect:\n  matched: 16\n", encoding="utf-8")
    with pytest.raises(MatchError) as info:
        match(mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec(classes=10)), load_rules(path))
    text = str(info.value)
    assert "expected 16 matched layers" in text and "matched 15" in text
    assert str(path) in text and "unmatched target layers: classifier.6" in text
    assert info.value.exit_code == 6
    path.write_text("expect:\n  min_matched: 15\n", encoding="utf-8")
    match(mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec(classes=10)), load_rules(path))


def test_result_is_json_and_deterministic(mk):
    src, tgt = mk.vgg_keras(), mk.torch_graph(mk.vgg_torch_spec(classes=10, bn=True))
    first = json.dumps(match(src, tgt).to_dict(), sort_keys=True)
    assert first == json.dumps(match(src, tgt).to_dict(), sort_keys=True)
    assert json.loads(first)["summary"]["matched"] == 15


def test_matching_imports_no_framework():
    code = ("import sys, weightmap.match; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras', 'tf_keras') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_tf_keras_h5_into_a_real_torch_model_with_batchnorm(tmp_path):
    """The real readers' graphs: a tf-keras legacy .h5 and a live torch module."""
    torch = pytest.importorskip("torch")
    tf_keras = pytest.importorskip("tf_keras")
    import weightmap
    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    kmodel = tf_keras.Sequential([
        L.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", name="block1_conv1"),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="block1_dw"),
        L.MaxPooling2D(), L.Flatten(), L.Dense(16, name="fc1"), L.Dense(5, name="predictions")])
    kmodel.save(tmp_path / "vggish.h5")
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3, padding=1, groups=4), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16), torch.nn.Linear(16, 3))
    m = match(weightmap.read(tmp_path / "vggish.h5"), weightmap.read(tmodel))
    assert pairs(m) == {"0": "block1_conv1", "3": "block1_dw", "6": "fc1"}
    assert [(p.target, p.sources) for p in m.by_target()["3"].params] == [
        ("3.weight", ("block1_dw/depthwise_kernel:0",)), ("3.bias", ("block1_dw/bias:0",))]
    assert [(u.side, u.layer, u.kind) for u in m.unmatched] == [
        ("target", "1", "missing"), ("target", "7", "shape"), ("source", "predictions", "shape")]
    assert m.unmatched[1].reason == "shape (3, 16) vs (5, 16)"


def test_empty_graphs_and_parameterless_layers(mk):
    from weightmap.graph import Layer, ParamGraph
    empty = ParamGraph("t", "torch", "empty", ())
    assert match(empty, empty).to_dict()["summary"]["matched"] == 0
    keras = mk.keras_graph([mk.keras_layer("c", "conv2d", kernel=(3, 3, 3, 8)),
                            Layer("flatten", "opaque"),
                            mk.keras_layer("d", "dense", kernel=(8, 2))])
    torch = mk.torch_graph([("0.weight", (8, 3, 3, 3)), ("1.weight", (2, 8))])
    for a, b in ((keras, torch), (torch, keras)):
        m = match(a, b)
        assert len(m.layers) == 2 and m.unmatched == ()
