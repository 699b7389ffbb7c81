"""A migration of 20 checkpoints made by the real libraries (tf-keras .h5, DataParallel .pth,
Lightning-style .ckpt, safetensors) into one torch target, plus two convert jobs; one checkpoint
is truncated and fails alone. Outputs are judged tensor by tensor against what the source files
hold (read with torch, safetensors and h5py, transposed with numpy), the second run skips, and
the Ray executor writes the same bytes (Ray is required where WEIGHTMAP_REQUIRE_RAY=1: CI)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import weightmap  # noqa: E402
from weightmap.errors import MigrationError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("wm_gen_migrate",
                                                  ROOT / "fixtures" / "gen_migrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _gen()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    files = gen.torch_collection(root / "runs")
    (root / "keras").mkdir()
    for path in gen.keras_files():
        shutil.copy(path, root / "keras" / path.name)
    whole = files["safetensors"][2].read_bytes()
    files["safetensors"][2].write_bytes(whole[: len(whole) // 2])          # truncated
    spec = {"out_dir": "ported", "target": str(gen.TORCH_MODEL), "freeze": "transferred",
            "jobs": [{"source": "keras/*.h5"},
                     {"source": "runs/dp_run*.pth"},
                     {"source": "runs/lightning_run*.ckpt"},
                     {"source": "runs/zoo_*.safetensors"},
                     {"source": "runs/lightning_run1.ckpt", "target": None,
                      "out": "{stem}_bf16.safetensors", "cast": "bf16", "strip_prefix": True},
                     {"source": "runs/dp_run2.pth", "target": None,
                      "out": "{stem}_stripped.pt", "strip_prefix": "module."}]}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root, files, whole


@pytest.fixture(scope="module")
def first(collection):
    root = collection[0]
    return weightmap.migrate(root / "spec.yaml", jobs=2)


def test_one_truncated_checkpoint_fails_alone_with_its_one_line_error(collection, first):
    assert len(first.jobs) == 22
    assert first.counts == {"ok": 21, "failed": 1, "skipped": 0}
    (bad,) = first.failed
    assert bad["source"].endswith("zoo_3.safetensors")
    assert "\n" not in bad["error"] and "zoo_3.safetensors" in bad["error"]
    assert "truncated" in bad["error"] or "ends early" in bad["error"], bad["error"]
    assert not first.ok
    with pytest.raises(MigrationError, match="1 of 22 jobs failed"):
        first.check()
    ported = collection[0] / "ported"
    assert not list(ported.glob("zoo_3.*")), "a failed job leaves no output"
    written = json.loads((ported / "migration.json").read_text())
    assert [j["status"] for j in written["jobs"]] == [j["status"] for j in first.jobs]
    assert written["jobs"][bad["index"]]["error"] == bad["error"]


def test_ported_outputs_hold_the_source_tensors(collection, first):
    from safetensors.numpy import load_file
    expected = {}
    for path in gen.keras_files():
        expected[path.stem] = gen.keras_expected(path)
    for kind in ("pth", "ckpt", "safetensors"):
        for path in collection[1][kind]:
            if path.name != "zoo_3.safetensors":
                expected[path.stem] = gen.torch_state(path)
    ports = [j for j in first.jobs if j["kind"] == "port" and j["status"] == "ok"]
    assert len(ports) == 19
    for job in ports:
        got = load_file(job["output"])
        want = expected[Path(job["source"]).stem.split(".")[0]]
        assert sorted(got) == sorted(want), job["source"]
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"{job['source']} {name}")
        manifest = json.loads(Path(job["manifest"]).read_text())
        assert manifest["summary"]["frozen"] == 12          # the spec's shared freeze policy
        assert manifest["source"]["sha256"] == _sha256(job["source"])


def test_the_convert_jobs(collection, first):
    from safetensors.torch import load_file
    jobs = {Path(j["output"]).name: j for j in first.jobs if j["kind"] == "convert"}
    bf16 = load_file(jobs["lightning_run1_bf16.safetensors"]["output"])
    saved = torch.load(collection[1]["ckpt"][0], weights_only=True)
    state = {k[len("model."):]: v for k, v in saved["state_dict"].items()}
    assert list(bf16) == list(state)                  # no optimizer state, no epoch
    for name, value in state.items():
        want = value.to(torch.bfloat16) if value.is_floating_point() else value
        assert bf16[name].dtype == want.dtype
        assert torch.equal(bf16[name].view(torch.int16) if want.is_floating_point()
                           else bf16[name], want.view(torch.int16)
                           if want.is_floating_point() else want), name
    stripped = torch.load(jobs["dp_run2_stripped.pt"]["output"], weights_only=True)
    original = torch.load(collection[1]["pth"][1], weights_only=True)
    assert list(stripped) == [k[len("module."):] for k in original]
    for name, value in original.items():
        assert torch.equal(stripped[name[len("module."):]], value)


def test_a_worker_builds_each_target_once(first):
    ports = [j for j in first.jobs if j["kind"] == "port" and j["status"] == "ok"]
    # at most once per worker and kind of source: a Keras file names its input shape, which
    # the target is traced on when it has no example_input; a state dict names none
    workers = {j["worker"] for j in ports}
    built = sum(1 for j in ports if j["built_target"])
    assert len(workers) <= 2 and len(workers) <= built <= 2 * len(workers) < len(ports)


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    return subprocess.run([sys.executable, "-m", "weightmap", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_second_run_skips_what_is_done_and_says_so(collection, first):
    root, files, whole = collection
    r = _cli("migrate", "spec.yaml", cwd=root)
    assert r.returncode == 12, r.stderr                   # the truncated file fails again
    assert r.stderr.strip().count("\n") == 0 and "1 of 22 jobs failed" in r.stderr
    lines = [line.split() for line in r.stdout.splitlines()[1:23]]
    assert [line[1] for line in lines].count("skipped") == 21
    assert all(line[1] == "failed" or line[-4:] == ["output", "up", "to", "date"]
               for line in lines)
    assert "22 jobs: 0 ok, 1 failed, 21 skipped" in r.stdout
    files["safetensors"][2].write_bytes(whole)            # mended: only that job runs
    r = _cli("migrate", "spec.yaml", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["counts"] == {"ok": 1, "failed": 0, "skipped": 21}
    r = _cli("migrate", "spec.yaml", "--json", cwd=root)
    assert json.loads(r.stdout)["counts"] == {"ok": 0, "failed": 0, "skipped": 22}


def _ray():
    """ray; skipped where it is not installed, unless WEIGHTMAP_REQUIRE_RAY=1 (CI)."""
    if os.environ.get("WEIGHTMAP_REQUIRE_RAY") == "1":
        import ray
        return ray
    return pytest.importorskip("ray")


def test_ray_executor_writes_the_same_bytes(collection, first):
    ray = _ray()
    root = collection[0]
    spec = yaml.safe_load((root / "spec.yaml").read_text())
    spec["out_dir"] = "ported_ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = weightmap.migrate(spec, base_dir=root, executor="ray")
    finally:
        ray.shutdown()
    assert summary.executor == "ray" and summary.counts["ok"] >= 21
    for job in summary.jobs:
        if job["status"] == "failed":          # the truncated file, if it was not mended yet
            assert job["source"].endswith("zoo_3.safetensors")
            continue
        theirs = Path(job["output"])
        mine = root / "ported" / theirs.name
        assert theirs.parent.name == "ported_ray"
        assert theirs.read_bytes() == mine.read_bytes(), theirs.name


def _sha256(path):
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_verify_true_checks_each_port_by_what_it_computes(collection, tmp_path):
    """``verify: true`` runs each source and its ported target on one probe (Keras files run
    themselves; state dicts through ``source_model``): agreeing ports are ok with their figure,
    one whose target has another head fails alone, with nothing written."""
    root, files, _ = collection
    other = tmp_path / "other_head.py"
    other.write_text(gen.TORCH_MODEL.read_text().replace("model = SmallVGG()",
                                                         "model = SmallVGG(classes=10)"))
    spec = {"out_dir": str(tmp_path / "verified"), "target": str(gen.TORCH_MODEL),
            "verify": True,
            "jobs": [{"source": str(gen.keras_files()[0])},
                     {"source": str(files["pth"][0]), "source_model": str(gen.TORCH_MODEL)},
                     {"source": str(files["ckpt"][0]), "source_model": str(gen.TORCH_MODEL),
                      "target": str(other), "out": "other_head"}]}
    summary = weightmap.migrate(spec, jobs=1)
    assert [j["status"] for j in summary.jobs] == ["ok", "ok", "failed"]
    for job in summary.jobs[:2]:
        assert job["verify"]["passed"] is True and job["verify"]["rel"] <= 1e-4, job
        manifest = json.loads(Path(job["manifest"]).read_text())
        assert manifest["verify"]["passed"] is True
    assert summary.jobs[2]["error"].startswith("verify FAILED")
    assert "\n" not in summary.jobs[2]["error"]
    assert not list((tmp_path / "verified").glob("other_head*"))
    again = weightmap.migrate(spec, jobs=1)
    assert [j["status"] for j in again.jobs] == ["skipped", "skipped", "failed"]
    assert again.jobs[0]["verify"] == summary.jobs[0]["verify"]
