"""Migrations (``weightmap migrate SPEC``): many ports and converts from one spec.

``spec`` validates and expands the spec into jobs, ``jobs`` decides which still have to run
(resume) and runs one, ``executors`` runs them on local worker processes or Ray, ``summary``
says what happened (the table, ``<out_dir>/migration.json``). See docs/migrate.md.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from ..emit import progress as progress_mod
from ..errors import UsageError, WeightmapError
from ..options import check_flags, check_keywords
from . import executors, spec as spec_mod
from .jobs import make_folder, resume_state
from .spec import Job, Spec
from .summary import Summary, render, write

__all__ = ["migrate", "Summary", "render"]


def migrate(spec: Any, *, jobs: int | None = None, executor: str = "local",
            ray_address: str | None = None, resume: bool = True, force: bool = False,
            progress: bool | None = None, base_dir: Any = None, **options: Any) -> Summary:
    """Run every job of ``spec`` (a YAML/TOML file, or the same as a dict whose relative paths
    are taken from ``base_dir``) and return the summary, also written to
    ``<out_dir>/migration.json``. One job's failure does not stop the others:
    ``summary.ok`` says whether every job is ok or skipped, ``summary.check()`` raises
    ``MigrationError`` (exit 12) when not.

    ``resume`` skips the jobs whose outputs are up to date (docs/migrate.md); ``force`` runs
    every job, replacing existing outputs. ``jobs``: how many run at a time (default: one per
    core, fewer when memory is short). ``executor``: ``"local"`` (worker processes) or
    ``"ray"`` (Ray tasks on the cluster at ``ray_address``, else ``RAY_ADDRESS``, else a local
    one). ``progress``: None shows it when stderr is a terminal, False never, True always.
    """
    started = time.perf_counter()
    check_keywords(migrate, options)
    check_flags(migrate, resume=resume, force=force, progress=progress)
    if executor not in executors.EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}",
                         hint=f"use {' or '.join(executors.EXECUTORS)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"jobs={jobs!r}: the number of jobs at a time is a whole number >= 1")
    if executor == "ray":
        executors.ray_module()                 # missing: say what to install, before anything
    the_spec = spec_mod.load(spec, base_dir)
    make_folder(Path(the_spec.out_dir))
    results: dict[int, dict[str, Any]] = {}
    todo: list[tuple[Job, bool]] = []
    for job in the_spec.jobs:
        state = resume_state(job) if resume and not force else None
        if state is not None and state.action == "skip":
            results[job.index] = {"status": "skipped", "reason": state.reason,
                                  "output": state.output, "manifest": job.manifest,
                                  "coverage": state.coverage, "verify": state.verify}
        else:
            replace = force or (state is not None and state.action == "replace")
            todo.append((job, replace))
            if replace and state is not None:
                results[job.index] = {"reason": f"ran again: {state.reason}"}
    if not todo:
        workers = 0
    elif executor == "ray":
        workers = jobs or len(todo)          # at most this many tasks at a time
    else:
        workers = jobs or executors.default_workers(todo)
    bar = _progress(the_spec, todo, progress)

    def done(job: Job, result: dict[str, Any]) -> None:
        results[job.index] = {**results.get(job.index, {}), **result}
        if bar is not None:
            bar.advance(executors.source_size(job.source),
                        failed=int(result["status"] == "failed"))

    try:
        if todo and executor == "ray":
            executors.run_ray(todo, ray_address, done, workers)
        elif todo:
            executors.run_local(todo, workers, done)
    except BaseException:      # interrupted: the summary of what was done, then stop
        with contextlib.suppress(WeightmapError, OSError):
            write(_summary(the_spec, executor, workers, started, results, interrupted=True))
        raise
    finally:
        if bar is not None:
            bar.close()
    summary = _summary(the_spec, executor, workers, started, results)
    write(summary)
    return summary


def _summary(the_spec: Spec, executor: str, workers: int, started: float,
             results: dict[int, dict[str, Any]], interrupted: bool = False) -> Summary:
    rows = []
    for job in the_spec.jobs:
        got = results.get(job.index, {})
        if "status" not in got:
            got = {**got, "status": "failed", "error": "interrupted before it finished"
                   if interrupted else "never ran"}
        rows.append({"index": job.index, "source": job.source, "kind": job.kind,
                     "target": job.target, "output": got.get("output", job.out),
                     "manifest": got.get("manifest", job.manifest), "status": got["status"],
                     "error": got.get("error"), "reason": got.get("reason"),
                     "coverage": got.get("coverage"), "verify": got.get("verify"),
                     "tensors": got.get("tensors"),
                     "bytes": got.get("bytes"), "seconds": got.get("seconds"),
                     "worker": got.get("worker"), "built_target": got.get("built_target")})
    return Summary(spec=the_spec.path, out_dir=the_spec.out_dir, executor=executor,
                   workers=workers, seconds=time.perf_counter() - started, jobs=tuple(rows))


def _progress(the_spec: Spec, todo: list[tuple[Job, bool]], show: bool | None):
    if show is False or not todo:
        return None
    total = sum(executors.source_size(job.source) for job, _ in todo)
    if show:
        return progress_mod.Progress(len(todo), total, label="migrating", unit="jobs")
    return progress_mod.start(len(todo), total, label="migrating", unit="jobs")
