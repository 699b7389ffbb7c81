"""The security catalogue (fixtures/gen_hostile.py CATALOGUE): one regression test per hostile
or broken input, named after its CVE / advisory where one exists.

Each case runs ``weightmap inspect`` in a subprocess, in an empty working directory, while
inotify watches every bait file an escaping reference could reach. A refused case must end with
the expected exit code and exactly one line on stderr naming the file and the problem, no
traceback, no marker file (no payload ran), no open or read of a bait, and no output file from
``port``. A case marked "read" (a Keras config naming Lambda bytecode and modules, the Hugging
Face cache layout) must be read as data: exit 0, every tensor readable, still no marker.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from weightmap.errors import WeightmapError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
HOSTILE = FIXTURES / "hostile"
TEMPLATE = FIXTURES / "safetensors" / "tiny_hf.safetensors"
FILE_FOLDERS = ("torch", "zip", "safetensors", "keras")
# control characters but the newline, bidirectional overrides and isolates, lone surrogates
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
                         "\ud800-\udfff]")


def place(case, root: Path, runtime: Path) -> Path:
    """Where the case is read from: committed cases are copied to ``root/case`` (so that
    ``../outside`` from the file's folder is ``root/outside``, where the baits are)."""
    if case.runtime:
        return runtime / case.path
    src = HOSTILE / case.path
    dest = root / "case"
    if src.parent.parent == HOSTILE and src.parent.name in FILE_FOLDERS:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest / src.name)
    else:
        shutil.copytree(src.parent, dest, dirs_exist_ok=True)
    return dest / src.name


def bait_watch(watch, *roots: Path):
    """Watch the baits of ``roots`` (each ``root/outside``); only folders of this test run, so
    that another run on the same machine cannot be mistaken for a leak."""
    paths = []
    for root in roots:
        folder = root / "outside"
        paths += [folder, *sorted(folder.iterdir())]
    return watch(paths)


def test_catalogue(case, hostile, runtime_cases, watch, weightmap_cli, tmp_path, monkeypatch):
    hostile.write_baits(tmp_path)
    path = place(case, tmp_path, runtime_cases)
    seen = bait_watch(watch, tmp_path, runtime_cases)
    cwd = tmp_path / "cwd"
    run = weightmap_cli(["inspect", path], cwd)
    assert run.returncode >= 0, f"weightmap died with signal {-run.returncode}: {run.stderr}"
    assert "Traceback" not in run.stderr
    for text in (run.stdout, run.stderr):   # names from the file reach the terminal escaped
        assert not RAW_CONTROL.search(text), repr(text)
    if case.expect == "refuse":
        assert run.returncode == case.exit_code, run.stderr
        assert run.stdout == ""
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("weightmap: error: ")
        assert str(path) in run.stderr
        assert re.search(case.message, run.stderr), run.stderr
    else:
        assert run.returncode == 0, run.stderr
    # nothing ran, nothing outside was opened
    assert not (cwd / hostile.MARKER).exists()
    assert seen.events() == []
    if path.is_file() and path.stat().st_size > 1 << 20:
        return      # the megabyte cases (opcode bomb, 80 MB header): once is enough
    # the same in-process: no output from port, or every tensor read for "read" cases
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    out.mkdir()
    if case.expect == "refuse":
        from weightmap.api import port
        with pytest.raises(WeightmapError):
            port(str(path), str(TEMPLATE), out / "ported.safetensors")
        assert list(out.iterdir()) == []
    else:
        from weightmap.reading.read import read
        graph = read(str(path))
        assert list(graph.params())
        for p in graph.params():
            p.read()
    assert not (cwd / hostile.MARKER).exists()
    assert seen.events() == []


@pytest.mark.parametrize("name", ["torch/os_system.pt", "zip/overlap.pt",
                                  "safetensors/duplicate_keys.safetensors",
                                  "keras/external_link.weights.h5",
                                  "onnx/ext_dotdot/model.onnx"])
