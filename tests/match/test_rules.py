import textwrap

import pytest

from weightmap.errors import UsageError
from weightmap.match.rules import Expect, Ignore, Pair, Rename, Rules, glob_regex, load_rules

YAML = r"""
rename:
  - pattern: '^block(\d)_conv(\d)$'
    replace: 'features.\1.\2'
  - glob: 'fc*'
    replace: 'classifier.*'
ignore:
  source: ['aux.*', 're:^drop\d+$']
  target: ['classifier.6']
pair:
  - target: classifier.0
    source: fc1
  - target: lstm.bias_ih_l0
    source: [lstm/bias:0]
expect:
  matched: 13
  min_matched: 10
"""

TOML = r"""
[[rename]]
pattern = '^block(\d)_conv(\d)$'
replace = 'features.\1.\2'

[[rename]]
glob = 'fc*'
replace = 'classifier.*'

[ignore]
source = ['aux.*', 're:^drop\d+$']
target = ['classifier.6']

[[pair]]
target = 'classifier.0'
source = 'fc1'

[[pair]]
target = 'lstm.bias_ih_l0'
source = ['lstm/bias:0']

[expect]
matched = 13
min_matched = 10
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize("name,text", [("r.yaml", YAML), ("r.yml", YAML), ("r.toml", TOML)])
def test_yaml_and_toml_give_the_same_rules(tmp_path, name, text):
    rules = load_rules(write(tmp_path, name, text))
    assert rules.origin == str(tmp_path / name)
    assert rules.rename == (Rename(r"^block(\d)_conv(\d)$", r"features.\1.\2", key="rename[0]"),
                            Rename("fc*", "classifier.*", glob=True, key="rename[1]"))
    assert rules.ignore == (Ignore("aux.*", "source", "ignore.source[0]"),
                            Ignore(r"re:^drop\d+$", "source", "ignore.source[1]"),
                            Ignore("classifier.6", "target", "ignore.target[0]"))
    assert rules.pair == (Pair("classifier.0", ("fc1",), "pair[0]"),
                          Pair("lstm.bias_ih_l0", ("lstm/bias:0",), "pair[1]"))
    assert rules.expect == Expect(matched=13, min_matched=10)


def test_rename_regex_and_glob():
    rules = Rules.from_dict({"rename": [{"pattern": r"^block(\d)_conv(\d)$",
                                         "replace": r"features.\1.\2"},
                                        {"glob": "fc*", "replace": "classifier.*"}]})
    assert rules.renamed("block3_conv2") == "features.3.2"
    assert rules.renamed("fc1") == "classifier.1"
    assert rules.renamed("predictions") == "predictions"
    assert Rename("a?.*", "b?_*", glob=True).apply("a1.x.y") == "b1_x.y"


def test_ignore_globs_are_anchored_and_cross_dots_regexes_search():
    assert Ignore("aux.*", "source").matches("aux.head.fc")
    assert not Ignore("aux.*", "source").matches("model.aux.fc")
    assert Ignore("re:aux", "source").matches("model.aux.fc")
    assert glob_regex("a*b?") == r"^a(.*?)b(.)$"


def test_a_bare_ignore_list_applies_to_both_sides():
    rules = Rules.from_dict({"ignore": ["*.num_batches_tracked"]})
    assert [r.side for r in rules.ignore] == ["source", "target"]
    assert rules.ignores("target")[0].matches("bn1.num_batches_tracked")


def test_empty_file_is_no_rules(tmp_path):
    rules = load_rules(write(tmp_path, "r.yaml", ""))
    assert (rules.rename, rules.ignore, rules.pair, rules.expect) == ((), (), (), Expect())


@pytest.mark.parametrize("text,key", [
    ("renames: []", "'renames'"),
    ("rename: {pattern: a}", "'rename'"),
    ("rename: [{pattern: '(', replace: x}]", "rename[0].pattern"),
    (r"rename: [{pattern: 'a', replace: '\2'}]", "rename[0].replace"),
    ("rename: [{pattern: 'a', glob: 'b', replace: x}]", "rename[0]"),
    ("rename: [{glob: 'a', replace: 'x*'}]", "rename[0].replace"),
    ("rename: [{pattern: 'a', replace: 3}]", "rename[0].replace"),
    ("rename: [{pattern: 'a', replace: 'b', flags: 1}]", "rename[0].flags"),
    ("ignore: {both: [a]}", "ignore.both"),
    ("ignore: {source: ['re:[']}", "ignore.source[0]"),
    ("ignore: {target: [3]}", "ignore.target[0]"),
    ("pair: [{target: a}]", "pair[0].source"),
    ("pair: [{target: a, source: []}]", "pair[0].source"),
    ("pair: [{target: a, source: b}, {target: a, source: c}]", "pair[1].target"),
    ("expect: {matched: -1}", "expect.matched"),
    ("expect: {min_matched: true}", "expect.min_matched"),
    ("expect: {matches: 3}", "expect.matches"),
    ("- a\n- b", "<top>"),
])
def test_bad_rules_name_the_file_and_the_key(tmp_path, text, key):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(UsageError) as info:
        load_rules(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)
    assert info.value.exit_code == 2


def test_unparsable_files_name_the_file(tmp_path):
    for name, text in (("bad.yaml", "rename: [a\n"), ("bad.toml", "rename = [\n")):
        path = write(tmp_path, name, text)
        with pytest.raises(UsageError, match="cannot parse rules file") as info:
            load_rules(path)
        assert str(path) in str(info.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(UsageError, match="no such rules file"):
        load_rules(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="not .yaml, .yml or .toml"):
        load_rules(write(tmp_path, "rules.json", "{}"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "evil.yaml", "rename: !!python/object/apply:os.system ['true']")
    with pytest.raises(UsageError, match="cannot parse rules file"):
        load_rules(path)


def test_a_list_of_targets_splits_one_source_among_them():
    rules = Rules.from_dict({"pair": [{"target": ["q", "k", "v"], "source": "qkv"}]})
    assert rules.pair == tuple(Pair(t, ("qkv",), "pair[0]", parts=("q", "k", "v"))
                               for t in ("q", "k", "v"))
    with pytest.raises(UsageError, match="'pair\\[1\\].target': 'k' is already paired by "
                                         "pair\\[0\\]"):
        Rules.from_dict({"pair": [{"target": ["q", "k"], "source": "qkv"},
                                  {"target": "k", "source": "x"}]})
