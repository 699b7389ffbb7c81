"""One job of a migration: whether it still has to run (resume), and running it (in a worker).

A job is skipped when its manifest exists, records this job's options (the SHA-256 of its
normalised options), names an output that exists, and records a source that is still the one
on disk: same size, and the same modification time or else the same SHA-256. An output this
migration made for the job before (its manifest has a ``job`` entry) but that no longer
matches is replaced; any other existing output is left alone unless ``force`` is given (the
job then fails, saying so).

``run`` is what a worker process (or Ray task) executes: it never raises, it returns the job's
result as plain data, with the error as one line.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError, WeightmapError
from ..fingerprint import fingerprint, sha256
from ..spelling import SPEC, spelled
from .spec import Job


@dataclass(frozen=True)
class Resume:
    action: str                     # "run" | "replace" | "skip"
    reason: str = ""
    output: str | None = None       # a skipped job's output, coverage and verify figure,
    coverage: float | None = None   # from its manifest
    verify: dict[str, Any] | None = None


def resume_state(job: Job) -> Resume:
    """What a resumed migration does with ``job`` (see the module doc)."""
    try:
        man = json.loads(Path(job.manifest).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Resume("run")
    except (OSError, ValueError):
        return Resume("run", "its manifest does not read as JSON")
    record = man.get("job") if isinstance(man, dict) else None
    if not isinstance(record, dict):
        return Resume("run", "its manifest is not one a migration wrote")
    if record.get("sha256") != job.record["sha256"]:
        return Resume("replace", "its options or its target changed")
    output = man.get("output")
    if not isinstance(output, str) or not Path(output).exists():
        return Resume("replace", "its output is missing")
    recorded = man.get("source") if isinstance(man.get("source"), dict) else {}
    now = fingerprint(job.source)
    if not now:
        return Resume("run")                 # the port will say that the source is missing
    if now["size"] != recorded.get("size"):
        return Resume("replace", "its source changed size")
    coverage = (man.get("summary") or {}).get("coverage")
    if now["mtime_ns"] == recorded.get("mtime_ns"):
        return Resume("skip", "output up to date", output, coverage, verify_figure(man))
    if sha256(Path(job.source)) == recorded.get("sha256"):
        return Resume("skip", "output up to date (the source was touched, its content is the "
                              "same)", output, coverage, verify_figure(man))
    return Resume("replace", "its source changed")


def verify_figure(manifest: Any) -> dict[str, Any] | None:
    """``{"passed", "verdict", "rel"}`` of a verified port (the manifest's ``verify``: its
    verdict, the largest relative difference over the model's outputs), or None when it was
    not verified."""
    found = manifest.get("verify") if isinstance(manifest, dict) else None
    if not isinstance(found, dict):
        return None
    rels = [o.get("rel") for o in found.get("outputs") or () if isinstance(o, dict)]
    rels = [r for r in rels if isinstance(r, (int, float))]
    verdict = found.get("verdict") or ("passed" if found.get("passed") else "FAILED")
    return {"passed": found.get("passed"), "verdict": verdict,
            "rel": max(rels) if rels else None}


# ---- in the worker ---------------------------------------------------------------------------

# targets built in this process: (target, new_values, input hint) -> graph; a worker builds
# each once (a model file without example_input is traced on an input its source suggests,
# ``api.input_hint``: sources that suggest another input get their own build)
_TARGETS: dict[tuple[str, str, str], Any] = {}


def _target_key(job: Job, hint: Any = None) -> tuple[str, str, str]:
    return (str(job.target), job.options.get("new_values", "construct"),
            json.dumps(hint, sort_keys=True, default=str))


def target_of(job: Job, hint: Any = None) -> Any:
    """The job's target graph, built on the first job that needs it in this process."""
    from ..api import target_graph
    key = _target_key(job, hint)
    if key not in _TARGETS:
        _TARGETS[key] = target_graph(job.target, key[1], hint)
    return _TARGETS[key]


def run(job: Job, replace: bool = False, again: bool = False) -> dict[str, Any]:
    """Run ``job``; ``replace`` lets it overwrite its earlier output. The result: ``status``
    (``ok`` | ``failed``), ``output``, ``manifest``, ``coverage``, ``tensors``, ``bytes``,
    ``seconds``, ``error`` (one line), ``worker`` (the process id) and ``built_target``
    (whether this job built its target, the first in its worker to need it).

    ``again``: the job ran before in this migration, in a worker that died before it reported;
    an output it completed then is kept (the job is ``ok``), one it left stale is replaced."""
    started = time.perf_counter()
    built = len(_TARGETS)
    if again:
        state = resume_state(job)
        if state.action == "skip":
            return {"status": "ok", "output": state.output, "manifest": job.manifest,
                    "coverage": state.coverage, "verify": state.verify, "seconds": 0.0,
                    "reason": "written before its worker died"}
        replace = replace or state.action == "replace"
    result: dict[str, Any] = {"status": "failed", "output": job.out, "manifest": job.manifest,
                              "worker": os.getpid()}
    try:
        make_folder(Path(job.stem).parent)        # an out: template may name sub-folders
        with spelled(SPEC):                       # messages name the spec's keys
            report = _port(job, replace) if job.kind == "port" else _convert(job, replace)
        summary = report.manifest["summary"]
        result.update(status="ok", output=report.output, coverage=summary["coverage"],
                      tensors=summary["params"], verify=verify_figure(report.manifest),
                      bytes=(fingerprint(report.output) or {}).get("size", 0))
    except WeightmapError as exc:
        result["error"] = str(exc)
    except MemoryError:
        result["error"] = "out of memory"
    except Exception as exc:   # a bug of ours: one line, like the CLI's internal error
        text = " ".join(str(exc).split())
        result["error"] = f"internal error: {type(exc).__name__}: {text} (this is a bug in " \
                          f"weightmap; run the job alone with WEIGHTMAP_DEBUG=1 for the trace)"
        if os.environ.get("WEIGHTMAP_DEBUG"):
            raise
    result["built_target"] = len(_TARGETS) > built
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder: {exc.strerror}",
                         path=folder) from exc


def _output(job: Job, target: Any = None) -> str:
    if job.out is not None:
        return job.out
    from ..emit import KINDS, output_kind
    return job.stem + KINDS[output_kind(target, None)][0] if target is not None \
        else job.stem + KINDS["safetensors"][0]


def _shared(job: Job, replace: bool) -> dict[str, Any]:
    o = job.options
    return {"manifest": job.manifest, "force": replace, "progress": False,
            "source_digest": True, "job": job.record,
            **{k: o[k] for k in ("rules", "shard_size", "fail_on_nonfinite") if k in o}}


def _port(job: Job, replace: bool) -> Any:
    from ..api import input_hint, port
    from ..sources import read
    o = job.options
    source = read(job.source, **_read_options(o))
    target = target_of(job, input_hint(source))
    extra = {k: o[k] for k in ("freeze", "lr_scale", "new_values", "verify", "source_model",
                               "verify_tol", "min_coverage", "strict") if k in o}
    return port(source, target, out=_output(job, target), **_shared(job, replace), **extra)


def _convert(job: Job, replace: bool) -> Any:
    from ..surgery import convert
    o = job.options
    extra = {k: o[k] for k in ("cast", "strip_prefix", "keep", "drop", "container") if k in o}
    return convert(job.source, _output(job), **_shared(job, replace), **extra,
                   read_options=_read_options(o))


def _read_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The job's options that are the source reader's (``opaque_globals``)."""
    return {"opaque_globals": True} if options.get("opaque_globals") else {}
