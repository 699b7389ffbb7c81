import json

import pytest

from weightmap.errors import MigrationError
from weightmap.migration.summary import Summary, render, write


def _summary(tmp_path, statuses):
    jobs = [{"index": i, "source": str(tmp_path / f"s{i}.pt"), "kind": "port", "target": None,
             "output": str(tmp_path / f"s{i}.safetensors"), "manifest": None, "status": s,
             "error": "s1.pt: the file is truncated" if s == "failed" else None,
             "reason": "output up to date" if s == "skipped" else None,
             "coverage": 0.5 if s != "failed" else None, "tensors": 4, "bytes": 10,
             "seconds": 1.25 if s == "ok" else None}
            for i, s in enumerate(statuses)]
    return Summary(spec=None, out_dir=str(tmp_path), executor="local", workers=2,
                   seconds=3.0, jobs=tuple(jobs))


def test_table_lists_each_job_with_its_error_or_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = render(_summary(tmp_path, ["ok", "failed", "skipped"])).splitlines()
    assert text[0].split() == ["job", "status", "coverage", "time", "error", "/", "note"]
    assert text[1].split() == ["s0.pt", "ok", "50.0%", "1.25s"]
    assert text[2].split()[:4] == ["s1.pt", "failed", "-", "-"]
    assert text[2].endswith("s1.pt: the file is truncated")
    assert text[3].endswith("output up to date")
    assert text[4] == "3 jobs: 1 ok, 1 failed, 1 skipped in 3.00 s (local, 2 workers)"
    assert text[5] == "summary migration.json"


def test_check_and_the_written_json(tmp_path):
    bad = _summary(tmp_path, ["ok", "failed"])
    assert not bad.ok and bad.counts == {"ok": 1, "failed": 1, "skipped": 0}
    with pytest.raises(MigrationError, match=r"1 of 2 jobs failed; the first: /.*/s1.pt: "
                                             r"s1.pt: the file is truncated") as err:
        bad.check()
    assert err.value.exit_code == 12
    good = _summary(tmp_path, ["ok", "skipped"])
    assert good.check() is good
    path = write(bad)
    data = json.loads(path.read_text())
    assert data["weightmap_migration"] == 1 and data["counts"]["failed"] == 1
    assert [j["status"] for j in data["jobs"]] == ["ok", "failed"]
    assert [p.name for p in tmp_path.iterdir()] == ["migration.json"]   # no temporary left


def test_a_verify_column_when_a_job_was_verified(tmp_path, monkeypatch):
    from dataclasses import replace
    monkeypatch.chdir(tmp_path)
    summary = _summary(tmp_path, ["ok", "ok", "failed"])
    jobs = [dict(j) for j in summary.jobs]
    jobs[0]["verify"] = {"passed": True, "rel": 3.1e-7}
    jobs[1]["verify"] = {"passed": False, "rel": 0.25}
    text = render(replace(summary, jobs=tuple(jobs))).splitlines()
    assert text[0].split()[:5] == ["job", "status", "coverage", "verify", "time"]
    assert text[1].split() == ["s0.pt", "ok", "50.0%", "passed", "3.1e-07", "1.25s"]
    assert text[2].split()[3:5] == ["FAILED", "2.5e-01"]
    assert text[3].split()[3] == "-"
