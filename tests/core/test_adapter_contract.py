"""The adapter contract, checked for every registered adapter on every committed fixture."""
from pathlib import Path

import pytest

from weightmap import registry
from weightmap.errors import WeightmapError
from weightmap.graph import ParamGraph
from weightmap.reading.read import HEAD_BYTES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
EXPECTED = {"torch": "torch", "safetensors": "safetensors", "keras": "keras", "onnx": "onnx",
            "examples": "keras"}
REFUSED = {"malicious_exec.pt", "malicious_system.pt", "scripted.pt", "full_model.pt"}


def _fixtures():
    for folder, owner in EXPECTED.items():
        for f in sorted((FIXTURES / folder).iterdir()):
            if f.suffix == ".py" or f.name.endswith((".bin.data", ".data")):
                continue
            if f.is_dir() and folder == "onnx":
                f = next(f.glob("*.onnx"))
            yield pytest.param(f, owner, id=f"{folder}/{f.name}")


ADAPTERS = sorted(registry.adapters().items())


@pytest.mark.parametrize("name,adapter", ADAPTERS, ids=[n for n, _ in ADAPTERS])
def test_adapter_shape(name, adapter):
    assert adapter.name == name
    assert callable(getattr(adapter, "sniff", None)) and callable(getattr(adapter, "read", None))
    if hasattr(adapter, "accepts"):
        assert callable(adapter.read_live)
        assert adapter.accepts(object()) is False and adapter.accepts({"a": 1}) is False


@pytest.mark.parametrize("name,adapter", ADAPTERS, ids=[n for n, _ in ADAPTERS])
def test_adapters_do_not_claim_other_files(name, adapter, tmp_path):
    for data in (b"", b"hello world\n", b"\x00" * 64, b"{}"):
        f = tmp_path / "x.bin"
        f.write_bytes(data)
        assert adapter.sniff(f, data[:HEAD_BYTES]) is None


@pytest.mark.parametrize("path,owner", list(_fixtures()))
def test_each_fixture_is_claimed_by_exactly_one_adapter_and_reads(path, owner):
    head = path.read_bytes()[:HEAD_BYTES] if path.is_file() else b""
    claims = [n for n, a in registry.adapters().items() if a.sniff(path, head)]
    assert claims == [owner]
    adapter = registry.get(owner)
    fmt = adapter.sniff(path, head)
    if path.name in REFUSED:
        with pytest.raises(WeightmapError):
            adapter.read(path, fmt)
        return
    graph = adapter.read(path, fmt)
    assert isinstance(graph, ParamGraph) and graph.layers
    assert graph.framework in ("torch", "keras", "onnx")


@pytest.mark.parametrize("name,adapter", ADAPTERS, ids=[n for n, _ in ADAPTERS])
def test_adapters_offer_runners(name, adapter):
    """Each adapter runs (or says it cannot run) what it reads, and what it accepts live."""
    assert callable(getattr(adapter, "run_file", None))
    if hasattr(adapter, "accepts"):
        assert callable(getattr(adapter, "run_live", None))


@pytest.mark.parametrize("path,owner", list(_fixtures()))
def test_each_fixture_either_runs_or_says_why_not(path, owner):
    """A runner of the model the file describes, or a VerifyError saying why there is none (a
    checkpoint without architecture, a config carrying code) — never another failure."""
    from weightmap.equivalence.runner import Runner
    from weightmap.errors import MissingDependencyError, VerifyError
    if path.name in REFUSED:
        return
    adapter = registry.get(owner)
    fmt = adapter.sniff(path, path.read_bytes()[:HEAD_BYTES] if path.is_file() else b"")
    graph = adapter.read(path, fmt)
    try:
        runner = adapter.run_file(path, fmt, graph=graph)
    except MissingDependencyError as exc:       # a core-only install: the framework is absent
        pytest.skip(exc.message)
    except VerifyError as exc:
        assert exc.message and "\n" not in str(exc)
        return
    assert isinstance(runner, Runner) and runner.framework == graph.framework
    assert all(spec.origin for spec in runner.inputs())
    runner.close()
