"""weightmap's port against the usual hand-written script and a plain file copy, as whole processes.

Run: ``python benchmarks/port_bench.py [--reps 3] [--layout conv1d|linear] [--work DIR]``.

It generates once (cached in ``benchmarks/_work/port_bench/``, git-ignored) a GPT-2-medium-sized
checkpoint (n_embd 1024, 24 layers, vocab 50257, 1024 positions: ~1.42 GB float32) in Hugging
Face's safetensors layout (``Conv1D`` weights stored (in, out)) and a torch target model file with
``nn.Linear`` layers, a fused qkv Linear(E, 3E) and other names (``gpt_files.py``). Then, several
times each, as separate processes (wall time; peak RSS and CPU time from GNU ``time``, or
``os.wait4`` without it):

  weightmap  ``python -m weightmap port SRC --to target.py --out OUT --force --quiet``
  usual      load_file everything, build the target (random init), rename + transpose,
             load_state_dict, save_file (``gpt_files.USUAL_SCRIPT``)
  copy       ``cp SRC OUT`` (the floor: reading and writing the bytes once), and ``cp`` followed
             by an fsync of the copy (weightmap fsyncs its output before renaming it into place)

Medians are printed with the ratios, and the two outputs are compared tensor by tensor. Last, the
matching time of a synthetic ~10,000-tensor pair (``match_bench.py``'s deep ResNet).

Not a test: the numbers depend on the machine (and on the page cache: the source is read warm by
all three, since it was just written or read by the previous run).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gpt_files  # noqa: E402


@dataclass(frozen=True)
class Run:
    wall: float        # seconds
    rss: int           # peak resident set size, bytes
    cpu: float         # user + system seconds (less sensitive than wall time to a busy machine)


TIME = "/usr/bin/time"


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` as a child process: its own wall time, peak RSS and CPU time.

    Through GNU time when it is installed: Linux counts a process's peak RSS from before its
    exec, so a child forked from a big parent would report the parent's size; ``time`` forks the
    command from a small process. Otherwise ``os.wait4`` (keep this process small)."""
    if os.path.exists(TIME):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
            t0 = time.perf_counter()
            proc = subprocess.run([TIME, "-q", "-o", report.name, "-f", "%M %U %S", *cmd],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
            kib, user, system = report.read().split()[-3:]
        return Run(wall=wall, rss=int(kib) * 1024, cpu=float(user) + float(system))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode(errors='replace')}")
    return Run(wall=wall, rss=usage.ru_maxrss * 1024,   # ru_maxrss is in KiB on Linux
               cpu=usage.ru_utime + usage.ru_stime)


def prepare(work: Path, layout: str) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    files = {"source": work / f"gpt2_medium_{layout}.safetensors",
             "target": work / "gpt_target.py", "usual": work / f"usual_port_{layout}.py"}
    if not files["source"].exists():     # in a child process: this one stays small
        print(f"generating {files['source']} (once) ...", flush=True)
        tmp = files["source"].with_suffix(".tmp")
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import gpt_files; "
                "gpt_files.make_checkpoint(__import__('pathlib').Path(sys.argv[2]), "
                "gpt_files.GPT2_MEDIUM, layout=sys.argv[3])")
        subprocess.run([sys.executable, "-c", code, str(HERE), str(tmp), layout], check=True)
        tmp.rename(files["source"])
    gpt_files.write_target(files["target"], gpt_files.GPT2_MEDIUM)
    gpt_files.write_usual_script(files["usual"], layout=layout)
    return files


OUTPUTS = {"weightmap": "weightmap", "usual": "usual", "copy": "copy",
           "copy+fsync": "copy_fsync"}


def clear(out: Path, label: str) -> None:
    """Remove the previous output of ``label`` and flush the file system before a measured run:
    freeing (and discarding) the last run's 1.4 GB is not part of the port."""
    for path in out.glob(OUTPUTS[label] + ".*"):
        path.unlink()
    os.sync()


