import pytest

from weightmap.io.documents import load
from weightmap.errors import UsageError


def test_yaml_and_toml_give_the_same_data(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("out_dir: x\njobs:\n  - source: a.pt\n    cast: bf16\n")
    t = tmp_path / "a.toml"
    t.write_text('out_dir = "x"\n[[jobs]]\nsource = "a.pt"\ncast = "bf16"\n')
    assert load(y, "spec") == load(t, "spec") == {"out_dir": "x",
                                                  "jobs": [{"source": "a.pt", "cast": "bf16"}]}


def test_yaml_builds_no_python_objects(tmp_path):
    y = tmp_path / "a.yml"
    y.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UsageError, match="cannot parse spec"):
        load(y, "spec")


def test_mistakes_name_the_file(tmp_path):
    with pytest.raises(UsageError, match="no such rules file"):
        load(tmp_path / "none.yaml", "rules file")
    bad = tmp_path / "a.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match=r"suffix '.json' is not .yaml, .yml or .toml"):
        load(bad, "rules file")
    broken = tmp_path / "b.toml"
    broken.write_text("x = 1\ny = = 2\n")
    with pytest.raises(UsageError, match=r"b.toml: cannot parse spec: .*line 2"):
        load(broken, "spec")
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        load(binary, "spec")
