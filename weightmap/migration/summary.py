"""What a migration did: per job, as data (``Summary``, ``migration.json``) and as a table."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_texts
from ..errors import MigrationError

SUMMARY_VERSION = 1
SUMMARY_NAME = "migration.json"
STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class Summary:
    """``jobs``: one dict per job, in spec order: ``source``, ``kind``, ``target``, ``output``,
    ``manifest``, ``status`` (ok | failed | skipped), ``error`` (one line, or None),
    ``reason`` (why a job was skipped or replaced), ``coverage``, ``verify`` (a verified
    port's ``{"passed", "verdict", "rel"}``, else None), ``tensors``, ``bytes``,
    ``seconds``, ``worker`` (its process id) and ``built_target`` (it built its target: the
    first job of its worker to need it)."""

    spec: str | None
    out_dir: str
    executor: str
    workers: int
    seconds: float
    jobs: tuple[Mapping[str, Any], ...]

    @property
    def path(self) -> str:
        return str(Path(self.out_dir) / SUMMARY_NAME)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(1 for j in self.jobs if j["status"] == s) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """Every job ``ok`` or ``skipped``."""
        return self.counts["failed"] == 0

    @property
    def failed(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(j for j in self.jobs if j["status"] == "failed")

    def to_dict(self) -> dict[str, Any]:
        return {"weightmap_migration": SUMMARY_VERSION, "spec": self.spec,
                "out_dir": self.out_dir, "executor": self.executor, "workers": self.workers,
                "seconds": round(self.seconds, 3), "counts": self.counts,
                "jobs": [dict(j) for j in self.jobs]}

    def check(self) -> "Summary":
        """Itself when every job is ok or skipped, else MigrationError (exit 12) naming the
        first failure and how many there are."""
        if self.ok:
            return self
        first = self.failed[0]
        error = first["error"] if first["source"] in first["error"] else \
            f"{first['source']}: {first['error']}"
        raise MigrationError(f"{len(self.failed)} of {len(self.jobs)} jobs failed; the first: "
                             f"{error}", hint=f"each job's error is in {self.path}")


def write(summary: Summary) -> Path:
    """``<out_dir>/migration.json``, written atomically (replacing the previous run's)."""
    path = Path(summary.path)
    write_texts({path: json.dumps(summary.to_dict(), indent=1) + "\n"}, force=True)
    return path


def _shown(path: str | None) -> str:
    if not path:
        return "-"
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _verify(figure: Mapping[str, Any] | None) -> str:
    if not figure:
        return "-"
    rel = figure.get("rel")
    return (figure.get("verdict") or ("passed" if figure.get("passed") else "FAILED")) + \
        (f" {rel:.1e}" if isinstance(rel, (int, float)) else "")


def render(summary: Summary) -> str:
    """The table: job, status, coverage, the verify figure (when a job was verified: passed
    or FAILED, and the largest relative difference of the outputs), time, and the error (or
    why a job was skipped)."""
    verified = any(j.get("verify") for j in summary.jobs)
    rows = [("job", "status", "coverage") + (("verify",) if verified else ()) +
            ("time", "error / note")]
    for j in summary.jobs:
        coverage = f"{100 * j['coverage']:.1f}%" if j.get("coverage") is not None else "-"
        seconds = f"{j['seconds']:.2f}s" if j.get("seconds") is not None else "-"
        rows.append((_shown(j["source"]), j["status"], coverage) +
                    ((_verify(j.get("verify")),) if verified else ()) +
                    (seconds, j.get("error") or j.get("reason") or ""))
    cells = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(cells)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:cells], widths)) + "  " + r[cells]
             for r in rows]
    c = summary.counts
    lines.append(f"{len(summary.jobs)} jobs: {c['ok']} ok, {c['failed']} failed, "
                 f"{c['skipped']} skipped in {summary.seconds:.2f} s "
                 f"({summary.executor}, {summary.workers} worker"
                 f"{'s' if summary.workers != 1 else ''})")
    lines.append(f"summary {_shown(summary.path)}")
    return "\n".join(line.rstrip() for line in lines)
