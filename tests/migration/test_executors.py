import sys

import pytest

from weightmap.errors import MissingDependencyError
from weightmap.migration import executors
from weightmap.migration.spec import load


def _todo(root, data):
    return [(job, False) for job in load(data, root).jobs]


def test_local_workers_run_every_job(collection):
    root, data = collection
    (root / "out").mkdir()
    results = {}
    executors.run_local(_todo(root, data), 2, lambda job, r: results.update({job.index: r}))
    assert sorted(results) == [0, 1, 2]
    assert all(r["status"] == "ok" for r in results.values())
    workers = {r["worker"] for r in results.values()}
    assert 1 <= len(workers) <= 2
    assert sum(r["built_target"] for r in results.values()) == len(workers)


def test_a_job_that_kills_its_worker_fails_alone(collection):
    root, data = collection
    (root / "killer.py").write_text("import os\nos._exit(3)\n")
    spec = {**data, "jobs": [{"source": "runs/run1.safetensors"},
                             {"source": "runs/run2.safetensors", "target": "killer.py",
                              "out": "killed"},
                             {"source": "runs/*.safetensors", "out": "{stem}_again"}]}
    (root / "out").mkdir()
    results = {}
    executors.run_local(_todo(root, spec), 2, lambda job, r: results.update({job.index: r}))
    assert [results[i]["status"] for i in range(5)] == ["ok", "failed", "ok", "ok", "ok"]
    assert "the worker process running this job died" in results[1]["error"]


def test_default_workers_are_bounded_by_cores_memory_and_jobs(collection, monkeypatch):
    root, data = collection
    todo = _todo(root, data)
    monkeypatch.setattr(executors, "available_memory", lambda: 64 << 30)
    assert executors.default_workers(todo) == min(3, len(executors.os.sched_getaffinity(0)))
    monkeypatch.setattr(executors, "available_memory", lambda: 1 << 30)
    assert executors.default_workers(todo) == 1
    assert executors.default_workers(todo[:1]) == 1


def test_without_ray_the_executor_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'weightmap\[ray\]'") as err:
        executors.ray_module()
    assert err.value.exit_code == 5
