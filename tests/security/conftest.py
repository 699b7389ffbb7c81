"""Shared helpers for the security tests (as fixtures: tests import nothing from here).

- ``hostile``: fixtures/gen_hostile.py loaded as a module (its CATALOGUE, builders, names).
- ``runtime_cases``: a session folder with the cases that cannot be committed (symlinks, hard
  links, FIFOs, files of megabytes), built by ``gen_hostile.build_runtime``.
- ``watch``: watches files with Linux inotify, so a test sees any open or read of a bait file by
  any process (a C library opening a file through libc included).
- ``reader``: a worker subprocess that reads a checkpoint completely (graph, then every tensor)
  and answers ``ok`` / the weightmap error / any other exception. A crash (a signal) or a hang
  of the worker is reported as such, so no input can take the test process down with it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import select
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: a bounded atheris run (needs atheris; "
                                       "WEIGHTMAP_FUZZ_SECONDS sets the budget per reader)")


def pytest_generate_tests(metafunc):
    """A test taking ``valid_input`` runs once per (checkpoint, file to damage) of
    ``valid_inputs()``, named after the file; one taking ``case`` once per catalogue entry."""
    if "valid_input" in metafunc.fixturenames:
        inputs = valid_inputs()
        metafunc.parametrize("valid_input", inputs, ids=[damaged for _, damaged in inputs])
    if "case" in metafunc.fixturenames:             # the security catalogue, named by advisory
        cases = load_gen_hostile().CATALOGUE
        metafunc.parametrize("case", cases, ids=[f"{c.ref}-{c.name}" if c.ref else c.name
                                                 for c in cases])

FIXTURES = REPO / "fixtures"
VALID_FOLDERS = ("torch", "safetensors", "keras", "onnx", "examples")


def load_gen_hostile():
    spec = importlib.util.spec_from_file_location("gen_hostile", FIXTURES / "gen_hostile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def hostile():
    return load_gen_hostile()


@pytest.fixture(scope="session")
def runtime_cases(tmp_path_factory, hostile):
    root = tmp_path_factory.mktemp("runtime")
    hostile.write_baits(root)
    hostile.build_runtime(root)
    return root


# ----------------------------------------------------------------------------- inotify
IN_ACCESS, IN_OPEN = 0x1, 0x20
_EVENT = struct.Struct("iIII")


class Watch:
    """Records every open/read of the watched files and folders (their entries included)."""

    def __init__(self, paths):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._libc = libc
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify is not available here")
        self.names = {}
        for path in paths:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(path), IN_ACCESS | IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {path}")
            self.names[wd] = str(path)

    def events(self) -> list[str]:
        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            at = 0
            while at < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
                name = data[at + _EVENT.size: at + _EVENT.size + length].rstrip(b"\0").decode()
                out.append(f"{self.names.get(wd, wd)}/{name} mask={mask:#x}")
                at += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def watch():
    made = []

    def start(paths) -> Watch:
        w = Watch(paths)
        made.append(w)
        return w
    yield start
    for w in made:
        w.close()


# ----------------------------------------------------------------------------- the worker
WORKER = r"""
import json, sys, traceback
from weightmap.errors import WeightmapError
from weightmap.reading.read import read
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        graph = read(path)
        for p in graph.params():
            p.read()
        answer = {"outcome": "ok"}
    except WeightmapError as exc:
        text = str(exc)
        answer = {"outcome": "weightmap", "type": type(exc).__name__, "message": text,
                  "one_line": "\n" not in text}
    except BaseException as exc:
        answer = {"outcome": "other", "type": type(exc).__name__, "message": str(exc)[:300],
                  "trace": traceback.format_exc()[-2000:]}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class Reader:
    """Reads checkpoints in a worker process; restarts it after a crash or hang."""

    def __init__(self, cwd: Path, timeout: float = 30.0):
        self.cwd, self.timeout, self.proc = cwd, timeout, None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=self.cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def __call__(self, path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.stop()
            return {"outcome": "hang", "message": f"no answer in {self.timeout} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "message": f"worker died with exit code {code}"}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# A forking runner: imports weightmap once, then runs each ``weightmap`` command line in a fresh
# forked child with its own working directory, stdout/stderr files and exit status. The child
# is a separate process like ``python -m weightmap`` (a crash is its signal, C libraries write
# to its fd 2), without paying the interpreter's start-up per case.
ZYGOTE = r"""
import json, os, resource, signal, sys, time
import weightmap.cli, weightmap.reading.read, weightmap.registry
weightmap.registry.adapters()
import h5py, onnx, zipfile
for line in sys.stdin:
    req = json.loads(line)
    out_path, err_path = req["cwd"] + "/.stdout", req["cwd"] + "/.stderr"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(req["cwd"])
            for fd, name in ((1, out_path), (2, err_path)):
                f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(f, fd)
                os.close(f)
            sys.stdout = os.fdopen(1, "w", closefd=False)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            code = weightmap.cli.main(req["argv"])
            sys.stdout.flush(); sys.stderr.flush()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback; traceback.print_exc(); sys.stderr.flush(); code = 99
        os._exit(code)
    deadline = start + req.get("timeout", 60)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    reply = {"returncode": os.waitstatus_to_exitcode(status), "seconds": seconds,
             "maxrss_kb": usage.ru_maxrss,
             "stdout": open(out_path, errors="replace").read(),
             "stderr": open(err_path, errors="replace").read()}
    os.remove(out_path); os.remove(err_path)
    sys.stdout.write(json.dumps(reply) + "\n"); sys.stdout.flush()
"""


class Runner:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def __call__(self, argv, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
        cwd.mkdir(parents=True, exist_ok=True)
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        run = subprocess.CompletedProcess(argv, reply["returncode"], reply["stdout"],
                                          reply["stderr"])
        run.seconds, run.maxrss_kb = reply["seconds"], reply["maxrss_kb"]
        return run

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def weightmap_cli():
    """weightmap_cli(["inspect", path], cwd) -> CompletedProcess of a forked weightmap run."""
    runner = Runner()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    r = Reader(tmp_path_factory.mktemp("reader-cwd"))
    yield r
    r.stop()


def assert_clean(answer: dict, what: object) -> None:
    """Either read completely or refused with weightmap's own one-line error."""
    assert answer["outcome"] in ("ok", "weightmap"), f"{what}: {answer}"
    if answer["outcome"] == "weightmap":
        assert answer["one_line"], f"{what}: {answer}"


@pytest.fixture(scope="session")
def check_clean():
    return assert_clean


# ----------------------------------------------------------------------------- valid fixtures
def valid_inputs() -> list[tuple[str, str]]:
    """(what to read, file to damage), relative to fixtures/: every committed valid fixture;
    a folder checkpoint (ONNX external data, shards) once per file in it."""
    out = []
    for folder in VALID_FOLDERS:
        for path in sorted((FIXTURES / folder).iterdir()):
            if path.is_dir():
                model = next(iter(sorted(path.glob("*.onnx"))), None)
                target = model if model else path
                for part in sorted(p for p in path.iterdir() if p.is_file()):
                    out.append((str(target.relative_to(FIXTURES)),
                                str(part.relative_to(FIXTURES))))
            elif path.suffix != ".py":
                rel = str(path.relative_to(FIXTURES))
                out.append((rel, rel))
    return out


def copy_input(target: str, damaged: str, dest: Path) -> tuple[Path, Path]:
    """Copy the checkpoint holding ``damaged`` (its folder when it is one) below ``dest``;
    returns (path to read, path of the copy of the file to damage)."""
    src_target, src_damaged = FIXTURES / target, FIXTURES / damaged
    if src_target == src_damaged:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(src_target, dest / src_target.name)
        return dest / src_target.name, dest / src_target.name
    folder = src_damaged.parent
    shutil.copytree(folder, dest / folder.name, dirs_exist_ok=True)
    read_path = dest / folder.name / src_target.name if src_target.is_file() \
        else dest / folder.name
    return read_path, dest / folder.name / src_damaged.name


@pytest.fixture(scope="session")
def valid_fixtures():
    return valid_inputs()


@pytest.fixture(scope="session")
def copy_fixture():
    return copy_input
