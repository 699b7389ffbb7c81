"""The HTML report as text: self-contained, safe with hostile names, refused inputs are one line
(the page in a real browser: tests/e2e/test_report_browser.py)."""
import json
import re
from pathlib import Path

import pytest

from weightmap import report_html
from weightmap.cli import main
from weightmap.errors import UsageError

EXAMPLES = Path(__file__).parents[2] / "fixtures" / "examples"


def _manifest(**extra):
    entry = {"layer": "fc", "status": "transformed", "source": ["dense/kernel:0"],
             "shape": [4, 3], "dtype": "float32", "transforms": [{"op": "transpose", "perm": [1, 0]}],
             "frozen": False, "lr_scale": 1.0}
    return {"weightmap_manifest": 1, "source": {"path": "a.h5"}, "target": {"path": "m.py"},
            "summary": {"params": 1}, "decisions": [], "params": {"fc.weight": entry},
            "unused": [], **extra}


def test_embedded_data_cannot_close_the_script_element_and_parses_back():
    hostile = '</script><script>alert(1)</script><!-- & "q"'
    m = _manifest(decisions=[hostile])
    text = report_html.embed(m)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["decisions"] == [hostile]


def test_non_finite_figures_become_strings_json_parse_accepts():
    m = _manifest(verify={"passed": False, "tol": 1e-4,
                          "layers": [{"rel": float("inf")}, {"rel": float("nan")}]})
    back = json.loads(report_html.embed(m))
    assert [r["rel"] for r in back["verify"]["layers"]] == ["inf", "nan"]


def test_lone_surrogates_and_control_characters_survive_as_escapes():
    m = _manifest(decisions=["a\ud800b\x1b[31mred\r\n"])
    text = report_html.embed(m)
    assert "\\ud800" in text and "\\u001b" in text and text.isascii()


def test_the_page_fetches_nothing():
    page = report_html.render(_manifest())
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # the only URL in the page is the SVG namespace, an identifier the browser never fetches
    assert set(re.findall(r"https?://[^\s\"'`)]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
    assert page.count("__WEIGHTMAP_DATA__") == 0


def test_a_file_that_is_not_a_manifest_is_a_usage_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"weightmap_manifest": 1}')
    with pytest.raises(UsageError, match="not a weightmap manifest"):
        report_html.load_manifest(bad)
    bad.write_text("{")
    with pytest.raises(UsageError, match="not a readable JSON manifest"):
        report_html.load_manifest(bad)
    with pytest.raises(UsageError, match="no such manifest"):
        report_html.load_manifest(tmp_path / "missing.json")


def test_report_command_writes_once_and_refuses_to_clobber(tmp_path, capsys):
    man = tmp_path / "m.manifest.json"
    man.write_text(json.dumps(_manifest()))
    out = tmp_path / "r.html"
    assert main(["report", str(man), "--html", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert main(["report", str(man), "--html", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("the output file exists (pass --force to replace "
                                             "it, or choose another --html)")
    assert main(["report", str(man), "--html", str(man)]) == 2        # never over its input
    assert json.loads(man.read_text())["weightmap_manifest"] == 1
    assert main(["report", str(man), "--html", str(out), "--force"]) == 0


def test_port_report_is_refused_before_anything_is_written(tmp_path, capsys):
    pytest.importorskip("torch")
    taken = tmp_path / "r.html"
    taken.write_text("mine")
    out = tmp_path / "o.safetensors"
    code = main(["port", str(EXAMPLES / "small_vgg_keras.h5"), "--to",
                 str(EXAMPLES / "small_vgg_torch.py"), "--out", str(out), "--report", str(taken),
                 "-q"])
    assert code == 2 and not out.exists() and taken.read_text() == "mine"
    assert "r.html" in capsys.readouterr().err
