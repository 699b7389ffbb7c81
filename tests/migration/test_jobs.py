import json
import os

import numpy as np
from safetensors.numpy import load_file

from weightmap.migration import jobs as jobs_mod
from weightmap.migration.jobs import resume_state, run
from weightmap.migration.spec import load


def _jobs(root, data):
    return load(data, root).jobs


def test_resume_runs_skips_and_replaces_as_the_files_say(collection, write_state):
    root, data = collection
    job = _jobs(root, data)[0]
    assert resume_state(job).action == "run"
    assert run(job)["status"] == "ok"
    state = resume_state(job)
    assert (state.action, state.reason) == ("skip", "output up to date")
    assert state.output == str(root / "out" / "run1.safetensors") and state.coverage == 1.0
    source = root / "runs" / "run1.safetensors"
    info = source.stat()
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))    # touched only
    assert resume_state(job).action == "skip"
    assert "content is the same" in resume_state(job).reason
    data_bytes = bytearray(source.read_bytes())
    data_bytes[-1] ^= 1                                                   # same size, new bytes
    source.write_bytes(bytes(data_bytes))
    assert resume_state(job) == jobs_mod.Resume("replace", "its source changed")
    write_state(source, 99, prefix="module.backbone.")
    assert resume_state(job).reason == "its source changed size"
    other = _jobs(root, {**data, "freeze": "transferred"})[0]
    assert resume_state(other).reason == "its options or its target changed"
    (root / "out" / "run1.safetensors").unlink()
    write_state(source, 1, prefix="module.")
    assert resume_state(job).reason == "its output is missing"


def test_a_manifest_not_written_by_a_migration_is_not_replaced(collection):
    root, data = collection
    job = _jobs(root, data)[0]
    (root / "out").mkdir()
    (root / "out" / "run1.manifest.json").write_text(json.dumps({"weightmap_manifest": 1}))
    assert resume_state(job).action == "run"
    result = run(job)
    assert result["status"] == "failed" and "the output file exists" in result["error"]
    assert "\n" not in result["error"]


def test_run_ports_and_converts_and_reports_failures_as_one_line(collection):
    root, data = collection
    port, convert, missing = _jobs(root, {**data, "jobs": [
        {"source": "runs/run1.safetensors"},
        {"source": "runs/run2.safetensors", "target": None, "strip_prefix": True,
         "cast": "fp16", "out": "{stem}.pt"},
        {"source": "runs/none.safetensors"}]})
    ok = run(port)
    assert ok["status"] == "ok" and ok["coverage"] == 1.0 and ok["tensors"] == 2
    assert ok["bytes"] == (root / "out" / "run1.safetensors").stat().st_size
    got = load_file(root / "out" / "run1.safetensors")
    want = load_file(root / "runs" / "run1.safetensors")
    np.testing.assert_array_equal(got["fc.weight"], want["module.fc.weight"])
    manifest = json.loads((root / "out" / "run1.manifest.json").read_text())
    assert manifest["job"] == port.record and "sha256" in manifest["source"]
    conv = run(convert)
    assert conv["status"] == "ok" and conv["output"] == str(root / "out" / "run2.pt")
    failed = run(missing)
    assert failed["status"] == "failed" and "no such file" in failed["error"]
    assert failed["seconds"] >= 0


def test_a_worker_builds_a_target_once(collection, monkeypatch):
    root, data = collection
    monkeypatch.setattr(jobs_mod, "_TARGETS", {})
    results = [run(job) for job in _jobs(root, data)]
    assert [r["built_target"] for r in results] == [True, False, False]
    assert len(jobs_mod._TARGETS) == 1


def test_a_job_run_again_keeps_what_its_dead_worker_finished(collection):
    root, data = collection
    job = _jobs(root, data)[0]
    assert run(job)["status"] == "ok"
    again = run(job, again=True)
    assert again["status"] == "ok" and again["reason"] == "written before its worker died"
    assert again["output"] == str(root / "out" / "run1.safetensors")
    assert run(job)["status"] == "failed"            # a plain second run finds the output


def test_the_verify_figure_of_a_manifest():
    from weightmap.migration.jobs import verify_figure
    manifest = {"verify": {"passed": True, "tol": 1e-4, "outputs": [
        {"name": "logits", "max_abs": 1e-6, "rel": 2e-7, "status": "ok"},
        {"name": "aux", "max_abs": 3e-6, "rel": 5e-7, "status": "ok"},
        {"name": "x", "rel": None}], "first_divergence": None}}
    assert verify_figure(manifest) == {"passed": True, "verdict": "passed", "rel": 5e-7}
    assert verify_figure({"summary": {}}) is None
    incomplete = {"verify": {"passed": False, "verdict": "INCOMPLETE", "outputs": [
        {"name": "output", "rel": None, "status": "skipped"}]}}
    assert verify_figure(incomplete) == {"passed": False, "verdict": "INCOMPLETE", "rel": None}


def test_opaque_globals_is_a_spec_key_and_job_errors_name_spec_keys(collection):
    """A Lightning checkpoint pickling a numpy scalar and an argparse.Namespace: refused, with
    the spec key that reads it (not a Python keyword), then ported and converted with it."""
    import argparse

    import pytest
    torch = pytest.importorskip("torch")
    root, data = collection
    state = {"fc.weight": torch.randn(3, 4), "fc.bias": torch.randn(3)}
    torch.save({"state_dict": state, "callbacks": {"kth_value": np.float64(0.5)},
                "hyper_parameters": {"args": argparse.Namespace(lr=1e-3)}},
               root / "runs" / "last.ckpt")
    jobs = [{"source": "runs/last.ckpt"}, {"source": "runs/last.ckpt", "target": None,
                                            "out": "{stem}_c.safetensors"}]
    refused = [run(job) for job in _jobs(root, {**data, "jobs": jobs})]
    for result in refused:
        assert result["status"] == "failed"
        assert "pass opaque_globals: true to read only its tensors" in result["error"]
    done = [run(job) for job in _jobs(root, {**data, "jobs": jobs, "opaque_globals": True})]
    assert [r["status"] for r in done] == ["ok", "ok"]
    for result in done:
        assert {k: v.tolist() for k, v in load_file(result["output"]).items()} == \
            {k: v.numpy().tolist() for k, v in state.items()}
