import pytest
import yaml

from weightmap.errors import UsageError
from weightmap.migration import spec as spec_mod


def _load(data, base):
    return spec_mod.load(data, base)


def test_yaml_and_toml_specs_expand_to_the_same_jobs(collection):
    root, data = collection
    (root / "spec.yaml").write_text(yaml.safe_dump(data))
    (root / "spec.toml").write_text('out_dir = "out"\ntarget = "template.safetensors"\n'
                                    '[[jobs]]\nsource = "runs/*.safetensors"\n')
    a, b = spec_mod.load(root / "spec.yaml"), spec_mod.load(root / "spec.toml")
    assert a.jobs == b.jobs and a.out_dir == str(root / "out")
    # a glob is one job per file, in natural order; paths are absolute, from the spec's folder
    assert [j.source for j in a.jobs] == [str(root / "runs" / f"run{i}.safetensors")
                                          for i in (1, 2, 10)]
    job = a.jobs[0]
    assert (job.kind, job.target, job.out) == ("port", str(root / "template.safetensors"), None)
    assert job.stem == str(root / "out" / "run1")
    assert job.manifest == str(root / "out" / "run1.manifest.json")


def test_unknown_keys_name_the_valid_ones(collection):
    root, data = collection
    with pytest.raises(UsageError, match=r"unknown key 'taget' in the migration spec "
                                         r"\(valid keys: out_dir, target, jobs, rules, "):
        _load({**data, "taget": "x"}, root)
    bad = {**data, "jobs": [{"source": "a.pt", "cats": "bf16"}]}
    with pytest.raises(UsageError, match=r"unknown key 'jobs\[0\].cats' .*valid keys of "
                                         r"jobs\[0\]: source, target, out, rules"):
        _load(bad, root)
    with pytest.raises(UsageError, match=r"key 'jobs\[0\].cast': 'fp8' is not one of"):
        _load({**data, "jobs": [{"source": "a.pt", "target": None, "cast": "fp8"}]}, root)
    with pytest.raises(UsageError, match="'jobs' is a required property"):
        _load({"out_dir": "x"}, root)


def test_options_go_to_the_jobs_that_take_them(collection):
    root, data = collection
    spec = _load({**data, "freeze": "transferred", "cast": "bf16",
                  "jobs": [{"source": "runs/run1.safetensors"},
                           {"source": "runs/run2.safetensors", "target": False,
                            "strip_prefix": True}]}, root)
    port, convert = spec.jobs
    assert port.options["freeze"] == "transferred" and "cast" not in port.options
    assert convert.kind == "convert" and convert.options["cast"] == "bf16"
    assert "freeze" not in convert.options
    with pytest.raises(UsageError, match=r"jobs\[0\].cast: a port job takes no 'cast'"):
        _load({**data, "jobs": [{"source": "a.pt", "cast": "bf16"}]}, root)
    with pytest.raises(UsageError, match="'cast': no job of this spec takes it .*convert jobs"):
        _load({**data, "cast": "bf16"}, root)


def test_globs_that_match_nothing_and_outputs_that_collide(collection):
    root, data = collection
    with pytest.raises(UsageError, match=r"jobs\[0\].source: 'none/\*.pt' matches no file"):
        _load({**data, "jobs": [{"source": "none/*.pt"}]}, root)
    (root / "other").mkdir()
    (root / "other" / "run1.safetensors").write_bytes(b"x")
    twice = {**data, "jobs": [{"source": "runs/run1.safetensors"},
                              {"source": "other/run1.safetensors"}]}
    with pytest.raises(UsageError, match=r"would both write .*run1\.\* .*out: '\{parent\}_"):
        _load(twice, root)
    named = _load({**data, "jobs": [{"source": "*/run1.safetensors",
                                     "out": "{parent}_{stem}"},
                                    {"source": "runs/run2.safetensors", "out": "x.pt"}]}, root)
    assert [j.stem for j in named.jobs] == [str(root / "out" / "other_run1"),
                                            str(root / "out" / "runs_run1"),
                                            str(root / "out" / "x")]
    assert named.jobs[2].out == str(root / "out" / "x.pt")


