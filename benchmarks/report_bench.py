"""First render of the HTML mapping report of a 1,000-layer pair, measured in the browser.

Run: ``python benchmarks/report_bench.py [--layers 1000] [--reps 5] [--screenshot F.png]``.
A real port makes the manifest: a torch source of N/2 blocks (Linear + LayerNorm, so N layers)
saved as safetensors, into a torch target file with other names and a new head. The page is
opened in headless Chromium (Playwright, ``/usr/bin/chromium`` or ``$WEIGHTMAP_CHROMIUM``)
``--reps`` times, each in a fresh page; the figure is the time from the page's script start to
the first frame after everything is drawn (``window.weightmapRenderMs``), and the load event.
Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "report"

TARGET = '''
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
    def forward(self, x):
        return self.norm(torch.relu(self.proj(x)) + x)

class Net(nn.Module):
    def __init__(self, blocks, d, classes):
        super().__init__()
        self.trunk = nn.Sequential(*[Block(d) for _ in range(blocks)])
        self.classifier = nn.Linear(d, classes)
    def forward(self, x):
        return self.classifier(self.trunk(x))

model = Net({blocks}, {d}, 7)
example_input = torch.zeros(1, {d})
'''


def make_source(blocks: int, d: int, path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    state = {}
    for i in range(blocks):
        state[f"encoder.layers.{i}.fc.weight"] = torch.randn(d, d) * 0.1
        state[f"encoder.layers.{i}.fc.bias"] = torch.randn(d) * 0.1
        state[f"encoder.layers.{i}.ln.weight"] = 1 + torch.randn(d) * 0.1
        state[f"encoder.layers.{i}.ln.bias"] = torch.randn(d) * 0.1
    state["head.weight"] = torch.randn(3, d)
    state["head.bias"] = torch.randn(3)
    save_file(state, str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--screenshot", help="also write a screenshot of the page")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    import weightmap
    WORK.mkdir(parents=True, exist_ok=True)
    blocks, d = args.layers // 2, 16
    src, tgt = WORK / "source.safetensors", WORK / "target.py"
    make_source(blocks, d, src)
    tgt.write_text(TARGET.format(blocks=blocks, d=d))
    started = time.perf_counter()
    report = weightmap.port(src, str(tgt), WORK / "out.safetensors", force=True, progress=False)
    port_s = time.perf_counter() - started
    from weightmap.emit import report_html
    page_path = report_html.write(report.manifest, WORK / "report.html", force=True)
    layers = report.manifest["layers"]
    print(f"pair: {len(layers['source'])} source layers, {len(layers['target'])} target layers, "
          f"{len(report.manifest['params'])} target tensors; port {port_s:.2f} s; "
          f"page {page_path.stat().st_size / 1e6:.2f} MB")
    exe = os.environ.get("WEIGHTMAP_CHROMIUM") or shutil.which("chromium")
    if exe is None:
        print("no chromium on PATH", file=sys.stderr)
        return 1
    render, load = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        for _ in range(args.reps + 1):                  # the first load warms the browser up
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-rendered='1']")
            render.append(page.evaluate("window.weightmapRenderMs"))
            load.append(page.evaluate(
                "performance.getEntriesByType('navigation')[0].loadEventEnd"))
            pairs = page.locator("path.pair").count()
            if args.screenshot and len(render) == args.reps + 1:
                page.screenshot(path=args.screenshot)
            page.close()
        browser.close()
    render, load = render[1:], load[1:]
    print(f"drawn pairs: {pairs}")
    print(f"first render (script start to first frame): median {statistics.median(render):.0f} ms "
          f"(min {min(render):.0f}, max {max(render):.0f}) over {len(render)} loads")
    print(f"load event after navigation start: median {statistics.median(load):.0f} ms")
    print(json.dumps({"layers": args.layers, "render_ms": render, "load_ms": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
