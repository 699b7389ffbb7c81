"""A framework weightmap's core has never heard of, installed as a package would be: the toy
adapter (``toyfmt/``: numpy models, a ``.toy`` file format, channels-last kernels, LSTM gates
o i c f, one summed bias) registered through a real ``weightmap.adapters`` entry point. Read,
written, loaded into and matched against real torch and Keras models, judged by what the ported
models compute (``toy_checks.py``), with no change to the core.

The distribution (the package and its ``toyfmt-0.0.dist-info`` with ``entry_points.txt``) is
built in a temporary folder; the checks run in a process with that folder on ``sys.path``, so
``importlib.metadata`` finds the entry point exactly as it finds an installed one. torch and
Keras run in separate processes (importing both in one has crashed some torch builds)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _distribution(root: Path) -> Path:
    dist = root / "site"
    shutil.copytree(HERE / "toyfmt", dist / "toyfmt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = dist / "toyfmt-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyfmt\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[weightmap.adapters]\ntoy = toyfmt:ADAPTER\n")
    return dist


def _run_checks(which: str, tmp_path: Path) -> str:
    dist = _distribution(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(dist)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(HERE / "toy_checks.py"), which, str(work)],
                          env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def test_toy_framework_against_torch_models(tmp_path):
    pytest.importorskip("torch")
    out = _run_checks("torch", tmp_path)
    for what in ("torch CNN -> toy file", "torch LSTM -> toy file", "toy file -> torch Net",
                 "toy file -> torch Seq", "net.pt loaded into a live toy model",
                 "seq.pt loaded into a live toy model"):
        assert f"{what}: same outputs" in out


def test_toy_framework_against_keras_models(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    out = _run_checks("keras", tmp_path)
    for what in ("Keras cnn -> toy file", "toy file -> live Keras cnn", "Keras rnn -> toy file",
                 "toy file -> live Keras rnn"):
        assert f"{what}: same outputs" in out


def test_without_the_entry_point_nobody_knows_the_toy_format(tmp_path):
    """The control: the same toy file is not a format weightmap reads when the distribution
    is not on the path (the core holds nothing of it)."""
    from weightmap import read
    from weightmap.errors import UnknownFormatError

    sys.path.insert(0, str(HERE))
    try:
        import toyfmt
        toyfmt.save(toyfmt.cnn(seed=0), tmp_path / "m.toy")
    finally:
        sys.path.remove(str(HERE))
        sys.modules.pop("toyfmt", None)
    with pytest.raises(UnknownFormatError):
        read(tmp_path / "m.toy")
