"""``weightmap inspect`` of ~1 GB checkpoints reads headers only: wall time and peak RSS.

Run: ``python benchmarks/inspect_bench.py [--reps 3] [--work DIR] [--formats ...]``.

Generates once, with the real libraries (cached in ``benchmarks/_work/inspect_bench/``,
git-ignored), four checkpoints of about 1 GB of float32 weights:

  safetensors  safetensors.numpy.save_file of 16 (4096, 4096) matrices + biases
  torch .pt    torch.save of the same state dict (zip format)
  keras .h5    a tf-keras Sequential of 16 Dense(4096) layers saved as legacy HDF5
  onnx         a 16-MatMul onnx graph, initializers in one external data file

Then runs, as separate processes (peak RSS through GNU ``time``, see ``port_bench.measure``),
``python -m
weightmap inspect FILE --json`` against what the format's library does to look at the same file
(load it: ``safetensors.numpy.load_file``, ``torch.load(weights_only=True)``, every h5py dataset
read, ``onnx.load``), plus the interpreter with ``weightmap.cli`` imported and nothing read. Medians
of ``--reps`` runs. Not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import port_bench  # noqa: E402
LAYERS, WIDTH = 16, 4096          # 16 x 4096 x 4096 x 4 bytes = 1.07 GB


def weights():
    import numpy as np
    rng = np.random.default_rng(0)
    for i in range(LAYERS):
        yield i, rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) * 0.02, \
            np.zeros(WIDTH, np.float32)


def make_safetensors(path: Path) -> None:
    from safetensors.numpy import save_file
    state = {}
    for i, w, b in weights():
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = w, b
    save_file(state, str(path))


def make_torch(path: Path) -> None:
    import torch
    state = {}
    for i, w, b in weights():
        state[f"layers.{i}.weight"] = torch.from_numpy(w)
        state[f"layers.{i}.bias"] = torch.from_numpy(b)
    torch.save(state, str(path))


def make_keras(path: Path) -> None:
    import tf_keras
    model = tf_keras.Sequential([tf_keras.Input((WIDTH,))] +
                                [tf_keras.layers.Dense(WIDTH, kernel_initializer="zeros")
                                 for _ in range(LAYERS)])
    for layer, (_, w, b) in zip(model.layers, weights()):
        layer.set_weights([w, b])
    model.save(str(path), save_format="h5")


def make_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits = [], []
    last = "x"
    for i, w, _ in weights():
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"h{i}"]))
        last = f"h{i}"
    graph = helper.make_graph(nodes, "stack",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, WIDTH])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


FORMATS = {
    "safetensors": ("model.safetensors", make_safetensors,
                    "from safetensors.numpy import load_file; load_file({p!r})"),
    "torch": ("model.pt", make_torch, "import torch; torch.load({p!r}, weights_only=True)"),
    "keras": ("model.h5", make_keras,
              "import h5py\nkeep = []\nwith h5py.File({p!r}, 'r') as f:\n"
              "    f.visititems(lambda n, o: keep.append(o[()]) if isinstance(o, h5py.Dataset) "
              "else None)"),
    "onnx": ("model.onnx", make_onnx, "import onnx; onnx.load({p!r})"),
}


def measure(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``cmd`` as its own process (``port_bench.measure``)."""
    run = port_bench.measure(cmd)
    return run.wall, run.rss


def median_of(cmd: list[str], reps: int) -> tuple[float, int]:
    runs = [measure(cmd) for _ in range(reps)]
    return statistics.median(w for w, _ in runs), int(statistics.median(r for _, r in runs))


def checkpoint_bytes(path: Path) -> int:
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "inspect_bench")
    ap.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--no-library", action="store_true", help="skip the full-load comparison")
    ap.add_argument("--make", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make:
        FORMATS[args.make[0]][1](Path(args.make[1]))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    wall, rss = median_of([py, "-c", "import weightmap.cli"], args.reps)
    print(f"interpreter + import weightmap.cli: {wall:.2f} s, peak RSS {rss / 1e6:.0f} MB "
          f"(medians of {args.reps})")
    for fmt in args.formats:
        name, make, load = FORMATS[fmt]
        path = args.work / name
        if not path.exists():          # in a child process: this one stays small
            print(f"generating {path} (once) ...", flush=True)
            subprocess.run([py, __file__, "--make", fmt, str(path)], check=True)
        size = checkpoint_bytes(path)
        wall, rss = median_of([py, "-m", "weightmap", "inspect", str(path), "--json"], args.reps)
        line = (f"  {fmt:11s} {size / 1e9:.2f} GB  weightmap inspect: {wall:5.2f} s, "
                f"peak RSS {rss / 1e6:5.0f} MB")
        if not args.no_library:
            lwall, lrss = median_of([py, "-c", load.format(p=str(path))], args.reps)
            line += f"   | library full load: {lwall:5.2f} s, peak RSS {lrss / 1e6:5.0f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