def commands(files: dict[str, Path], out: Path) -> dict[str, list[str]]:
    py = sys.executable
    fsync = "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)"
    return {
        "weightmap": [py, "-m", "weightmap", "port", str(files["source"]), "--to",
                      str(files["target"]), "--out", str(out / "weightmap.safetensors"),
                      "--force", "--quiet"],
        "usual": [py, str(files["usual"]), str(files["source"]), str(files["target"]),
                  str(out / "usual.safetensors")],
        "copy": ["cp", str(files["source"]), str(out / "copy.safetensors")],
        "copy+fsync": ["sh", "-c", f'cp "$1" "$2" && {py} -c "{fsync}" "$2"', "sh",
                       str(files["source"]), str(out / "copy_fsync.safetensors")],
    }


# One weightmap port in stages, timed inside its own process (``--stages``): where the time goes.
STAGES_SCRIPT = r"""
import os, sys, time
from pathlib import Path
t = [time.perf_counter()]
import torch
t.append(time.perf_counter())
from weightmap import api
from weightmap.options import PlanOptions
from weightmap.transform.execute import TensorStream
from weightmap.reading.read import read
from weightmap.io.atomic import background_fsync
from weightmap.emit.readback import ReadBack, check_written
from weightmap_safetensors.emit import write_output
t.append(time.perf_counter())
src, tgt = read(sys.argv[1]), read(sys.argv[2], lazy=True)
t.append(time.perf_counter())
plan = api._plan(src, tgt, rules=None, options=PlanOptions())
t.append(time.perf_counter())
out = Path(sys.argv[3])
read_back = ReadBack()                            # as weightmap.emit.dispatch.write does
write_output(out, kind="safetensors", plan=plan, target=tgt, tensors=TensorStream(plan, src, tgt),
             read_back=read_back)
t.append(time.perf_counter())
with background_fsync(out):
    check_written(out, plan, read_back=read_back)
    t.append(time.perf_counter())
t.append(time.perf_counter())
print(" ".join(f"{b - a:.3f}" for a, b in zip(t, t[1:])), flush=True)
os._exit(0)                       # as the CLI does (weightmap.cli.run)
"""
STAGE_NAMES = ("import torch", "import weightmap", "read source + build target on meta",
               "match + plan + check", "write (each window digested as it lands)",
               "check the re-parsed file (fsync beside it)",
               "rest of the fsync")


def stages(files: dict[str, Path], out: Path, reps: int) -> str:
    runs = []
    for _ in range(reps):
        target = out / "stages.safetensors"
        if target.exists():
            target.unlink()
        os.sync()
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", STAGES_SCRIPT, str(files["source"]),
                               str(files["target"]), str(target)], check=True,
                              capture_output=True, text=True)
        total = time.perf_counter() - t0
        runs.append([float(x) for x in done.stdout.split()] + [total])
    med = [statistics.median(r[i] for r in runs) for i in range(len(STAGE_NAMES) + 1)]
    lines = [f"  {name:36s} {sec:6.2f} s" for name, sec in zip(STAGE_NAMES, med)]
    rest = med[-1] - sum(med[:-1])
    lines.append(f"  {'interpreter start + exit':36s} {rest:6.2f} s")
    lines.append(f"  {'whole process':36s} {med[-1]:6.2f} s")
    return "\n".join(lines)


def compare_outputs(a: Path, b: Path) -> str:
    """Same names, dtypes, shapes and bytes per tensor (metadata aside)."""
    from safetensors import safe_open
    with safe_open(str(a), "np") as fa, safe_open(str(b), "np") as fb:
        if sorted(fa.keys()) != sorted(fb.keys()):
            return f"different names: {sorted(set(fa.keys()) ^ set(fb.keys()))[:5]}"
        for name in fa.keys():
            x, y = fa.get_tensor(name), fb.get_tensor(name)
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return f"tensor {name} differs"
    return "identical (names, dtypes, shapes, bytes)"


