"""How long matching takes on synthetic graphs of about 10,000 tensors.

Run: ``python benchmarks/match_bench.py``. Prints one line per scenario: tensors and layers on
each side, matched layers, and the best wall time of a few runs. Not a test: timings depend on
the machine; the point is to see that matching stays well under a second at this size.

Scenarios (torch-style state-dict shapes of a deep bottleneck ResNet, 3 tensors per layer on
average):
  names      same names, source wrapped in ``module.`` (name anchors everywhere)
  renamed    every source name replaced by ``net.<k>`` (structure only) and a deeper target
             (one more block per stage): segments are cut at unique layers, then aligned
"""
from __future__ import annotations

import time

from weightmap import registry
from weightmap.graph import ParamGraph
from weightmap.match import match
from weightmap.reading.statedict import Entry, group


def bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{leaf}", (c,)) for leaf in ("weight", "bias", "running_mean",
                                                     "running_var")] + \
        [(f"{prefix}.num_batches_tracked", ())]


def resnet(blocks: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    spec = [("conv1.weight", (64, 3, 7, 7))] + bn("bn1", 64)
    cin = 64
    for stage, count in enumerate(blocks, start=1):
        width = 64 * 2 ** (stage - 1)
        for b in range(count):
            p = f"layer{stage}.{b}"
            spec += [(f"{p}.conv1.weight", (width, cin, 1, 1))] + bn(f"{p}.bn1", width)
            spec += [(f"{p}.conv2.weight", (width, width, 3, 3))] + bn(f"{p}.bn2", width)
            spec += [(f"{p}.conv3.weight", (width * 4, width, 1, 1))] + bn(f"{p}.bn3", width * 4)
            cin = width * 4
    return spec + [("fc.weight", (1000, cin)), ("fc.bias", (1000,))]


def graph(spec, name: str) -> ParamGraph:
    entries = [Entry(n, s, "float32", None) for n, s in spec]
    return ParamGraph(format="bench", framework="torch", source=name,
                      layers=tuple(group(entries, registry.convention("torch"))),
                      order="registration")


def renamed(spec):
    ids: dict[str, int] = {}
    out = []
    for name, shape in spec:
        layer, _, leaf = name.rpartition(".")
        out.append((f"net.{ids.setdefault(layer, len(ids))}.{leaf}", shape))
    return out


def best_time(source: ParamGraph, target: ParamGraph, runs: int = 3) -> tuple[float, int]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = match(source, target)
        times.append(time.perf_counter() - t0)
    return min(times), len(result.layers)


def main() -> None:
    blocks = (40, 80, 300, 135)
    base = resnet(blocks)
    deeper = resnet(tuple(b + 1 for b in blocks))
    scenarios = {
        "names": (graph([(f"module.{n}", s) for n, s in base], "src"), graph(base, "tgt")),
        "renamed": (graph(renamed(base), "src"), graph(deeper, "tgt")),
    }
    for label, (src, tgt) in scenarios.items():
        seconds, matched = best_time(src, tgt)
        print(f"{label:8s} source {src.totals()['tensors']} tensors / {len(src.layers)} layers, "
              f"target {tgt.totals()['tensors']} / {len(tgt.layers)}: {matched} layers matched "
              f"in {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
