"""Run every reader's fuzz harness for a bounded time and measure the security catalogue.

    python fuzz/run_all.py                    # 60 s per reader, then the catalogue costs
    python fuzz/run_all.py --seconds 600 --corpus fuzz-corpus --readers torch onnx
    python fuzz/run_all.py --seconds 0        # the catalogue costs only

Fuzzing: each harness (fuzz/fuzz_<reader>.py) starts from the committed valid and hostile
fixtures; ``--corpus DIR`` keeps the grown corpus between runs. Printed per reader: executions,
executions per second, peak RSS, corpus size, and the crashes / timeouts / out-of-memory inputs
libFuzzer wrote (kept in DIR/<reader>/artifacts to be turned into catalogue entries).

Catalogue: then ``benchmarks/hostile_bench.py`` measures every case of the security catalogue
through a fresh ``python -m weightmap inspect`` (wall time, peak RSS, against the baseline of a
valid small file of each format) and prints its summary and the flagged cases.
"""
from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "benchmarks"))

import hostile_bench  # noqa: E402

READERS = ("torch", "safetensors", "keras", "onnx", "plan")   # plan: the --plan loader


# The harness is started by a small launcher, not by run_all itself: Linux carries a parent's
# peak RSS into a child it forks, and on across exec (libFuzzer's -rss_limit_mb and ru_maxrss
# would count run_all's memory).
LAUNCH_ONE = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def fuzz(reader: str, seconds: int, folder: Path) -> dict:
    corpus, artifacts = folder / reader / "corpus", folder / reader / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-S", "-c", LAUNCH_ONE,
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
        print()
        rows, base = hostile_bench.catalogue(work)
        failed |= hostile_bench.report(rows, base, per_case=False)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