def test_options_the_port_cannot_take_yet_are_refused(collection, monkeypatch):
    root, data = collection
    job = {"source": "runs/run1.safetensors", "min_coverage": 0.9}
    assert _load({**data, "jobs": [job]}, root).jobs[0].options["min_coverage"] == 0.9
    monkeypatch.setattr(spec_mod, "_port_takes", lambda option: option != "min_coverage")
    with pytest.raises(UsageError, match=r"key jobs\[0\].min_coverage: this weightmap has no "
                                         r"coverage checks"):
        _load({**data, "jobs": [job]}, root)


def test_the_options_digest_follows_the_rules_and_target_files(collection):
    root, data = collection
    rules = root / "rules.yaml"
    rules.write_text("rename: []\n")
    first = _load({**data, "rules": "rules.yaml"}, root).jobs[0].record
    assert first == _load({**data, "rules": "rules.yaml"}, root).jobs[0].record
    rules.write_text("rename:\n  - glob: 'a*'\n    replace: 'b*'\n")
    assert first["sha256"] != _load({**data, "rules": "rules.yaml"}, root).jobs[0].record["sha256"]
    assert first["options"]["target_sha256"] is not None


def test_the_specs_in_the_docs_are_valid():
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    blocks = [b for doc in ("README.md", "docs/migrate.md")
              for b in re.findall(r"```yaml\n(.*?)```", (root / doc).read_text(), re.S)
              if "jobs:" in b]
    assert len(blocks) == 2
    for block in blocks:
        spec_mod.validate(yaml.safe_load(block), "doc")


def test_policies_and_name_templates_are_checked_before_any_job(collection):
    root, data = collection
    with pytest.raises(UsageError, match="key freeze: unknown freeze policy 'all'"):
        _load({**data, "freeze": "all"}, root)
    with pytest.raises(UsageError, match=r"key jobs\[0\].out: '\{name\}' is not a name template"):
        _load({**data, "jobs": [{"source": "runs/run1.safetensors", "out": "{name}"}]}, root)


def test_a_glob_leaves_out_the_outputs_folder(collection):
    root, data = collection
    (root / "runs" / "ported").mkdir()
    (root / "runs" / "ported" / "run1.safetensors").write_bytes(b"an output")
    spec = {**data, "out_dir": "runs/ported", "jobs": [{"source": "runs/**/*.safetensors"}]}
    assert [j.source for j in _load(spec, root).jobs] == [
        str(root / "runs" / f"run{i}.safetensors") for i in (1, 2, 10)]


def test_a_source_model_is_a_file_whose_digest_joins_the_options(collection):
    root, data = collection
    (root / "net.py").write_text("model = None\n")
    job = _load({**data, "verify": True, "source_model": "net.py:model"}, root).jobs[0]
    assert job.options["source_model"] == f"{root / 'net.py'}:model"
    assert len(job.options["source_model_sha256"]) == 64 and job.options["verify"] is True


def test_verification_options_go_to_the_jobs_that_verify(collection):
    """``verify_tol`` serves verification only: shared, it goes to the jobs that verify; a job
    (or a whole spec) that gives it and verifies nothing is refused before any job runs
    (before: accepted and ignored). ``source_model`` describes a weights-only source for the
    plan too: every port job takes it."""
    root, data = collection
    (root / "net.py").write_text("model = None\n")
    spec = _load({**data, "verify": True, "source_model": "net.py", "verify_tol": 1e-3,
                  "jobs": [{"source": "runs/run1.safetensors"},
                           {"source": "runs/run2.safetensors", "verify": False}]}, root)
    verified, plain = spec.jobs
    assert verified.options["source_model"].endswith("net.py") and \
        verified.options["verify_tol"] == 1e-3
    assert "verify_tol" not in plain.options and plain.options["source_model"].endswith("net.py")
    for key, value in (("verify_tol", 1e-3),):
        with pytest.raises(UsageError, match=rf"key jobs\[0\].{key}: it serves verification, "
                                             r"and this job does not verify"):
            _load({**data, "jobs": [{"source": "runs/run1.safetensors", key: value}]}, root)
        with pytest.raises(UsageError, match=rf"key {key!r}: no job of this spec takes it "
                                             r".*jobs that verify"):
            _load({**data, key: value, "verify": False}, root)