def matching_figure() -> str:
    import match_bench
    from weightmap.match import match
    from weightmap.planning.build import build_plan
    blocks = (40, 80, 300, 135)
    base = match_bench.resnet(blocks)
    src = match_bench.graph([(f"module.{n}", s) for n, s in base], "src")
    renamed_src = match_bench.graph(match_bench.renamed(base), "src")
    deeper = match_bench.graph(match_bench.resnet(tuple(b + 1 for b in blocks)), "tgt")
    tgt = match_bench.graph(base, "tgt")
    lines = []
    for label, (s, t) in {"names": (src, tgt), "renamed": (renamed_src, deeper)}.items():
        match_times, plan_times = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            m = match(s, t)
            t1 = time.perf_counter()
            plan = build_plan(s, t, m)
            plan.check(s, t)
            plan_times.append(time.perf_counter() - t1)
            match_times.append(t1 - t0)
        lines.append(f"  {label:8s} {s.totals()['tensors']} -> {t.totals()['tensors']} tensors: "
                     f"match {statistics.median(match_times) * 1000:.0f} ms, plan + check "
                     f"{statistics.median(plan_times) * 1000:.0f} ms "
                     f"({len(m.layers)} layers matched)")
    return "\n".join(lines)


def precompile() -> None:
    """Byte-compile weightmap as an installed package is (pip compiles at install time, as it
    did torch's modules). A checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (set on some CI
    machines) would otherwise compile weightmap's ~100 modules from source in every process,
    about 0.3 s that no installed weightmap pays."""
    import compileall
    for folder in ("weightmap", "adapters"):
        compileall.compile_dir(str(HERE.parent / folder), quiet=1)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layout", choices=("conv1d", "linear"), default="conv1d")
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "port_bench")
    ap.add_argument("--only", nargs="*", help="run only these of: weightmap usual copy copy+fsync")
    ap.add_argument("--no-matching", action="store_true")
    ap.add_argument("--stages", action="store_true",
                    help="also time weightmap's stages inside one process (medians)")
    args = ap.parse_args(argv)
    files = prepare(args.work, args.layout)
    out = args.work / "out"
    out.mkdir(exist_ok=True)
    size = files["source"].stat().st_size
    print(f"source: {files['source'].name} {gb(size)}, {os.cpu_count()} CPUs, "
          f"{args.reps} repetitions each, medians")
    env = dict(os.environ, PYTHONHASHSEED="0")
    precompile()
    load_before = f"{os.getloadavg()[0]:.2f}"   # other work on the machine skews wall times
    results: dict[str, list[Run]] = {}
    cmds = commands(files, out)
    chosen = [k for k in cmds if not args.only or k in args.only]
    for rep in range(args.reps):
        for label in chosen:          # interleaved, so drift affects all alike
            clear(out, label)
            results.setdefault(label, []).append(measure(cmds[label], env))
    med = {k: Run(statistics.median(r.wall for r in v), int(statistics.median(r.rss for r in v)),
                  statistics.median(r.cpu for r in v)) for k, v in results.items()}
    for label, r in med.items():
        print(f"  {label:10s} wall {r.wall:6.2f} s  cpu {r.cpu:6.2f} s  peak RSS {gb(r.rss)}"
              f" ({r.rss / size:.2f}x the checkpoint)   walls: "
              + ", ".join(f"{x.wall:.2f}" for x in results[label]))
    if "weightmap" in med:
        w = med["weightmap"]
        for other in ("usual", "copy", "copy+fsync"):
            if other in med:
                o = med[other]
                print(f"  {other:10s} / weightmap: wall {o.wall / w.wall:5.2f}x, "
                      f"cpu {o.cpu / w.cpu:5.2f}x, peak RSS {o.rss / w.rss:6.2f}x")
    print(f"  load average before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    if "weightmap" in med and "usual" in med:       # the last run's outputs are still there
        print("  outputs: " + compare_outputs(out / "weightmap.safetensors",
                                              out / "usual.safetensors"))
    if args.stages:
        print(f"weightmap's port in stages (median of {args.reps}):")
        print(stages(files, out, args.reps))
    if not args.no_matching:
        print("matching a synthetic ~10,000-tensor pair (median of 3):")
        print(matching_figure())


if __name__ == "__main__":
    main()
