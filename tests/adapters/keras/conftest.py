"""Shared helpers for the Keras adapter tests: fixture paths, spec tables, framework loaders.

Tests get the helpers through the ``kx`` fixture (pytest runs with --import-mode=importlib, so a
conftest is not importable as a module).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "keras"


def fixture(name: str) -> Path:
    path = FIXTURES / name
    assert path.is_file(), f"missing fixture {path}; run python fixtures/gen_keras.py"
    return path


def read(name_or_path, **options):
    from weightmap_keras import ADAPTER
    path = Path(name_or_path)
    if not path.is_absolute():
        path = fixture(str(name_or_path))
    fmt = ADAPTER.sniff(path, path.read_bytes()[:64])
    return ADAPTER.read(path, fmt, **options)


def specs(graph):
    """(layer, op, [(param, role, shape, axes)]) per layer: what the tests pin down."""
    return [(l.name, l.op, [(p.name, p.role, p.shape, p.axes) for p in l.params])
            for l in graph.layers]


def assert_same_arrays(pairs):
    """Every (graph param, expected array) pair: same shape, same bytes."""
    pairs = list(pairs)
    assert pairs
    for param, expected in pairs:
        got = param.read()
        assert got.shape == tuple(expected.shape), param.name
        np.testing.assert_array_equal(got, np.asarray(expected), err_msg=param.name)


# Blocks the frameworks in a fresh interpreter: proves the file readers need none of them.
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = ("tensorflow", "keras", "tf_keras", "torch", "jax")
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None
    sys.meta_path.insert(0, Refuse())
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters"),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, env=env, timeout=120)


@lru_cache(maxsize=1)
def gen_module():
    """fixtures/gen_keras.py, for its model builders (to load weights-only files)."""
    spec = importlib.util.spec_from_file_location("gen_keras", ROOT / "fixtures" / "gen_keras.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kx():
    return SimpleNamespace(ROOT=ROOT, FIXTURES=FIXTURES, fixture=fixture, read=read,
                           specs=specs, same=assert_same_arrays, run_blocked=run_blocked,
                           gen=gen_module)


@pytest.fixture(scope="session")
def keras3():
    return pytest.importorskip("keras")


@pytest.fixture(scope="session")
def tf_keras():
    return pytest.importorskip("tf_keras")


@pytest.fixture(scope="session")
def scale_layer(keras3):
    """The custom layer of k3_lambda.keras, registered under the same name to load it."""
    @keras3.saving.register_keras_serializable(package="wm")
    class Scale(keras3.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                         name="scale")

        def call(self, x):
            return x * self.scale
    return Scale


@pytest.fixture(scope="session")
def loaded(keras3, tf_keras, scale_layer):
    """Models loaded by their own library, once per session, by fixture name."""
    cache: dict[str, object] = {}

    def load(name: str):
        if name not in cache:
            path = str(fixture(name))
            if name.startswith("tfk_"):
                cache[name] = tf_keras.models.load_model(path, compile=False)
            else:
                cache[name] = keras3.saving.load_model(path, compile=False,
                                                       safe_mode=name != "k3_lambda.keras")
        return cache[name]
    return load
