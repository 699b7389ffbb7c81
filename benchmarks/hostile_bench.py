"""Wall time and peak RSS of every security-catalogue case, each a fresh ``weightmap inspect``.

Run: ``python benchmarks/hostile_bench.py [--reps 3] [--cases NAME ...] [--json]``.

Issue 6 asks every hostile or broken input to end "within a second and a few tens of MB". Tests
never time anything, so this script measures it: each case of ``fixtures/hostile_catalogue.py``
(the committed files of ``fixtures/hostile/`` and the cases built at run time: symlinks, hard
links, FIFOs, the opcode bomb, the 72 MB million-entry header) runs as its own
``python -m weightmap inspect CASE`` process, in an empty working directory, as a user runs it.
Wall time is measured around the process; peak RSS comes from GNU ``time`` (``/usr/bin/time``)
when it is installed, else from ``os.wait4``, both for a child started by a small launcher
(Linux carries a parent's peak RSS into the children it forks, across exec).

The baseline is the same command on a valid small file of each format (the interpreter, its
imports and a read). A case is flagged when it takes more than 1 s, or peaks above the largest
baseline + 50 MB, or does not answer as the catalogue says (exit code and message), or leaves
the payload's marker file. Exit status 1 if any case is flagged. Not a test: the figures depend
on the machine; ``fuzz/run_all.py`` prints the same table after fuzzing.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
TIME = "/usr/bin/time"
BASELINES = {"torch": "torch/cnn.pt", "safetensors": "safetensors/tiny_hf.safetensors",
             "keras": "keras/k3_convs.weights.h5", "onnx": "onnx/ops.onnx"}
MAX_SECONDS, MAX_EXTRA_MB = 1.0, 50

# The launcher: a small process that starts each command and reports exit code, wall seconds,
# peak RSS (MB) and stderr. With GNU time, time's own report gives the RSS (its "-o" file), so
# the command's stderr stays the command's.
LAUNCHER = r"""
import json, os, subprocess, sys, tempfile, time
TIME = sys.argv[1]
for line in sys.stdin:
    argv, cwd = json.loads(line)
    report = None
    if os.path.exists(TIME):
        fd, report = tempfile.mkstemp(suffix=".time"); os.close(fd)
        argv = [TIME, "-o", report, "-f", "%M", *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    rss_kb = usage.ru_maxrss
    if report:
        with open(report) as fh:
            lines = fh.read().split()
        os.remove(report)
        rss_kb = int(lines[-1]) if lines and lines[-1].isdigit() else rss_kb
        err = "\n".join(l for l in err.splitlines() if not l.startswith("Command "))
    print(json.dumps([os.waitstatus_to_exitcode(status), seconds, rss_kb // 1024, err.strip()]),
          flush=True)
"""


class Launcher:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, TIME], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def inspect(self, path: Path, cwd: Path) -> tuple[int, float, int, str]:
        """(exit code, wall seconds, peak RSS in MB, stderr) of a fresh ``weightmap inspect``."""
        argv = [sys.executable, "-m", "weightmap", "inspect", str(path)]
        self.proc.stdin.write(json.dumps([argv, str(cwd)]) + "\n")
        self.proc.stdin.flush()
        code, seconds, rss, err = json.loads(self.proc.stdout.readline())
        return code, seconds, rss, err

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def load_hostile():
    spec = importlib.util.spec_from_file_location("gen_hostile", FIXTURES / "gen_hostile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_runtime(folder: Path) -> None:
    """Baits and runtime cases, in a child process (h5py and onnx stay out of this one)."""
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location('g', sys.argv[1]); "
            "g = u.module_from_spec(s); s.loader.exec_module(g); from pathlib import Path; "
            "r = Path(sys.argv[2]); g.write_baits(r); g.build_runtime(r)")
    subprocess.run([sys.executable, "-c", code, str(FIXTURES / "gen_hostile.py"), str(folder)],
                   check=True)


def case_path(case, folder: Path) -> Path:
    """Where a case is read from: runtime cases in place; a committed case copied with its
    folder under ``folder/cases`` (so that ``../outside`` is out of reach)."""
    if case.runtime:
        return folder / "runtime" / case.path
    src = FIXTURES / "hostile" / case.path
    dest = folder / "cases" / case.name
    if not dest.exists():
        shutil.copytree(src.parent, dest)
    return dest / src.name


def catalogue(folder: Path, reps: int = 1, names: list[str] | None = None
              ) -> tuple[list[dict], dict]:
    """Per case: exit code, answered as expected, marker left, median wall seconds and peak RSS
    over ``reps`` runs; and the baselines per reader."""
    hostile = load_hostile()
    build_runtime(folder / "runtime")
    cwd = folder / "cwd"
    cwd.mkdir(exist_ok=True)
    launcher = Launcher()
    try:
        base = {}
        for reader, rel in BASELINES.items():
            runs = [launcher.inspect(FIXTURES / rel, cwd) for _ in range(reps)]
            base[reader] = {"seconds": statistics.median(r[1] for r in runs),
                            "rss_mb": max(r[2] for r in runs), "exit": runs[0][0]}
        rows = []
        for case in hostile.CATALOGUE:
            if names and not any(n in case.name for n in names):
                continue
            path = case_path(case, folder)
            runs = [launcher.inspect(path, cwd) for _ in range(reps)]
            code, _, _, err = runs[0]
            ok = code == case.exit_code and (case.expect == "read" or
                                              bool(re.search(case.message, err)))
            rows.append({"case": case.name, "ref": case.ref, "exit": code, "ok": ok,
                         "marker": (cwd / hostile.MARKER).exists(),
                         "seconds": statistics.median(r[1] for r in runs),
                         "rss_mb": max(r[2] for r in runs), "stderr": err})
    finally:
        launcher.close()
    return rows, base


def flags(row: dict, floor_mb: int) -> list[str]:
    out = []
    if row["seconds"] > MAX_SECONDS:
        out.append(f"over {MAX_SECONDS:g} s")
    if row["rss_mb"] > floor_mb + MAX_EXTRA_MB:
        out.append(f"over {floor_mb} + {MAX_EXTRA_MB} MB")
    if not row["ok"]:
        out.append("unexpected answer")
    if row["marker"]:
        out.append("PAYLOAD RAN")
    return out


def report(rows: list[dict], base: dict, *, per_case: bool = True) -> bool:
    """Print the table and the summary; True if any case is flagged."""
    floor = max(b["rss_mb"] for b in base.values())
    print("baseline (a valid small file): " + ", ".join(
        f"{k} {v['seconds']:.2f} s / {v['rss_mb']} MB" for k, v in base.items()))
    flagged = [(r, flags(r, floor)) for r in rows if flags(r, floor)]
    if per_case:
        print(f"\n{'case':48} {'exit':>4} {'wall':>7} {'peak RSS':>9}  flags")
        for r in rows:
            print(f"{r['case']:48} {r['exit']:>4} {r['seconds']:>6.2f}s {r['rss_mb']:>6} MB  "
                  + ", ".join(flags(r, floor)))
    slow = max(rows, key=lambda r: r["seconds"])
    big = max(rows, key=lambda r: r["rss_mb"])
    print(f"\ncatalogue: {len(rows)} cases, {sum(r['ok'] for r in rows)} answered as expected, "
          f"{sum(r['marker'] for r in rows)} payloads ran")
    print(f"  max wall {slow['seconds']:.2f} s ({slow['case']}), max peak RSS {big['rss_mb']} MB "
          f"({big['case']}); limits {MAX_SECONDS:g} s and {floor} + {MAX_EXTRA_MB} MB "
          f"(RSS from {'GNU time' if os.path.exists(TIME) else 'os.wait4'})")
    print(f"  flagged: {len(flagged)}" + "".join(
        f"\n    {r['case']}: {', '.join(f)}  [{r['stderr'][:160]}]" for r, f in flagged))
    return bool(flagged)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1, help="runs per case (median wall, max RSS)")
    ap.add_argument("--cases", nargs="+", help="only cases whose name contains one of these")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="weightmap-hostile-bench-"))
    try:
        rows, base = catalogue(folder, args.reps, args.cases)
        if args.json:
            print(json.dumps({"baseline": base, "cases": rows}, indent=1))
            return 1 if any(flags(r, max(b["rss_mb"] for b in base.values())) for r in rows) \
                else 0
        return 1 if report(rows, base) else 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
