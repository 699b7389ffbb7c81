"""Where a migration's jobs run: local worker processes, or Ray tasks.

**local** — ``concurrent.futures.ProcessPoolExecutor`` over the ``forkserver`` start method
(``spawn`` where there is none): a worker is a fresh interpreter, never a fork of a process that
has torch or TensorFlow loaded. Each worker keeps the targets it built (``jobs.target_of``), so a
target is built once per worker, not once per job. A worker that dies (killed for memory, a
crash in native code) breaks the pool: the jobs it left unfinished run again in order on one
fresh worker, so that only the job that kills its worker fails.

**ray** — each job is a Ray task (one CPU) on the cluster ``ray.init`` connects to (an
address, ``RAY_ADDRESS``, or a local one started for the run); Ray workers keep the targets
they built the same way. Outputs go where the spec says: storage every node sees.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import MissingDependencyError, UsageError
from ..spelling import option
from .jobs import run
from .spec import Job

Done = Callable[[Job, dict[str, Any]], None]
Todo = Sequence[tuple[Job, bool]]          # (job, may replace its earlier output)

EXECUTORS = ("local", "ray")
# memory one worker may need besides its source: an interpreter with torch or TensorFlow
# loaded, and a target model built in full (measured: docs/migrate.md)
WORKER_BASE_BYTES = 1 << 30
STOP_SECONDS = 5      # a stopped job's time to clean up before its worker exits anyway


def default_workers(todo: Todo) -> int:
    """One worker per core, fewer when the memory available would not hold that many (each
    worker counted as ``WORKER_BASE_BYTES`` plus the largest source), never more than jobs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    largest = max((source_size(job.source) for job, _ in todo), default=0)
    free = available_memory()
    by_memory = cores if free is None else free // (WORKER_BASE_BYTES + largest)
    return max(1, min(cores, by_memory, len(todo)))


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def source_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # the server imports weightmap (no framework) once; each worker forks from it
        ctx.set_forkserver_preload(["weightmap.migration.jobs"])
    return ctx


def run_local(todo: Todo, workers: int, done: Done) -> None:
    """Run ``todo`` on ``workers`` processes; ``done(job, result)`` as each job ends."""
    left = _pool_round(list(todo), workers, done)
    while left:
        # a worker died: the rest on one fresh worker, in order, so that when it dies too the
        # job it died on is the first one left unfinished
        left = _pool_round(left, 1, done, again=True)
        if left:
            done(left[0][0], _died(left[0][0]))
            left = left[1:]


def _watch_migration(pid: int) -> None:
    """In a worker: SIGTERM interrupts the job in flight as Ctrl-C does (the port cleans up what
    it was writing), and the worker ends once the migration process ``pid`` is gone. A pool's
    workers otherwise wait for work forever after the migration is killed or interrupted (and a
    ``forkserver`` worker keeps the fork server alive: it holds the pipe whose end tells the
    server to stop)."""
    signal.signal(signal.SIGTERM, _interrupted)

    def watch() -> None:
        while _alive(pid):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)          # the job in flight stops and cleans up
        time.sleep(STOP_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="weightmap-parent-watch", daemon=True).start()


def _run_in_worker(job: Job, replace: bool, again: bool) -> dict[str, Any]:
    """``jobs.run`` in a pool worker. Interrupted (Ctrl-C, or SIGTERM when the migration stops
    its pool), the job has cleaned up what it was writing; the worker then ends instead of
    taking the next job."""
    try:
        return run(job, replace, again)
    except KeyboardInterrupt:
        os._exit(130)


def _interrupted(signo: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signo)


def _alive(pid: int) -> bool:
    """Is process ``pid`` running? A process that has ended but was not reaped yet (a zombie,
    Linux's /proc says so) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def _pool_round(todo: list[tuple[Job, bool]], workers: int, done: Done, again: bool = False
                ) -> list[tuple[Job, bool]]:
    """Run ``todo`` on one pool (``again``: after a worker died, see ``jobs.run``); the jobs
    left unfinished when a worker died."""
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(todo))), mp_context=_context(),
                               initializer=_watch_migration, initargs=(os.getpid(),))
    left: list[tuple[Job, bool]] = []
    try:
        futures = {pool.submit(_run_in_worker, job, replace, again): (job, replace)
                   for job, replace in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    left.append(futures[future])
                    continue
                done(futures[future][0], result)
    except BaseException:        # interrupted: the jobs in flight are lost
        _stop(pool)
        raise
    pool.shutdown(wait=not left, cancel_futures=True)
    return sorted(left, key=lambda item: item[0].index)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool now: its workers are stopped (SIGTERM: the job in flight cleans up what it
    was writing; killed if it has not ended within ``STOP_SECONDS``), so that shutting the pool
    down waits for nothing and leaves nothing behind. ``_processes`` is the pool's own table of
    workers (a public way comes with Python 3.14)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True, cancel_futures=True)


def _died(job: Job) -> dict[str, Any]:
    return {"status": "failed", "output": job.out, "manifest": job.manifest,
            "error": "the worker process running this job died (killed, out of memory, or a "
                     "crash in native code); nothing of its output was kept"}


def ray_module() -> Any:
    """``ray``, or the one-line error saying what to install."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("the Ray executor needs the ray package, which is not "
                                     "installed", hint="pip install 'weightmap[ray]'") from None
    return ray


def run_ray(todo: Todo, address: str | None, done: Done, workers: int | None = None) -> None:
    """Run ``todo`` as Ray tasks (at most ``workers`` at a time when given) on the cluster at
    ``address`` (None: ``RAY_ADDRESS``, else a local one), or on the one this process is
    already connected to."""
    ray = ray_module()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot connect to the Ray cluster: {exc}",
                             hint=f"check {option('ray_address')} (or RAY_ADDRESS), or leave "
                                  "it out to start a local one") from exc
    try:
        # no retry: a task whose worker died fails (a Ray worker runs one task at a time, so
        # no other job goes with it); the next run of the migration resumes
        task = ray.remote(num_cpus=1, max_retries=0)(run)
        queue = list(todo)
        limit = workers or len(queue)
        running: dict[Any, Job] = {}
        while queue or running:
            while queue and len(running) < limit:
                job, replace = queue.pop(0)
                running[task.remote(job, replace)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = {**_died(job), "error": "the Ray task running this job failed: "
                                                     + " ".join(str(exc).split())[:300]}
                done(job, result)
    finally:
        if started:
            ray.shutdown()
