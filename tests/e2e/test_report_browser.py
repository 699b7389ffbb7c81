"""The HTML mapping report in a real browser (headless Chromium driven by Playwright): what it
draws is what the manifest says, clicks and filters work, hostile names stay text, nothing is
fetched. Skipped where no browser is installed, unless WEIGHTMAP_REQUIRE_BROWSER=1 (CI)."""
import json
import os
import shutil
from pathlib import Path

import pytest

from weightmap.cli import main

ROOT = Path(__file__).parents[2]
SOURCE = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TARGET = Path(__file__).parent / "models" / "small_vgg_bn_torch.py"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium():
    return os.environ.get("WEIGHTMAP_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    required = os.environ.get("WEIGHTMAP_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    exe = _chromium()
    if exe is None:
        if required:
            pytest.fail("WEIGHTMAP_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems, requests = [], []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-rendered='1']")
    return page, problems, requests


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("report")
    out, page = d / "bn.safetensors", d / "bn.html"
    assert main(["port", str(SOURCE), "--to", str(TARGET), "--out", str(out), "--report",
                 str(page), "--freeze", "transferred", "-q"]) == 0
    manifest = json.loads((d / "bn.manifest.json").read_text())
    return page, manifest


def _expected_pairs(manifest):
    owner = {t["name"]: layer["name"] for layer in manifest["layers"]["source"]
             for t in layer["tensors"]}
    return {(e["layer"], owner[s]) for e in manifest["params"].values() for s in e["source"]}


def test_every_pair_of_the_manifest_is_drawn_once(browser, ported):
    path, manifest = ported
    page, problems, requests = _open(browser, path)
    drawn = page.eval_on_selector_all(
        "path.pair", "ps => ps.map(p => p.querySelector('title').textContent)")
    expected = _expected_pairs(manifest)
    assert len(drawn) == len(expected) == 5
    assert {tuple(t.split(" (")[0].split(" \u2190 ")) for t in drawn} == expected
    # rows: every layer of both models, left-new and unused ones marked
    assert page.locator("#tgtrows .row").count() == len(manifest["layers"]["target"])
    assert page.locator("#srcrows .row.unused").all_text_contents() == ["dense predictions"]
    assert page.locator("#tgtrows .row.new").count() == 5        # 4 BatchNorms and the new head
    assert not problems and requests == [path.as_uri()]          # nothing fetched
    page.close()


def test_a_click_shows_the_pair_transform_chain(browser, ported):
    path, manifest = ported
    page, problems, _ = _open(browser, path)
    page.locator("path.pair", has=page.locator("title", has_text="classifier.1")).click(force=True)
    detail = page.locator("#detail")
    assert detail.locator("h2").text_content() == "classifier.1 \u2190 fc1"
    chain = detail.locator(".tensor").first.locator("ol.chain li").all_text_contents()
    want = manifest["params"]["classifier.1.weight"]["transforms"]
    assert [c.split(" ")[0] for c in chain] == [s["op"] for s in want] == \
        ["flatten_permute", "transpose"]
    assert "perm=[2,0,1]" in chain[0]
    text = detail.text_content()
    assert "frozen" in text and manifest["params"]["classifier.1.weight"]["sha256"] in text
    assert not problems
    page.close()


def test_filters_and_search_hide_what_they_should(browser, ported, tmp_path):
    path, manifest = ported
    page, problems, _ = _open(browser, path)
    statuses = [p.get_attribute("data-status") for p in page.locator("path.pair").all()]
    page.locator("input[data-status=transformed]").uncheck()
    assert page.locator("path.pair").count() == len([s for s in statuses if s != "transformed"])
    page.locator("input[data-status=transformed]").check()
    page.locator("input[data-status=new]").uncheck()
    assert page.locator("#tgtrows .row.new").count() == 0
    assert page.locator("path.pair").count() == 5
    page.locator("input[data-status=new]").check()
    page.locator("input[data-op=batchnorm]").uncheck()
    ops = page.locator("#tgtrows .row .op").all_text_contents()
    assert "batchnorm" not in ops and len(ops) == 6
    page.locator("input[data-op=batchnorm]").check()
    page.fill("#search", "block2_conv1")
    assert page.locator("path.pair").count() == 1
    assert page.locator("#tgtrows .row").all_text_contents() == ["features.7conv2d"]
    page.fill("#search", "")
    assert page.locator("path.pair").count() == 5
    shot = Path(os.environ.get("WEIGHTMAP_SCREENSHOT_DIR", tmp_path)) / "report-filters.png"
    page.locator("path.pair").last.click(force=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not problems
    page.close()


def test_hostile_names_are_shown_as_text(browser, tmp_path):
    from weightmap import report_html
    evil = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'
    manifest = {"weightmap_manifest": 1, "source": {"path": evil}, "target": {"path": "t"},
                "summary": {"params": 1, "transferred": 1, "carried_over": 1}, "decisions": [evil],
                "params": {evil: {"layer": evil, "status": "transferred", "source": ["s\x1b[0m"],
                                  "shape": [1], "dtype": "float32", "transforms": [],
                                  "frozen": False, "lr_scale": 1.0}},
                "unused": [], "layers": {
                    "source": [{"name": "s\x1b[0m", "op": "dense", "tensors": [
                        {"name": "s\x1b[0m", "shape": [1], "dtype": "float32"}]}],
                    "target": [{"name": evil, "op": "dense", "tensors": [
                        {"name": evil, "shape": [1], "dtype": "float32"}]}]}}
    path = tmp_path / "evil.html"
    report_html.write(manifest, path)
    page, problems, requests = _open(browser, path)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 2
    assert page.locator("#tgtrows .row").first.get_attribute("data-layer") == evil
    assert page.locator("path.pair").count() == 1
    assert not problems and requests == [path.as_uri()]
    page.close()


TWIN = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"


def _verified(tmp_path, *extra):
    out, page = tmp_path / "v.safetensors", tmp_path / "v.html"
    code = main(["port", str(SOURCE), "--to", str(TWIN), "--out", str(out), "--report", str(page),
                 "-q", *extra])
    return code, page, json.loads((tmp_path / "v.manifest.json").read_text())


def test_the_verify_plot_has_one_point_per_compared_layer(browser, tmp_path):
    pytest.importorskip("tf_keras")
    code, path, manifest = _verified(tmp_path, "--verify")
    assert code == 0 and manifest["verify"]["passed"]
    compared = [r for r in manifest["verify"]["layers"] if r["status"] != "skipped"]
    page, problems, requests = _open(browser, path)
    assert page.locator("#vsvg circle.vpoint").count() == len(compared) == 6
    assert page.locator("#vsvg circle.first").count() == 0
    assert page.locator("#vtext .verdict-pass").count() == 1
    page.locator("#vsvg circle.vpoint").nth(4).click()          # a point opens its pair
    assert page.locator("#detail h2").text_content() == "classifier.1 \u2190 fc1"
    assert "ok (rel" in page.locator("#detail").text_content()
    assert not problems and requests == [path.as_uri()]
    page.close()


def test_a_failed_verification_highlights_its_first_divergence(browser, tmp_path):
    """A plan edited to drop the flatten permutation: the port is kept (--verify=warn) and the
    page points at the dense layer that diverged first."""
    pytest.importorskip("tf_keras")
    plan = tmp_path / "plan.json"
    assert main(["port", str(SOURCE), "--to", str(TWIN), "--dry-run", "--save-plan", str(plan),
                 "-q"]) == 0
    data = json.loads(plan.read_text())
    fc = next(t for t in data["tensors"] if t["target"] == "classifier.1.weight")
    fc["steps"] = [s for s in fc["steps"] if s["op"] != "flatten_permute"]
    plan.write_text(json.dumps(data))
    code, path, manifest = _verified(tmp_path, "--plan", str(plan), "--verify=warn")
    first = manifest["verify"]["first_divergence"]
    assert code == 0 and not manifest["verify"]["passed"]
    assert (first["target"], first["source"]) == ("classifier.1", "fc1")
    page, problems, _ = _open(browser, path)
    mark = page.locator("#vsvg circle.first")
    assert mark.count() == 1 and "classifier.1 \u2190 fc1" in mark.locator("title").text_content()
    assert page.locator("#vtext .verdict-fail").count() == 1
    assert "first divergence classifier.1" in page.locator("#look").text_content()
    shot = Path(os.environ.get("WEIGHTMAP_SCREENSHOT_DIR", tmp_path)) / "report-verify.png"
    page.screenshot(path=str(shot), full_page=True)
    assert not problems
    page.close()


def test_the_verification_card_of_a_port_whose_outputs_were_not_compared(browser, tmp_path):
    """Every BatchNorm of the target is new: the outputs are not compared and 4 of the 5
    paired layers lie past the stop. The card says how much was compared, and no figure is a
    raw ``null`` or ``undefined`` anywhere (before: ``outputs: output rel null``)."""
    pytest.importorskip("tf_keras")
    out, path = tmp_path / "bn.safetensors", tmp_path / "bn.html"
    assert main(["port", str(SOURCE), "--to", str(TARGET), "--out", str(out), "--report",
                 str(path), "--verify=warn", "--freeze", "transferred", "-q"]) == 0
    page, problems, _ = _open(browser, path)
    card = page.locator("#vtext").inner_text()
    assert card.startswith("incomplete (tolerance 1.00e-4); outputs: output not compared; "
                           "compared on 1 of 5 paired layers, up to features.0 \u2190 "
                           "block1_conv1 (the target's features.1 is new"), card
    assert "4 paired layers past it are not checked" in card
    assert "verification incomplete: 1 of 5 paired layers compared" in \
        page.locator("#look").inner_text()
    page.locator("path.pair", has=page.locator("title", has_text="features.3")).click(force=True)
    assert "skipped; not compared: the models compute different things from here on" in \
        page.locator("#detail").inner_text()
    page.locator("path.pair").last.click(force=True)           # docs/report.png
    body = page.locator("body").inner_text()
    assert "null" not in body and "undefined" not in body and "NaN" not in body
    shot = Path(os.environ.get("WEIGHTMAP_SCREENSHOT_DIR", tmp_path)) / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert not problems
    page.close()


def test_a_pair_of_infinite_error_is_drawn_and_named(browser, tmp_path, ported):
    """A NaN or Inf activation gives rel = inf, null in JSON: the pair is drawn at the top of
    the plot and its figure reads 'not finite'. A verification without a probe (a side that
    could not run) shows none (before: a raw 'null')."""
    from weightmap import report_html
    _, manifest = ported
    layers = [{"source": "block1_conv1", "target": "features.0", "depth": 0, "max_abs": 0.0,
               "rel": 0.0, "status": "ok", "note": ""},
              {"source": "fc1", "target": "classifier.1", "depth": 1, "max_abs": None,
               "rel": None, "status": "diverged", "note": ""}]
    verify = {"passed": False, "tol": 1e-4, "probe": None, "ran": {}, "layers": layers,
              "outputs": [{"name": "output", "shape": [2, 10], "max_abs": None, "rel": None,
                           "status": "diverged", "note": ""}],
              "first_divergence": {"source": "fc1", "target": "classifier.1", "rel": None,
                                   "inputs_rel": 0.0},
              "compared_up_to": None, "synthetic": [], "notes": []}
    path = tmp_path / "inf.html"
    report_html.write(dict(manifest, verify=verify), path)
    page, problems, _ = _open(browser, path)
    points = page.locator("#vsvg circle.vpoint")
    assert points.count() == 2 and page.locator("#vsvg circle.first").count() == 1
    assert float(points.nth(1).get_attribute("cy")) < float(points.nth(0).get_attribute("cy"))
    assert "classifier.1 \u2190 fc1: rel not finite" in points.nth(1).locator("title") \
        .text_content()
    assert "outputs: output rel not finite" in page.locator("#vtext").inner_text()
    assert "null" not in page.locator("body").inner_text() and not problems
    page.close()


def test_a_verification_that_cannot_compare_anything_says_why(browser, tmp_path, ported):
    """An adapted port whose target computes another function (``--adapt pos_embed``): the
    page says verification is incomplete and why, with no figure."""
    from weightmap import report_html
    _, manifest = ported
    why = ("--adapt pos_embed resampled pos_embed's 8x8 grid to 16x16, so the target computes "
           "another function, on inputs of another size, by design")
    verify = {"passed": False, "verdict": "INCOMPLETE", "tol": 1e-4, "probe": None, "ran": {},
              "outputs": [], "layers": [], "first_divergence": None, "compared_up_to": None,
              "synthetic": [], "notes": [], "unverifiable": why}
    path = tmp_path / "adapted.html"
    report_html.write(dict(manifest, verify=verify), path)
    page, problems, _ = _open(browser, path)
    assert page.locator("#vtext").inner_text() == \
        f"incomplete (tolerance 1.00e-4); nothing can be compared: {why}"
    assert f"verification incomplete: nothing can be compared: {why}" in \
        page.locator("#look").inner_text()
    assert page.locator("#vsvg circle").count() == 0 and not problems
    page.close()
