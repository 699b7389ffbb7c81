"""``weightmap verify`` on a VGG16-sized pair, as a whole process, and where its time goes.

Run: ``python benchmarks/verify_bench.py [--reps 3] [--work DIR]``.

It generates once (cached in ``benchmarks/_work/verify_bench/``, git-ignored) the full
keras.applications VGG16 architecture (138 M parameters, 528 MB float32) with seeded random
weights, saved by tf_keras as a legacy ``.h5``, and ports it into its torch twin
(``tests/e2e/models/vgg_torch.py:vgg16``, torchvision's layout, ``example_input`` 1x3x224x224). Then, several times:

  verify   ``python -m weightmap verify vgg16.h5 --to vgg_torch.py:vgg16 --weights vgg16.safetensors``

(wall time, CPU time and peak RSS of the process, as ``port_bench.measure`` takes them), and
once the same verification in stages inside one process (CPU and wall seconds per stage:
reading both graphs, opening each side's runner, the two forward passes on the probe of shape
(2, 3, 224, 224) with every paired layer's output kept, the comparison).

Not a test: the numbers depend on the machine (and on how many other processes share it: the
CPU time is the steadier figure).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# torchvision's VGG16 layout, the twin of keras.applications.VGG16 (the suite's headline model)
TARGET = f"{HERE.parent / 'tests' / 'e2e' / 'models' / 'vgg_torch.py'}:vgg16"

from port_bench import measure  # noqa: E402

MAKE_SOURCE = r"""
import os, sys
import numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tf_keras
tf_keras.utils.set_random_seed(0)
model = tf_keras.applications.VGG16(weights=None, classifier_activation=None)
rng = np.random.default_rng(0)
weights = []
for w in model.get_weights():
    if w.ndim == 1:
        weights.append(rng.uniform(-0.1, 0.1, w.shape).astype(np.float32))
    else:                     # He-style scale keeps activations alive through 16 layers
        fan_in = int(np.prod(w.shape[:-1]))
        weights.append((rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
model.set_weights(weights)
model.save(sys.argv[1], save_format="h5")
"""

STAGES = r"""
import sys, time
from pathlib import Path
marks = []
def mark(name):
    marks.append((name, time.process_time(), time.perf_counter()))
mark("start")
from weightmap import equivalence as eq
from weightmap.equivalence import probe as probe_mod, sides
from weightmap.reading.read import read
mark("import weightmap")
source, target, weights = sys.argv[1:4]
src, tgt = read(source), eq._read_target(target)
mark("read both graphs (torch imported, target traced on meta)")
entries, _ = eq._entries(None, Path(weights), src, tgt)
pairing = eq.pair_layers(entries, src, tgt)
mark("pair the layers (from the manifest)")
sr = sides.open_source(source, src)
mark("open the source (TensorFlow imported, model rebuilt from its config, weights loaded)")
tr = sides.open_target(target, tgt, Path(weights))
mark("open the target (built on meta, the written tensors assigned)")
probe = probe_mod.make(src, tgt, sr.inputs(), tr.inputs(), 0)
run_s = sr.run(probe.feeds["source"], [p.source for p in pairing.pairs])
mark("run the source (Keras, every paired layer's output kept)")
run_t = tr.run(probe.feeds["target"], [p.target for p in pairing.pairs])
mark("run the target (torch eager, forward hooks)")
result = eq._judge(pairing, src, tgt, run_s, run_t, probe.info, {"tol": 1e-4, "synthetic": ()},
                   {})
mark("compare outputs and paired layers")
assert result.passed, result.summary()
for (_, c0, w0), (name, c1, w1) in zip(marks, marks[1:]):
    print(f"  {c1 - c0:6.2f} s CPU {w1 - w0:6.2f} s wall  {name}")
print(f"  {marks[-1][1] - marks[0][1]:6.2f} s CPU {marks[-1][2] - marks[0][2]:6.2f} s wall  "
      f"in all; probe {tuple(probe.info['shape'])}, {len(result.layers)} pairs, outputs rel "
      f"{result.outputs[0].rel:.1e}")
"""


def prepare(work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    files = {"source": work / "vgg16.h5", "target": TARGET,
             "weights": work / "vgg16.safetensors"}
    if not files["source"].exists():
        print(f"generating {files['source']} (once) ...", flush=True)
        tmp = work / "vgg16.tmp.h5"
        subprocess.run([sys.executable, "-c", MAKE_SOURCE, str(tmp)], check=True)
        tmp.rename(files["source"])
    if not files["weights"].exists():
        subprocess.run([sys.executable, "-m", "weightmap", "port", str(files["source"]),
                        "--to", str(files["target"]), "--out", str(files["weights"]),
                        "--quiet"], check=True)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "_work" / "verify_bench")
    args = parser.parse_args()
    files = prepare(args.work)
    cmd = [sys.executable, "-m", "weightmap", "verify", str(files["source"]), "--to",
           str(files["target"]), "--weights", str(files["weights"])]
    runs = [measure(cmd) for _ in range(args.reps)]
    print(f"weightmap verify, VGG16 (138 M parameters) Keras .h5 -> torch, "
          f"{args.reps} runs (median):")
    print(f"  {statistics.median(r.wall for r in runs):6.2f} s wall  "
          f"{statistics.median(r.cpu for r in runs):6.2f} s CPU  "
          f"{statistics.median(r.rss for r in runs) / 2**30:5.2f} GiB peak RSS")
    print("in stages (one process):")
    subprocess.run([sys.executable, "-c", textwrap.dedent(STAGES), str(files["source"]),
                    str(files["target"]), str(files["weights"])], check=True)


if __name__ == "__main__":
    main()
