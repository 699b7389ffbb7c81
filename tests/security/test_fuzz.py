"""A bounded atheris run of every reader's harness (fuzz/fuzz_<reader>.py), seeded with the
committed valid and hostile fixtures. Skipped when atheris is not installed
(``pip install weightmap[fuzz]``).

The default budget is short (``WEIGHTMAP_FUZZ_SECONDS``, 1 s per reader after the seeds, the
four harnesses side by side) so that the suite stays fast; CI runs
``WEIGHTMAP_FUZZ_SECONDS=10 pytest -m fuzz tests/security``, and fuzz/run_all.py runs longer and
reports the figures in docs/security.md.
A crash is any exception other than weightmap's own, a signal, a hang (-timeout) or an
out-of-memory (-rss_limit_mb); libFuzzer then exits non-zero and writes the input.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz
pytest.importorskip("atheris")

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
READERS = ("torch", "safetensors", "keras", "onnx", "plan")   # plan: the --plan loader
SECONDS = int(os.environ.get("WEIGHTMAP_FUZZ_SECONDS", "1"))


# libFuzzer's -rss_limit_mb reads the peak RSS, which Linux carries from a parent into a child
# it forks and on across exec: started straight from a large pytest process, a harness would
# "use" gigabytes before running anything. A small launcher in between starts it afresh.
LAUNCH = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def fuzz(reader: str, folder: Path) -> tuple[subprocess.CompletedProcess, Path]:
    corpus, artifacts = folder / "corpus", folder / "artifacts"
    artifacts.mkdir(parents=True)
    cmd = [sys.executable, "-S", "-c", LAUNCH,
           sys.executable, str(FUZZ / f"fuzz_{reader}.py"), "--seed-corpus", str(corpus),
           str(corpus), f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
           "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
    run = subprocess.run(cmd, cwd=folder, capture_output=True, text=True,
                         timeout=SECONDS + 300)
    return run, artifacts


def test_every_reader_survives_a_bounded_fuzz_run(tmp_path):
    with ThreadPoolExecutor(len(READERS)) as pool:
        results = dict(zip(READERS, pool.map(lambda r: fuzz(r, tmp_path / r), READERS)))
    for reader, (run, artifacts) in results.items():
        tail = "\n".join(run.stderr.splitlines()[-40:])
        assert run.returncode == 0, f"{reader}: libFuzzer found something\n{tail}"
        assert list(artifacts.iterdir()) == [], f"{reader}: {list(artifacts.iterdir())}"
        assert "stat::number_of_executed_units" in run.stderr, tail
        executed = int(run.stderr.split("stat::number_of_executed_units:")[1].split()[0])
        assert executed > 0, tail
