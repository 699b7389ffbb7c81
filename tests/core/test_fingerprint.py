import hashlib
import json
import os

from weightmap.io.fingerprint import fingerprint, source_files, stat


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_one_file(tmp_path):
    f = tmp_path / "a.pt"
    f.write_bytes(b"abc")
    os.utime(f, ns=(1, 1_700_000_000_123_456_789))
    assert fingerprint(f) == {"size": 3, "mtime_ns": 1_700_000_000_123_456_789}
    assert fingerprint(f, digest=True)["sha256"] == _sha(b"abc")
    assert fingerprint(f"{f}") == fingerprint(f)


def test_a_model_file_named_with_its_object(tmp_path):
    f = tmp_path / "model.py"
    f.write_text("model = None\n")
    assert fingerprint(f"{f}:net", digest=True)["sha256"] == _sha(b"model = None\n")


def test_an_index_counts_its_shards_and_a_folder_its_files(tmp_path):
    (tmp_path / "m-1.safetensors").write_bytes(b"one")
    (tmp_path / "m-2.safetensors").write_bytes(b"three")
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors",
                                                "c": "m-2.safetensors"}}))
    assert [p.name for p in source_files(index)] == [index.name, "m-1.safetensors",
                                                     "m-2.safetensors"]
    got = fingerprint(index, digest=True)
    assert got["size"] == index.stat().st_size + 8
    lines = "".join(f"{p.name} {_sha(p.read_bytes())}\n" for p in source_files(index))
    assert got["sha256"] == _sha(lines.encode())
    assert [p.name for p in source_files(tmp_path)] == sorted(p.name for p in
                                                              tmp_path.iterdir())
    assert stat(tmp_path)["size"] == sum(p.stat().st_size for p in tmp_path.iterdir())


def test_a_content_change_of_the_same_size_changes_the_digest(tmp_path):
    f = tmp_path / "a.safetensors"
    f.write_bytes(b"abcd")
    before = fingerprint(f, digest=True)
    f.write_bytes(b"abce")
    after = fingerprint(f, digest=True)
    assert before["size"] == after["size"] and before["sha256"] != after["sha256"]


def test_nothing_for_what_is_no_file(tmp_path):
    assert fingerprint(tmp_path / "missing.pt") == {}
    assert fingerprint(None) == {}
