"""A migration spec: its schema, and the jobs it expands to (docs/migrate.md).

The spec is YAML or TOML (``weightmap.documents``), or the same data as a dict. It is checked
against a JSON Schema with ``jsonschema`` (the reference implementation, maintained, MIT): the
schema below is the one place that says which keys exist and what each holds, and an unknown
key anywhere is an error naming the valid ones.

Paths in a spec file are relative to the spec's folder; an ``out`` is relative to ``out_dir``.
A ``source`` with a glob (``*``, ``?``, ``[``) becomes one job per matching file, in natural
order. A job with a target (its own, or the spec's) is a port; a job without one is a convert.
"""
from __future__ import annotations

import glob
import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import documents
from ..errors import UsageError
from ..paths import natural_key

_STRINGS = {"anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "items": {"type": "string", "minLength": 1}}]}
# every option a job may take; top-level ones are shared by the jobs of the kinds that take them
OPTIONS: dict[str, dict[str, Any]] = {
    "rules": {"type": "string", "minLength": 1},
    "freeze": {"type": "string", "minLength": 1},
    "lr_scale": {"type": "object", "additionalProperties": False,
                 "properties": {k: {"type": "number", "minimum": 0}
                                for k in ("transferred", "new", "decay")}},
    "verify": {"enum": [True, False, "warn"]},
    "source_model": {"type": "string", "minLength": 1},
    "verify_tol": {"type": "number", "exclusiveMinimum": 0},
    "min_coverage": {"type": "number", "minimum": 0, "maximum": 1},
    "strict": {"type": "boolean"},
    "new_values": {"enum": ["construct", "reset"]},
    "cast": {"enum": ["fp32", "fp16", "bf16", "float32", "float16", "bfloat16"]},
    "strip_prefix": {"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1},
                               {"type": "array", "items": {"anyOf": [
                                   {"const": True}, {"type": "string", "minLength": 1}]}}]},
    "keep": _STRINGS,
    "drop": _STRINGS,
    "container": {"type": "string", "minLength": 1},
    "opaque_globals": {"type": "boolean"},
    "shard_size": {"anyOf": [{"type": "integer", "minimum": 1},
                             {"type": "string", "minLength": 1}]},
    "fail_on_nonfinite": {"type": "boolean"},
}
PORT_OPTIONS = ("rules", "freeze", "lr_scale", "verify", "source_model", "verify_tol",
                "min_coverage", "strict", "new_values", "shard_size", "fail_on_nonfinite",
                "opaque_globals")
# options of verification alone (source_model describes the source for the plan too)
VERIFY_OPTIONS = ("verify_tol",)
CONVERT_OPTIONS = ("rules", "cast", "strip_prefix", "keep", "drop", "container", "shard_size",
                   "fail_on_nonfinite", "opaque_globals")
# options of ``weightmap.port`` that not every weightmap has: refused where port lacks them
PORT_CAPABILITIES = {"verify": "verification of the ported model (weightmap.port(verify=...))",
                     "min_coverage": "coverage checks (weightmap.port(min_coverage=...))"}

JOB_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["source"],
    "properties": {"source": {"type": "string", "minLength": 1},
                   # null or false (TOML has no null): a convert job despite the spec's target
                   "target": {"anyOf": [{"type": "string", "minLength": 1}, {"const": None},
                                        {"const": False}]},
                   "out": {"type": "string", "minLength": 1}, **OPTIONS},
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False, "required": ["out_dir", "jobs"],
    "properties": {"out_dir": {"type": "string", "minLength": 1},
                   "target": {"type": "string", "minLength": 1},
                   "jobs": {"type": "array", "minItems": 1, "items": JOB_SCHEMA},
                   **OPTIONS},
}


@dataclass(frozen=True)
class Job:
    """One port or convert of a migration, every path absolute (workers elsewhere see the same
    storage). ``out`` is the output when the spec names it with a suffix; otherwise the output
    is ``stem`` plus the suffix of the target's format, known once the target is read."""

    index: int                         # position among the spec's expanded jobs
    entry: int                         # which ``jobs[...]`` entry of the spec it comes from
    kind: str                          # "port" | "convert"
    source: str
    target: str | None
    out: str | None
    stem: str
    manifest: str
    options: Mapping[str, Any] = field(default_factory=dict)   # normalised (see ``record``)

    @property
    def record(self) -> dict[str, Any]:
        """What the job's manifest records under ``job``: its normalised options and their
        SHA-256, which a resumed migration compares (with the source's fingerprint)."""
        return {"options": dict(self.options), "sha256": options_sha256(self.options)}


@dataclass(frozen=True)
class Spec:
    path: str | None                   # the spec file, if it came from one
    out_dir: str
    jobs: tuple[Job, ...]


