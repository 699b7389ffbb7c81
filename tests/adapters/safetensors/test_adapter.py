import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from weightmap.errors import FormatError, UsageError
from weightmap.registry import BUILTIN, build
from weightmap_safetensors import ADAPTER
from weightmap_safetensors.adapter import looks_like_safetensors

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "safetensors"


def _head(path: Path) -> bytes:
    return path.read_bytes()[:64] if path.is_file() else b""


def test_registered_under_its_name():
    table = build({"safetensors": BUILTIN["safetensors"]}, [])
    assert table == {"safetensors": ADAPTER} and ADAPTER.name == "safetensors"


def test_import_does_not_pull_a_framework():
    code = ("import sys, weightmap_safetensors; "
            "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), 'framework'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("rel, fmt", [
    ("tiny_hf.safetensors", "safetensors"),
    ("sharded/model.safetensors.index.json", "safetensors-sharded"),
    ("sharded", "safetensors-sharded"),
    ("sharded/model-00001-of-00002.safetensors", "safetensors"),
])
def test_sniff_fixtures(rel, fmt):
    path = FIXTURES / rel
    assert ADAPTER.sniff(path, _head(path)) == fmt


def test_sniff_by_content_without_extension(tmp_path):
    path = Path(shutil.copy(FIXTURES / "tiny_hf.safetensors", tmp_path / "weights"))
    assert ADAPTER.sniff(path, _head(path)) == "safetensors"
    assert len(list(ADAPTER.read(path).params())) == 16


def test_sniff_refuses_other_files(tmp_path):
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x08\x09\x12\x07pytorch" + b"\0" * 60)
    assert ADAPTER.sniff(other, _head(other)) is None
    assert ADAPTER.sniff(tmp_path, b"") is None          # a folder without safetensors files
    short = tmp_path / "x"
    short.write_bytes(b"\x05\0\0\0\0\0\0\0{")             # length beyond the file
    assert not looks_like_safetensors(short, _head(short))


def test_broken_file_with_the_extension_is_claimed_then_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"garbage!")
    assert ADAPTER.sniff(path, _head(path)) == "safetensors"
    with pytest.raises(FormatError) as err:
        ADAPTER.read(path, "safetensors")
    assert str(path) in str(err.value)


def test_read_dispatches_on_format():
    g = ADAPTER.read(FIXTURES / "sharded", "safetensors-sharded")
    assert g.format == "safetensors-sharded"
    g = ADAPTER.read(FIXTURES / "tiny_hf.safetensors")
    assert g.format == "safetensors"
    with pytest.raises(UsageError, match="not 'onnx'"):
        ADAPTER.read(FIXTURES / "tiny_hf.safetensors", "onnx")


def test_header_cap_option_reaches_the_reader():
    with pytest.raises(FormatError, match="exceeds the cap"):
        ADAPTER.read(FIXTURES / "tiny_hf.safetensors", max_header_bytes=64)