def test_fresh_python_process(hostile, tmp_path, name):
    """One case per reader through a fresh ``python -m weightmap`` as a user runs it."""
    case = next(c for c in hostile.CATALOGUE if c.path == name)
    hostile.write_baits(tmp_path)
    path = place(case, tmp_path, tmp_path)
    (tmp_path / "cwd").mkdir()
    run = subprocess.run([sys.executable, "-m", "weightmap", "inspect", str(path)],
                         cwd=tmp_path / "cwd", capture_output=True, text=True, timeout=120)
    assert run.returncode == case.exit_code and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert re.search(case.message, run.stderr) and str(path) in run.stderr


def test_hf_cache_layout_reads_the_blobs(runtime_cases):
    from weightmap.reading.read import read
    snapshot = runtime_cases / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    graph = read(str(snapshot))
    assert [p.name for p in graph.params()] == ["fc.weight", "fc.bias"]
    assert graph.param("fc.weight").read().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert graph.meta["index"] == "model.safetensors.index.json"


def test_every_committed_fixture_is_in_the_catalogue(hostile):
    named = {str(HOSTILE / c.path) for c in hostile.CATALOGUE if not c.runtime}
    for path in HOSTILE.rglob("*"):
        if path.is_file() and str(path) not in named:
            # files of a folder case (shards, external data) belong to its model file, or to
            # the folder itself when the case reads the folder
            assert any(n.startswith(str(path.parent) + os.sep) or n == str(path.parent)
                       for n in named), path


def test_generator_reproduces_the_committed_fixtures(hostile, tmp_path):
    hostile.generate(tmp_path)
    made = {p.relative_to(tmp_path / "hostile"): p for p in (tmp_path / "hostile").rglob("*")
            if p.is_file()}
    committed = {p.relative_to(HOSTILE): p for p in HOSTILE.rglob("*") if p.is_file()}
    assert made.keys() == committed.keys()
    for rel, path in made.items():
        if rel.name in hostile.UNSTABLE:            # libhdf5 writes these differently each time
            assert path.stat().st_size == committed[rel].stat().st_size
        else:
            assert path.read_bytes() == committed[rel].read_bytes(), rel
    assert sum(p.stat().st_size for p in committed.values()) < 1_000_000


def test_the_watch_sees_a_read(hostile, watch, tmp_path):
    """The inotify watch is not blind: a child process reading a bait is seen."""
    baits = hostile.write_baits(tmp_path)
    seen = bait_watch(watch, tmp_path)
    subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'rb').read()",
                    str(baits[0])], check=True)
    assert any("secret.bin" in e for e in seen.events())


LIVE_PAYLOADS = ["os_system.pt", "posix_system.pt", "builtins_exec.pt", "builtins_eval.pt",
                 "getattr_chain.pt", "subprocess_popen.pt", "stack_global_memo.pt",
                 "inst_os_system.pt", "obj_os_system.pt"]
# pickle's own unpickler; it stops at the first torch global (the payload comes first, and
# importing torch would only cost time)
PLAIN_UNPICKLE = ("import io, pickle, sys, zipfile\n"
                  "class U(pickle.Unpickler):\n"
                  "    def find_class(self, module, name):\n"
                  "        if module.startswith('torch'):\n"
                  "            raise SystemExit(0)\n"
                  "        return super().find_class(module, name)\n"
                  "data = zipfile.ZipFile(sys.argv[1]).read('archive/data.pkl')\n"
                  "u = U(io.BytesIO(data))\n"
                  "u.persistent_load = lambda pid: None\n"
                  "u.load()\n")


@pytest.mark.parametrize("name", LIVE_PAYLOADS)
def test_payloads_are_live_under_a_general_unpickler(hostile, tmp_path, name):
    """What the catalogue refuses really runs code under pickle's own unpickler."""
    subprocess.run([sys.executable, "-c", PLAIN_UNPICKLE, str(HOSTILE / "torch" / name)],
                   cwd=tmp_path, capture_output=True, timeout=60)
    marker = tmp_path / hostile.MARKER
    for _ in range(500):                       # Popen's child may still be running
        if marker.exists():
            break
        time.sleep(0.01)
    assert marker.exists()