def options_sha256(options: Mapping[str, Any]) -> str:
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load(spec: Any, base_dir: str | os.PathLike | None = None) -> Spec:
    """A spec file (YAML/TOML) or dict, validated and expanded to its jobs. Relative paths are
    taken from the spec file's folder (a dict: ``base_dir``, default the current folder)."""
    if isinstance(spec, Mapping):
        data, path = dict(spec), None
        base = Path(base_dir or os.getcwd()).resolve()
    else:
        path = Path(spec)
        data = documents.load(path, "migration spec")
        base = path.resolve().parent
    validate(data, str(path) if path else "<spec>")
    return _expand(data, base, str(path) if path else None)


def validate(data: Any, where: str) -> None:
    """The spec against ``SCHEMA``: the first problem as a UsageError naming its key."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        unknown = sorted(k for k in error.instance if k not in allowed)
        raise UsageError(f"unknown key {_join(key, unknown[0])!r} in the migration spec",
                         path=where, hint=f"valid keys{' of ' + key if key else ''}: "
                                          f"{', '.join(allowed)}")
    raise UsageError(f"migration spec key {key or '<top>'!r}: {error.message}", path=where)


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _expand(data: Mapping[str, Any], base: Path, spec_path: str | None) -> Spec:
    where = spec_path or "<spec>"
    out_dir = _absolute(base, data["out_dir"])
    shared = {k: data[k] for k in OPTIONS if k in data}
    _refuse_missing_capabilities(data, "", where)
    _check_policies(data, "", where)
    jobs: list[Job] = []
    taken: set[str] = set()
    for entry, job in enumerate(data["jobs"]):
        key = f"jobs[{entry}]"
        _refuse_missing_capabilities(job, key + ".", where)
        _check_policies(job, key + ".", where)
        target = job["target"] if "target" in job else data.get("target")
        kind = "port" if target else "convert"
        takes = PORT_OPTIONS if kind == "port" else CONVERT_OPTIONS
        foreign = [k for k in OPTIONS if k in job and k not in takes]
        if foreign:
            raise UsageError(f"migration spec key {key}.{foreign[0]}: a {kind} job takes no "
                             f"{foreign[0]!r}", path=where,
                             hint=f"a {kind} job takes {', '.join(takes)}" +
                                  (" (a job without a target is a convert job)"
                                   if kind == "port" else " (give it a target to port)"))
        takes = _verifying(takes, job, shared, key, where)
        taken.update(k for k in shared if k in takes)
        options = {**{k: v for k, v in shared.items() if k in takes},
                   **{k: job[k] for k in takes if k in job}}
        for source in _sources(base, job["source"], out_dir, f"{key}.source", where):
            jobs.append(_job(len(jobs), entry, kind, source,
                             _absolute_ref(base, target) if target else None,
                             job.get("out"), out_dir, options, base, where))
    unused = [k for k in shared if k not in taken]
    if unused:
        which = "convert jobs (jobs without a target)" if unused[0] in CONVERT_OPTIONS \
            else "port jobs that verify (verify: true or warn)" \
            if unused[0] in VERIFY_OPTIONS else "port jobs (jobs with a target)"
        raise UsageError(f"migration spec key {unused[0]!r}: no job of this spec takes it",
                         path=where, hint=f"{unused[0]} is for {which}")
    _refuse_shared_outputs(jobs, where)
    return Spec(path=spec_path, out_dir=str(out_dir), jobs=tuple(jobs))


def _verifying(takes: tuple[str, ...], job: Mapping[str, Any], shared: Mapping[str, Any],
               key: str, where: str) -> tuple[str, ...]:
    """The options a port job takes once its ``verify`` is known: the verification options
    only when it verifies (a shared ``source_model`` serves the jobs that do); given on a job
    that does not, they would be ignored, so they are refused."""
    if "verify" not in takes or job.get("verify", shared.get("verify")):
        return takes
    given = [k for k in VERIFY_OPTIONS if k in job]
    if given:
        raise UsageError(f"migration spec key {key}.{given[0]}: it serves verification, and "
                         "this job does not verify", path=where,
                         hint=f"add verify: true (or warn) to the job, or remove {given[0]}")
    return tuple(k for k in takes if k not in VERIFY_OPTIONS)


def _refuse_missing_capabilities(entry: Mapping[str, Any], key: str, where: str) -> None:
    for name, what in PORT_CAPABILITIES.items():
        if name in entry and not _port_takes(name):
            raise UsageError(f"migration spec key {key}{name}: this weightmap has no {what} "
                             f"yet", path=where, hint=f"remove {name!r} from the spec")


def _check_policies(entry: Mapping[str, Any], key: str, where: str) -> None:
    """A bad freeze policy or learning-rate scale would fail every job the same way: refuse
    the spec instead."""
    from ..manifest import parse_freeze, parse_lr_scales
    for name, parse in (("freeze", parse_freeze), ("lr_scale", parse_lr_scales)):
        if name in entry:
            try:
                parse(entry[name])
            except UsageError as exc:
                raise UsageError(f"migration spec key {key}{name}: {exc.message}", path=where,
                                 hint=exc.hint) from None


def _port_takes(option: str) -> bool:
    from .. import api              # only when a spec asks (importing the pipeline takes a while)
    return option in inspect.signature(api.port).parameters


def _absolute(base: Path, text: str) -> Path:
    return Path(os.path.normpath(base / os.path.expanduser(text)))


def _absolute_ref(base: Path, text: str) -> str:
    """A target: a path, or ``model.py:NAME`` with the file part made absolute."""
    from ..sources import split_pyref
    pyfile, name = split_pyref(text)
    if pyfile is not None and text != str(pyfile):
        return f"{_absolute(base, str(pyfile))}:{name}"
    return str(_absolute(base, text))


_MAGIC = re.compile(r"[*?[]")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _sources(base: Path, pattern: str, out_dir: Path, key: str, where: str) -> list[str]:
    """The job sources a ``source`` names. A glob never takes what lies in ``out_dir`` (the
    migration's own outputs, which a second run would otherwise port again), unless the spec's
    folder itself is in ``out_dir``."""
    path = str(_absolute(base, pattern))
    if not _MAGIC.search(pattern):
        return [path]
    found = sorted(glob.glob(path, recursive=True), key=natural_key)
    if not _inside(base, out_dir):
        found = [f for f in found if not _inside(Path(f), out_dir)]
    if not found:
        raise UsageError(f"migration spec key {key}: {pattern!r} matches no file", path=where,
                         hint=f"looked for {path}")
    return found


def _job(index: int, entry: int, kind: str, source: str, target: str | None,
         out: str | None, out_dir: Path, options: Mapping[str, Any], base: Path,
         where: str) -> Job:
    from ..emit import kind_of_name, manifest_path_for, stem_of
    src = Path(source)
    try:
        name = out.format(stem=stem_of(source), parent=src.parent.name) if out \
            else stem_of(source)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"migration spec key jobs[{entry}].out: {out!r} is not a name "
                         f"template: {exc!r}", path=where,
                         hint="it may use {stem} and {parent}; write a brace as {{ or }}"
                         ) from None
    path = _absolute(out_dir, name)
    try:
        kind_of_name(path)
        explicit: str | None = str(path)
        stem = str(manifest_path_for(path)).removesuffix(".manifest.json")
    except UsageError:          # no output suffix: the target's format gives it
        explicit, stem = None, str(path)
    normalised = {"kind": kind, "source": source, "target": target,
                  "out": explicit or stem + ".*", **_normalised(options, base)}
    if target is not None:
        normalised["target_sha256"] = _file_sha256(target)
    return Job(index=index, entry=entry, kind=kind, source=source, target=target, out=explicit,
               stem=stem, manifest=stem + ".manifest.json", options=normalised)


def _normalised(options: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """The options as a job takes them: files absolute, each with its SHA-256 (a changed rules
    or source model file makes its jobs run again)."""
    out = dict(options)
    for key in ("keep", "drop"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    for key in ("rules", "source_model"):
        if key in options:
            out[key] = _absolute_ref(base, options[key])
            out[f"{key}_sha256"] = _file_sha256(out[key])
    return out


_DIGESTS: dict[tuple[str, int, int], str | None] = {}


def _file_sha256(ref: str) -> str | None:
    """The SHA-256 of a target or rules file (computed once per file and version), so that a
    changed model file or rules file makes its jobs run again; None when it does not exist (the
    job then fails and says so)."""
    from ..fingerprint import fingerprint
    from ..sources import split_pyref
    pyfile, _ = split_pyref(ref)
    path = str(pyfile) if pyfile is not None else ref
    found = fingerprint(path)
    if not found:
        return None
    key = (path, found["size"], found["mtime_ns"])
    if key not in _DIGESTS:
        _DIGESTS[key] = fingerprint(path, digest=True).get("sha256")
    return _DIGESTS[key]


def _refuse_shared_outputs(jobs: list[Job], where: str) -> None:
    seen: dict[str, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.manifest, job)
        if other is not job:
            raise UsageError(f"jobs[{other.entry}] ({other.source}) and jobs[{job.entry}] "
                             f"({job.source}) would both write {job.stem}.*", path=where,
                             hint="give one an out:, e.g. out: '{parent}_{stem}'")
