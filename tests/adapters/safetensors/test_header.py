import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightmap.errors import FormatError
from weightmap_safetensors.header import parse_json_object, read_header

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "safetensors"
F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def test_fixture_header_lists_tensors_by_offset():
    h = read_header(FIXTURES / "tiny_hf.safetensors")
    names = [r.name for r in h.records]
    # the safetensors library writes by dtype (int64, float32, bfloat16, float16), then name
    assert names == [
        "bn.num_batches_tracked",
        "bn.bias", "bn.running_mean", "bn.running_var", "bn.weight", "conv.bias", "conv.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.mlp.fc1.bias",
        "model.layers.0.mlp.fc1.weight", "model.layers.0.mlp.fc2.weight", "model.norm.weight",
        "lm_head.weight", "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_proj.weight",
    ]
    by_name = {r.name: r for r in h.records}
    assert by_name["bn.num_batches_tracked"].dtype == "int64"
    assert by_name["bn.num_batches_tracked"].shape == ()
    assert by_name["conv.weight"].shape == (4, 3, 3, 3)
    assert by_name["lm_head.weight"].dtype == "bfloat16"
    assert by_name["model.layers.0.self_attn.q_proj.weight"].dtype == "float16"
    assert h.metadata == {"format": "pt", "producer": "weightmap fixtures"}
    begins = [r.begin for r in h.records]
    assert begins == sorted(begins) and begins[0] == h.data_start
    assert h.records[-1].end == (FIXTURES / "tiny_hf.safetensors").stat().st_size


def test_offsets_are_absolute_and_spans_exact(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"a": np.zeros((2, 3), np.float16), "b": np.zeros(5, np.int8)}, str(path))
    h = read_header(path)
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert h.data_start == 8 + length
    spans = {r.name: (r.begin - h.data_start, r.end - h.data_start) for r in h.records}
    assert spans == {"a": (0, 12), "b": (12, 17)}


def test_empty_tensors_may_share_an_offset(tmp_path, write_raw):
    header = {"e1": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
              "e2": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "x": F32_2}
    h = read_header(write_raw(tmp_path / "e.safetensors", header, b"\0" * 8))
    assert [r.name for r in h.records] == ["e1", "e2", "x"]


@pytest.mark.parametrize("raw, message", [
    (b"\x01\x02\x03", "fewer than the 8-byte"),
    (struct.pack("<Q", 1000) + b"{}", "beyond the end of the file"),
])
def test_short_or_overlong_length_is_refused(tmp_path, raw, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(FormatError, match=message) as err:
        read_header(path)
    assert str(path) in str(err.value)


def test_header_cap_is_configurable(tmp_path, write_raw):
    path = write_raw(tmp_path / "a.safetensors", {"x": F32_2}, b"\0" * 8)
    read_header(path)
    with pytest.raises(FormatError, match="exceeds the cap of 16 bytes"):
        read_header(path, max_header_bytes=16)


@pytest.mark.parametrize("raw, message", [
    (b'{"x": \xff}', "not valid UTF-8"),
    (b'[1, 2]', "must be a JSON object"),
    (b'{"x": ', "not valid JSON"),
    (b'{"x": NaN}', "not valid JSON"),
])
def test_malformed_json_is_refused(tmp_path, raw, message, write_raw):
    path = write_raw(tmp_path / "bad.safetensors", header_bytes=raw)
    with pytest.raises(FormatError, match=message) as err:
        read_header(path)
    assert str(path) in str(err.value)


def test_duplicate_tensor_key_is_refused(tmp_path, write_raw):
    raw = (b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
           b'"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}')
    path = write_raw(tmp_path / "dup.safetensors", header_bytes=raw, data=b"\0" * 16)
    with pytest.raises(FormatError, match="names 'x' twice") as err:
        read_header(path)
    assert err.value.tensor == "x" and str(path) in str(err.value)


def test_duplicate_key_inside_metadata_is_refused(tmp_path, write_raw):
    raw = b'{"__metadata__": {"a": "1", "a": "2"}}'
    with pytest.raises(FormatError, match="names 'a' twice"):
        read_header(write_raw(tmp_path / "dup.safetensors", header_bytes=raw))


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}, "unknown dtype 'F33'"),
    ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, "non-negative integers"),
    ({"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}, "non-negative integers"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, "begin <= end"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0]}, "begin <= end"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "needs 12"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "beyond the end of the file"),
    ("not an object", "must be an object"),
])
def test_bad_entries_are_refused_naming_the_tensor(tmp_path, entry, message, write_raw):
    path = write_raw(tmp_path / "bad.safetensors", {"w": entry}, b"\0" * 8)
    with pytest.raises(FormatError, match=message) as err:
        read_header(path)
    assert err.value.tensor == "w" and str(path) in str(err.value)


def test_truncated_data_area_names_the_tensor(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FormatError, match="truncated") as err:
        read_header(path)
    assert err.value.tensor == "b"


def test_overlapping_offsets_are_refused(tmp_path, write_raw):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    path = write_raw(tmp_path / "o.safetensors", header, b"\0" * 12)
    with pytest.raises(FormatError, match="overlap those of 'a'") as err:
        read_header(path)
    assert err.value.tensor == "b"


def test_metadata_must_map_strings_to_strings(tmp_path, write_raw):
    path = write_raw(tmp_path / "m.safetensors", {"__metadata__": {"n": 3}})
    with pytest.raises(FormatError, match="__metadata__ must map strings to strings"):
        read_header(path)


def test_parse_json_object_keeps_nested_values(tmp_path):
    obj = parse_json_object(json.dumps({"a": {"b": [1, 2]}}).encode(), path=tmp_path,
                            what="x")
    assert obj == {"a": {"b": [1, 2]}}
