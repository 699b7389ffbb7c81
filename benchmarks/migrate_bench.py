"""A 20-checkpoint migration against 20 separate ``weightmap port`` calls, as whole processes.

Run: ``python benchmarks/migrate_bench.py [--reps 3] [--work DIR]``.

The collection is the one the migration tests use (``fixtures/gen_migrate.py``): 5 tf-keras
``.h5`` files, 5 DataParallel ``.pth``, 5 Lightning-style ``.ckpt`` and 5 ``.safetensors`` of
the README's small VGG, all ported into its torch model file
(``fixtures/examples/small_vgg_torch.py``). Written once into ``benchmarks/_work/migrate_bench/``
(git-ignored). Then, ``--reps`` times each, wall time of:

  migrate -j1   ``weightmap migrate spec.yaml --jobs 1 --force --quiet``
  migrate -j2   ``weightmap migrate spec.yaml --jobs 2 --force --quiet``
  20 x port     ``weightmap port SRC --to small_vgg_torch.py --out OUT --force --quiet``, one
                process per checkpoint, one after another (the shell loop a migration replaces)
  resume        ``weightmap migrate spec.yaml --quiet`` once everything is done: every job
                skipped

Medians are printed, and the outputs of the three ways are compared byte for byte.

Not a test: the numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _gen():
    spec = importlib.util.spec_from_file_location("gen_migrate", ROOT / "fixtures" /
                                                  "gen_migrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_collection(work: Path) -> list[Path]:
    gen = _gen()
    sources = work / "sources"
    if not (sources / "done").exists():
        shutil.rmtree(sources, ignore_errors=True)
        files = gen.torch_collection(sources)
        for path in gen.keras_files():
            shutil.copy(path, sources / path.name)
        (sources / "done").write_text("\n".join(str(p) for k in files.values() for p in k))
    found = sorted(p for p in sources.iterdir() if p.suffix in (".h5", ".pth", ".ckpt",
                                                                ".safetensors"))
    assert len(found) == 20, found
    (work / "spec.yaml").write_text(f"out_dir: {work / 'migrated'}\ntarget: {gen.TORCH_MODEL}\n"
                                    f"jobs:\n  - source: {sources}/*.*\n")
    return found


def _env() -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "adapters"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _timed(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    for cmd in commands:
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "migrate_bench")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sources = make_collection(work)
    wm = [sys.executable, "-m", "weightmap"]
    spec = str(work / "spec.yaml")
    ports_dir = work / "ports"
    ports_dir.mkdir(exist_ok=True)
    gen = _gen()
    ports = [wm + ["port", str(s), "--to", str(gen.TORCH_MODEL), "--out",
                   str(ports_dir / (s.name.split(".")[0] + ".safetensors")), "--force",
                   "--quiet"] for s in sources]
    runs = {"migrate -j1": [wm + ["migrate", spec, "--jobs", "1", "--force", "--quiet"]],
            "migrate -j2": [wm + ["migrate", spec, "--jobs", "2", "--force", "--quiet"]],
            "20 x port": ports,
            "resume (all skipped)": [wm + ["migrate", spec, "--quiet"]]}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, commands in runs.items():
            times[name].append(_timed(commands))
    print(f"20 checkpoints ({sum(s.stat().st_size for s in sources) / 1e6:.2f} MB) into "
          f"{gen.TORCH_MODEL.name}, {os.cpu_count()} CPUs, median of {args.reps}:")
    base = statistics.median(times["20 x port"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:22s} {median:7.2f} s   ({base / median:4.1f}x the 20 port calls)   "
              f"runs: {', '.join(f'{v:.2f}' for v in values)}")
    migrated = work / "migrated"
    same = all((migrated / p.name).read_bytes() == p.read_bytes()
               for p in ports_dir.glob("*.safetensors"))
    print(f"outputs of migrate and of the port calls byte-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
