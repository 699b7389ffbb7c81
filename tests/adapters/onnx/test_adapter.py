import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from weightmap.errors import FormatError, UnsafeInputError, UsageError
from weightmap.registry import BUILTIN, build
from weightmap_onnx import ADAPTER

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "onnx"


def test_registered_under_its_name():
    table = build({"onnx": BUILTIN["onnx"]}, [])
    assert table == {"onnx": ADAPTER} and ADAPTER.name == "onnx"


def test_import_does_not_pull_a_framework():
    code = ("import sys, weightmap_onnx; "
            "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), 'framework'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sniff(tmp_path):
    assert ADAPTER.sniff(FIXTURES / "ops.onnx", b"") == "onnx"
    assert ADAPTER.sniff(FIXTURES, b"") is None
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"x")
    assert ADAPTER.sniff(other, b"x") is None


def test_read_file():
    g = ADAPTER.read(FIXTURES / "rnn_legacy.onnx", "onnx")
    assert g.source == str(FIXTURES / "rnn_legacy.onnx")
    assert [l.op for l in g.layers] == ["embedding", "lstm", "gru", "dense"]
    with pytest.raises(UsageError, match="not 'safetensors'"):
        ADAPTER.read(FIXTURES / "ops.onnx", "safetensors")


@pytest.mark.parametrize("cut", [0, 7, 100, 5000])
def test_truncated_or_empty_files_are_format_errors(tmp_path, cut):
    path = tmp_path / "cut.onnx"
    path.write_bytes((FIXTURES / "cnn_legacy.onnx").read_bytes()[:cut])
    with pytest.raises(FormatError) as err:
        ADAPTER.read(path)
    assert str(path) in str(err.value)


def test_random_bytes_are_a_format_error(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(FormatError):
        ADAPTER.read(path)


def _external_copy(tmp_path: Path, location: str) -> Path:
    folder = Path(shutil.copytree(FIXTURES / "external", tmp_path / "m"))
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder / "model.onnx"


@pytest.mark.parametrize("location", ["../weights.bin", "/tmp/weights.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    shutil.copy(FIXTURES / "external" / "weights.bin", tmp_path / "weights.bin")
    path = _external_copy(tmp_path, location)
    with pytest.raises(UnsafeInputError) as err:
        ADAPTER.read(path)
    assert str(path) in str(err.value) and location in str(err.value)


def test_external_data_missing_is_named(tmp_path):
    path = _external_copy(tmp_path, "other.bin")
    with pytest.raises(FormatError, match="'other.bin' is missing") as err:
        ADAPTER.read(path)
    assert str(path) in str(err.value)


def test_truncated_external_data_is_refused(tmp_path):
    path = _external_copy(tmp_path, "weights.bin")
    blob = path.parent / "weights.bin"
    blob.write_bytes(blob.read_bytes()[:-100])
    with pytest.raises(FormatError, match="reach beyond the end of 'weights.bin'"):
        ADAPTER.read(path)


def test_accepts_model_protos_only():
    model = onnx.load(str(FIXTURES / "ops.onnx"))
    assert ADAPTER.accepts(model)
    assert not ADAPTER.accepts(model.graph)
    assert not ADAPTER.accepts({"w": np.zeros(2)})


def test_read_live_with_and_without_base_dir():
    model = onnx.load(str(FIXTURES / "external" / "model.onnx"), load_external_data=False)
    with pytest.raises(UsageError, match="base_dir"):
        ADAPTER.read_live(model)
    g = ADAPTER.read_live(model, origin="my model", base_dir=FIXTURES / "external")
    assert g.source == "my model"
    file_graph = ADAPTER.read(FIXTURES / "external" / "model.onnx")
    assert [p.describe() for p in g.params()] == [p.describe() for p in file_graph.params()]
    np.testing.assert_array_equal(g.param("fc1.weight").read(),
                                  file_graph.param("fc1.weight").read())


def test_read_live_of_an_empty_proto_is_refused():
    with pytest.raises(FormatError, match="no ir_version"):
        ADAPTER.read_live(onnx.ModelProto())
