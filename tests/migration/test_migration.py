"""weightmap.migrate and ``weightmap migrate``: resume, force, summaries, refusals."""
import json
import sys

import pytest
import yaml

import weightmap
from weightmap.cli import main
from weightmap.errors import UsageError


def test_migrate_then_resume_then_force(collection):
    root, data = collection
    first = weightmap.migrate(data, base_dir=root, jobs=2)
    assert first.counts == {"ok": 3, "failed": 0, "skipped": 0} and first.workers == 2
    assert json.loads((root / "out" / "migration.json").read_text())["counts"]["ok"] == 3
    again = weightmap.migrate(data, base_dir=root)
    assert again.counts["skipped"] == 3 and again.workers == 0
    assert all(j["reason"] == "output up to date" for j in again.jobs)
    assert again.jobs[0]["output"] == str(root / "out" / "run1.safetensors")
    forced = weightmap.migrate(data, base_dir=root, jobs=1, force=True)
    assert forced.counts["ok"] == 3
    no_resume = weightmap.migrate(data, base_dir=root, jobs=1, resume=False)
    assert no_resume.counts["failed"] == 3
    assert "the output file exists" in no_resume.jobs[0]["error"]


def test_a_changed_option_runs_the_jobs_again(collection):
    root, data = collection
    weightmap.migrate(data, base_dir=root, jobs=1)
    changed = weightmap.migrate({**data, "freeze": "transferred"}, base_dir=root, jobs=1)
    assert changed.counts["ok"] == 3
    assert changed.jobs[0]["reason"] == "ran again: its options or its target changed"
    manifest = json.loads((root / "out" / "run1.manifest.json").read_text())
    assert manifest["summary"]["frozen"] == 2


def test_refusals_before_anything_runs(collection, monkeypatch):
    root, data = collection
    with pytest.raises(UsageError, match="unknown executor 'dask'"):
        weightmap.migrate(data, base_dir=root, executor="dask")
    with pytest.raises(UsageError, match="jobs=0"):
        weightmap.migrate(data, base_dir=root, jobs=0)
    monkeypatch.setitem(sys.modules, "ray", None)
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    assert main(["migrate", str(root / "spec.yaml"), "--executor", "ray"]) == 5
    assert not (root / "out").exists()


def test_the_command_exits_12_when_a_job_failed(collection, capsys):
    root, data = collection
    data["jobs"].append({"source": "runs/missing.safetensors"})
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    assert main(["migrate", str(root / "spec.yaml"), "--jobs", "1", "--quiet"]) == 12
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("weightmap: error: 1 of 4 jobs failed; the first: ")
    assert "no such file" in captured.err


def test_progress_over_jobs(collection, capsys):
    root, data = collection
    weightmap.migrate(data, base_dir=root, jobs=1, progress=True)
    err = capsys.readouterr().err
    assert "migrating: 3/3 jobs, " in err and err.endswith("\r")      # drawn, then erased


def test_an_interrupted_migration_loses_only_the_job_in_flight(collection):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path
    root, data = collection
    started = root / "slow_started"
    (root / "slow.py").write_text(
        "import pathlib, time\nimport numpy as np\n"
        f"pathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n"
        "model = {'fc.weight': np.zeros((3, 4), np.float32), "
        "'fc.bias': np.zeros(3, np.float32)}\n")
    data["jobs"] = [{"source": "runs/run1.safetensors"},
                    {"source": "runs/run2.safetensors", "target": "slow.py"},
                    {"source": "runs/run10.safetensors"}]
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    roots = [str(Path(weightmap.__file__).parents[1]), str(Path(weightmap.__file__).parents[1]
                                                           / "adapters")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(roots)}
    proc = subprocess.Popen([sys.executable, "-m", "weightmap", "migrate", "spec.yaml",
                             "--jobs", "1"], cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)                      # Ctrl-C on a terminal
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().endswith("interrupted by SIGINT")
    summary = json.loads((root / "out" / "migration.json").read_text())
    assert [j["status"] for j in summary["jobs"]] == ["ok", "failed", "failed"]
    assert summary["jobs"][1]["error"] == "interrupted before it finished"
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "migration.json", "run1.manifest.json", "run1.safetensors"]
    (root / "slow.py").write_text((root / "slow.py").read_text().replace("time.sleep(60)", ""))
    again = weightmap.migrate(root / "spec.yaml", jobs=1)
    assert [j["status"] for j in again.jobs] == ["skipped", "ok", "ok"]


def test_min_coverage_and_strict_go_to_each_port(collection):
    root, data = collection
    from safetensors.numpy import save_file
    import numpy as np
    save_file({"fc.weight": np.zeros((3, 4), np.float32), "fc.bias": np.zeros(3, np.float32),
               "head.weight": np.zeros((2, 3), np.float32)}, str(root / "bigger.safetensors"))
    summary = weightmap.migrate({**data, "target": "bigger.safetensors", "min_coverage": 0.9},
                                base_dir=root, jobs=1)
    assert summary.counts["failed"] == 3
    assert summary.jobs[0]["error"].startswith("71.43% of the target's elements carried over, "
                                               "below min_coverage: 0.9; left new")
    strict = weightmap.migrate({**data, "out_dir": "strict", "target": "bigger.safetensors",
                                "strict": True}, base_dir=root, jobs=1)
    assert strict.jobs[0]["error"].startswith("strict: 1 target tensor(s) neither carried")
    assert not (root / "out" / "run1.safetensors").exists()
    with pytest.raises(UsageError, match=r"migrate\(\) got an unknown keyword 'job'"):
        weightmap.migrate(data, base_dir=root, job=2)
