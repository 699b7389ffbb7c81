"""Run every reader's fuzz harness for a bounded time and measure the security catalogue.

    python fuzz/run_all.py                    # 60 s per reader, then the catalogue costs
    python fuzz/run_all.py --seconds 600 --corpus fuzz-corpus --readers torch onnx
    python fuzz/run_all.py --seconds 0        # the catalogue costs only

Fuzzing: each harness (fuzz/fuzz_<reader>.py) starts from the committed valid and hostile
fixtures; ``--corpus DIR`` keeps the grown corpus between runs. Printed per reader: executions,
executions per second, peak RSS, corpus size, and the crashes / timeouts / out-of-memory inputs
libFuzzer wrote (kept in DIR/<reader>/artifacts to be turned into catalogue entries).

Catalogue: every case of fixtures/gen_hostile.py runs through a fresh ``python -m weightmap
inspect`` (as a user runs it); its wall time and peak RSS come from ``os.wait4``. The same is
measured for a valid small file of each format, the baseline of the interpreter and imports;
the figures that matter are the differences.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIXTURES = REPO / "fixtures"
READERS = ("torch", "safetensors", "keras", "onnx")
BASELINES = {"torch": "torch/cnn.pt", "safetensors": "safetensors/tiny_hf.safetensors",
             "keras": "keras/k3_convs.weights.h5", "onnx": "onnx/ops.onnx"}


LAUNCH_ONE = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def fuzz(reader: str, seconds: int, folder: Path) -> dict:
    corpus, artifacts = folder / reader / "corpus", folder / reader / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-S", "-c", LAUNCH_ONE,             # see LAUNCHER below
           sys.executable, str(HERE / f"fuzz_{reader}.py"), "--seed-corpus", str(corpus),
           str(corpus), f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
           "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
    start = time.time()
    run = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", run.stderr))
    found = sorted(p.name for p in artifacts.iterdir())
    return {"reader": reader, "seconds": round(time.time() - start),
            "execs": int(stats.get("number_of_executed_units", 0)),
            "execs_per_s": int(stats.get("average_exec_per_sec", 0)),
            "peak_rss_mb": int(stats.get("peak_rss_mb", 0)),
            "corpus": len(list(corpus.iterdir())),
            "crashes": sum(n.startswith("crash-") for n in found),
            "timeouts": sum(n.startswith("timeout-") for n in found),
            "ooms": sum(n.startswith("oom-") for n in found),
            "exit": run.returncode,
            "last": run.stderr.strip().splitlines()[-1] if run.returncode else ""}


# Children are started by a small launcher, not by run_all itself: Linux carries a parent's
# peak RSS into a child it forks, and on across exec (libFuzzer's -rss_limit_mb and ru_maxrss
# would count run_all's memory).
LAUNCHER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv, cwd = json.loads(line)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), time.perf_counter() - start,
                      usage.ru_maxrss // 1024, err.strip()]), flush=True)
"""


class Launcher:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def measure(self, path: Path, cwd: Path) -> tuple[int, float, int, str]:
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


def catalogue(folder: Path) -> tuple[list[dict], dict]:
    hostile = load_hostile()
    runtime = folder / "runtime"
    hostile.write_baits(runtime)
    hostile.build_runtime(runtime)
    cwd = folder / "cwd"
    cwd.mkdir()
    launcher = Launcher()
    measure = launcher.measure
    base = {}
    for reader, rel in BASELINES.items():
        code, secs, rss, _ = measure(FIXTURES / rel, cwd)
        base[reader] = {"seconds": secs, "rss_mb": rss, "exit": code}
    rows = []
    for case in hostile.CATALOGUE:
        if case.runtime:
            path = runtime / case.path
        else:
            src = FIXTURES / "hostile" / case.path
            dest = folder / "cases" / case.name
            shutil.copytree(src.parent, dest)          # keeps ../outside out of reach
            path = dest / src.name
        code, secs, rss, err = measure(path, cwd)
        ok = code == case.exit_code and (case.expect == "read" or re.search(case.message, err))
        rows.append({"case": case.name, "ref": case.ref, "exit": code, "seconds": secs,
                     "rss_mb": rss, "ok": bool(ok),
                     "marker": (cwd / hostile.MARKER).exists()})
    launcher.close()
    return rows, base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per reader (0: none)")
    ap.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    ap.add_argument("--corpus", type=Path, help="keep corpora and artifacts in this folder")
    ap.add_argument("--no-catalogue", action="store_true", help="skip the catalogue costs")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="weightmap-run-all-"))
    folder = args.corpus or work / "fuzz"
    failed = False
    if args.seconds > 0:
        print(f"fuzzing {args.seconds} s per reader (corpora in {folder})")
        print(f"{'reader':12} {'execs':>9} {'execs/s':>8} {'peak RSS':>9} {'corpus':>7} "
              f"{'crashes':>8} {'timeouts':>9} {'ooms':>5}")
        for reader in args.readers:
            r = fuzz(reader, args.seconds, folder)
            failed |= bool(r["exit"] or r["crashes"] or r["timeouts"] or r["ooms"])
            print(f"{reader:12} {r['execs']:>9} {r['execs_per_s']:>8} {r['peak_rss_mb']:>6} MB "
                  f"{r['corpus']:>7} {r['crashes']:>8} {r['timeouts']:>9} {r['ooms']:>5}"
                  + (f"   {r['last']}" if r["last"] else ""), flush=True)
    if not args.no_catalogue:
        rows, base = catalogue(work)
        floor = max(b["rss_mb"] for b in base.values())
        print("\nbaseline (a valid small file): " + ", ".join(
            f"{k} {v['seconds']:.2f} s / {v['rss_mb']} MB" for k, v in base.items()))
        print(f"catalogue: {len(rows)} cases, {sum(r['ok'] for r in rows)} answered as expected, "
              f"{sum(r['marker'] for r in rows)} payloads ran")
        print(f"  slowest {max(r['seconds'] for r in rows):.2f} s, largest peak RSS "
              f"{max(r['rss_mb'] for r in rows)} MB (baseline up to {floor} MB)")
        print("  slowest cases:")
        for r in sorted(rows, key=lambda r: -r["seconds"])[:6]:
            print(f"  {r['case']:45} exit {r['exit']}  {r['seconds']:.2f} s  {r['rss_mb']} MB")
        print("  largest cases:")
        for r in sorted(rows, key=lambda r: -r["rss_mb"])[:6]:
            print(f"  {r['case']:45} exit {r['exit']}  {r['seconds']:.2f} s  {r['rss_mb']} MB")
        failed |= not all(r["ok"] and not r["marker"] for r in rows)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