def test_deep_tuple_key_crashes_cpython_without_the_depth_cap(tmp_path):
    """The nesting cap is what keeps the interpreter alive: plain pickle dies (SIGSEGV)."""
    run = subprocess.run([sys.executable, "-c", PLAIN_UNPICKLE,
                          str(HOSTILE / "torch" / "deep_tuple_key.pt")],
                         cwd=tmp_path, capture_output=True, timeout=60)
    assert run.returncode < 0


H5PY_READ = ("import h5py, sys\n"
             "with h5py.File(sys.argv[1], 'r') as f:\n"
             "    print(list(f[sys.argv[2]][()]))\n")


@pytest.mark.parametrize("name,dataset", [
    ("external_link.weights.h5", "layers/dense/vars/1"),
    ("external_storage.weights.h5", "layers/dense/vars/1"),
    ("virtual_dataset.weights.h5", "layers/dense/vars/1"),
])
def test_h5py_itself_reads_outside(hostile, watch, tmp_path, name, dataset):
    """h5py (and so Keras' loader) follows these references into the bait files."""
    hostile.write_baits(tmp_path)
    (tmp_path / "case").mkdir()
    shutil.copy(HOSTILE / "keras" / name, tmp_path / "case" / name)
    seen = bait_watch(watch, tmp_path)
    subprocess.run([sys.executable, "-c", H5PY_READ, str(tmp_path / "case" / name), dataset],
                   cwd=tmp_path / "case", capture_output=True, timeout=60)
    assert seen.events(), "h5py did not touch the bait"


def test_libhdf5_itself_hangs_on_the_corrupt_global_heap(tmp_path):
    """Without weightmap's heap check, h5py never returns from reading the name attribute."""
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c",
                        "import h5py, sys; print(h5py.File(sys.argv[1])['vars'].attrs['name'])",
                        str(HOSTILE / "keras" / "global_heap_loop.weights.h5")],
                       cwd=tmp_path, capture_output=True, timeout=2)


def test_libhdf5_itself_allocates_the_declared_string_length(tmp_path):
    """h5py reading the forged "name" string allocates the 256 MiB it declares, then fails."""
    proc = subprocess.Popen([sys.executable, "-c",
                             "import h5py, sys\n"
                             "try: h5py.File(sys.argv[1])['layers/dense/vars'].attrs['name']\n"
                             "except OSError: pass",
                             str(HOSTILE / "keras" / "vlen_length_bomb.weights.h5")],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    assert usage.ru_maxrss > 256 * 1024                 # kilobytes


def test_zip_fixtures_fool_zipfile(tmp_path):
    """zipfile itself lists the forged archives without complaint; the checks are weightmap's."""
    for name in ("traversal_name.pt", "duplicate_name.pt", "overlap.pt", "lying_local_size.pt"):
        with zipfile.ZipFile(HOSTILE / "zip" / name) as zf:
            assert zf.namelist()
    with zipfile.ZipFile(io.BytesIO((HOSTILE / "zip" / "overlap.pt").read_bytes())) as zf:
        assert zf.read("archive/data/1") == zf.read("archive/data/0")[-8:]


def test_loading_the_generator_leaves_fixtures_off_sys_path():
    """fixtures/ holds folders named torch/, keras/ and onnx/: on sys.path, a core-only install
    would import them as namespace packages for the frameworks it lacks, and every test that
    should skip would fail instead. The generator loads its sibling modules by path."""
    import importlib.util
    before = list(sys.path)
    spec = importlib.util.spec_from_file_location("gen_hostile_path_check",
                                                  FIXTURES / "gen_hostile.py")
    hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hostile)
    assert hostile.CATALOGUE and callable(hostile.build_runtime)
    assert sys.path == before
    assert not any(Path(p or ".").resolve() == FIXTURES for p in sys.path)
