"""The legacy (pre-zip) torch format: magic, sys_info, storage section located by seeking."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap_torch import legacy_format
from weightmap_torch.pickle_reader import Limits, StorageType


def test_magic_detection(fixture_path):
    assert legacy_format.looks_legacy(fixture_path("legacy.pt").read_bytes()[:64])
    assert not legacy_format.looks_legacy(fixture_path("cnn.pt").read_bytes()[:64])
    assert not legacy_format.looks_legacy(pickle.dumps(12345, protocol=2))


def test_records_hold_the_storage_bytes(fixture_path, torch_load):
    path = fixture_path("legacy.pt")
    root, records, byteorder = legacy_format.read_legacy(path, Limits(), False)
    assert byteorder == "little"
    raw = path.read_bytes()
    ref = torch_load(path)
    for name, tensor in root.items():
        rec = records[tensor.storage.key]
        # every record is preceded by its int64 element count
        count = int.from_bytes(raw[rec.offset - 8: rec.offset], "little")
        assert count * np.dtype(ref[name].dtype).itemsize == rec.nbytes
    conv = root["conv.weight"]
    rec = records[conv.storage.key]
    data = np.frombuffer(raw, "<f4", count=108, offset=rec.offset + conv.byte_offset)
    np.testing.assert_array_equal(data.reshape(4, 3, 3, 3), ref["conv.weight"])


def _legacy_bytes(main, keys, storages, magic=legacy_format.MAGIC_NUMBER, protocol=1001):
    parts = [pickle.dumps(magic, protocol=2), pickle.dumps(protocol, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
             main, pickle.dumps(keys, protocol=2)]
    return b"".join(parts) + b"".join(storages)


def _main_pickle(view=None):
    """{"w": _rebuild_tensor_v2(storage "k", 0, (2,), (1,))} with a legacy persistent id."""
    # written by hand: GLOBAL torch.FloatStorage inside the persistent id tuple
    pid = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00k"
           b"X\x03\x00\x00\x00cpuK\x04" + (b"N" if view is None else
                                            b"X\x01\x00\x00\x00vK\x01K\x02\x87") + b"tQ")
    return (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + pid +
            b"K\x00K\x02\x85K\x01\x85\x89)tRs.")


def test_hand_written_file_and_views(tmp_path, fixture_path):
    from weightmap_torch import ADAPTER
    storage = np.int64(4).tobytes() + np.arange(4, dtype="<f4").tobytes()
    path = tmp_path / "l.pt"
    path.write_bytes(_legacy_bytes(_main_pickle(), ["k"], [storage]))
    g = ADAPTER.read(path, "torch-legacy")
    np.testing.assert_array_equal(g.param("w").read(), [0.0, 1.0])
    path.write_bytes(_legacy_bytes(_main_pickle(view=True), ["k"], [storage]))
    g = ADAPTER.read(path, "torch-legacy")          # a storage view starting at element 1
    np.testing.assert_array_equal(g.param("w").read(), [1.0, 2.0])


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b.replace(np.int64(4).tobytes() + np.arange(4, dtype="<f4").tobytes()[:4],
                         np.int64(400).tobytes() + np.arange(4, dtype="<f4").tobytes()[:4]),
     "past the end of the file"),
    (lambda b: b[:-3], "past the end"),
])
def test_broken_storage_section(tmp_path, mutate, message):
    from weightmap_torch import ADAPTER
    storage = np.int64(4).tobytes() + np.arange(4, dtype="<f4").tobytes()
    path = tmp_path / "l.pt"
    path.write_bytes(mutate(_legacy_bytes(_main_pickle(), ["k"], [storage])))
    with pytest.raises(FormatError, match=message):
        ADAPTER.read(path, "torch-legacy")


def test_header_checks(tmp_path):
    storage = np.int64(4).tobytes() + np.arange(4, dtype="<f4").tobytes()
    cases = [(dict(magic=12), "magic number is wrong"), (dict(protocol=7), "protocol 7")]
    for kwargs, message in cases:
        path = tmp_path / "l.pt"
        path.write_bytes(_legacy_bytes(_main_pickle(), ["k"], [storage], **kwargs))
        with pytest.raises(FormatError, match=message):
            legacy_format.read_legacy(path, Limits(), False)
    path.write_bytes(_legacy_bytes(_main_pickle(), ["other"], [storage]))
    with pytest.raises(FormatError, match="nothing refers to it"):
        legacy_format.read_legacy(path, Limits(), False)
    path.write_bytes(_legacy_bytes(_main_pickle(), [], []))
    with pytest.raises(FormatError, match="have no data"):
        legacy_format.read_legacy(path, Limits(), False)


def test_persistent_id_checks(tmp_path):
    storages = legacy_format._Storages(tmp_path)
    float32 = StorageType("FloatStorage", "float32")
    half = StorageType("HalfStorage", "float16")
    ref = storages.persistent(("storage", float32, "k", "cpu", 4, ("v", 2, 2)))
    assert (ref.base_bytes, ref.nbytes) == (8, 8)
    with pytest.raises(FormatError, match="two dtypes"):
        storages.persistent(("storage", half, "k", "cpu", 4, None))
    with pytest.raises(FormatError, match="malformed storage view"):
        storages.persistent(("storage", float32, "k", "cpu", 4, ("v", -1, 2)))
    with pytest.raises(FormatError, match="unexpected persistent id"):
        storages.persistent(("blob", 1))
