"""HDF5 access: zip member windows, Keras' attribute conventions, lazy dataset handles."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import ml_dtypes
import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap.graph import CallableData, MappedData
from weightmap_keras.h5io import (Location, _Window, dataset_spec, decode, load_attr,
                                  load_json_attr, member_data_offset, open_h5,
                                  stored_member_offset)


def test_window_reads_and_seeks_inside_its_bounds():
    fh = io.BytesIO(b"0123456789abcdef")
    win = _Window(fh, 4, 8)                        # "456789ab"
    assert win.read(3) == b"456" and win.tell() == 3
    win.seek(-2, 2)
    assert win.read() == b"ab"
    win.seek(1)
    win.seek(2, 1)
    assert win.read(100) == b"789ab"
    assert win.read(1) == b""


def test_member_offsets_of_stored_and_deflated_zips(tmp_path):
    payload = b"x" * 100
    stored, deflated = tmp_path / "s.zip", tmp_path / "d.zip"
    for path, method in ((stored, zipfile.ZIP_STORED), (deflated, zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(path, "w", method) as z:
            z.writestr("first.txt", b"abc")
            z.writestr("member.bin", payload)
    offset = stored_member_offset(str(stored), "member.bin")
    assert stored.read_bytes()[offset:offset + 100] == payload
    assert stored_member_offset(str(deflated), "member.bin") is None
    with open(stored, "rb") as fh, zipfile.ZipFile(fh) as z:
        assert member_data_offset(fh, z.getinfo("member.bin")) == offset


def test_attribute_decoding_and_chunks(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.attrs["plain"] = b"text"
        f.attrs["names0"] = np.array([b"a", b"b"])
        f.attrs["names1"] = np.array([b"c"])
        f.attrs["cfg"] = '{"k": [1, 2]}'
        f.attrs["broken"] = "{"
    with h5py.File(path) as f:
        assert load_attr(f, "plain") == "text"
        assert load_attr(f, "names") == ["a", "b", "c"]
        assert load_attr(f, "absent") is None
        assert load_json_attr(f, "cfg", "a.h5") == {"k": [1, 2]}
        with pytest.raises(FormatError, match="not valid JSON"):
            load_json_attr(f, "broken", "a.h5")
    assert decode(np.array([b"x", b"y"])) == ["x", "y"]


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, (arr, kwargs) in datasets.items():
            ds = f.create_dataset(name, data=arr, **kwargs)
            if arr.dtype == ml_dtypes.bfloat16:
                ds.attrs["dtype"] = "bfloat16"


def test_dataset_specs_map_raw_data_and_read_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((3, 4)).astype("<f4")
    big = rng.standard_normal((5,)).astype(">f8")
    comp = rng.standard_normal((64, 8)).astype("f4")
    bf = rng.standard_normal((6,)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "d.h5"
    _write(path, raw=(raw, {}), big=(big, {}), comp=(comp, {"compression": "gzip",
                                                            "chunks": (8, 8)}),
           bf=(bf, {}), empty=(np.zeros((0, 3), "f4"), {}))
    loc = Location(str(path))
    with h5py.File(path) as f:
        specs = {k: dataset_spec(f[k], loc, 0) for k in ("raw", "big", "comp", "bf", "empty")}
    assert isinstance(specs["raw"].data, MappedData)
    assert (specs["raw"].shape, specs["raw"].dtype) == ((3, 4), "float32")
    assert isinstance(specs["big"].data, CallableData) and specs["big"].dtype == "float64"
    assert isinstance(specs["comp"].data, CallableData)
    assert specs["bf"].dtype == "bfloat16" and isinstance(specs["bf"].data, MappedData)
    assert specs["empty"].shape == (0, 3)
    for key, expected in (("raw", raw), ("big", big), ("comp", comp), ("bf", bf),
                          ("empty", np.zeros((0, 3), "f4"))):
        got = specs[key].data.read()
        assert got.dtype == np.dtype(expected.dtype).newbyteorder("<") or key == "bf"
        np.testing.assert_array_equal(got.astype("f8"), expected.astype("f8"))


def test_unmappable_base_reads_through_h5py(tmp_path):
    arr = np.arange(6, dtype="f4").reshape(2, 3)
    path = tmp_path / "m.h5"
    _write(path, w=(arr, {}))
    with h5py.File(path) as f:
        spec = dataset_spec(f["w"], Location(str(path)), None)
    assert isinstance(spec.data, CallableData)
    np.testing.assert_array_equal(spec.data.read(), arr)


def test_lazy_read_of_a_file_gone_bad_is_a_format_error(tmp_path):
    arr = np.arange(64 * 8, dtype="f4").reshape(64, 8)
    path = tmp_path / "c.h5"
    _write(path, w=(arr, {"compression": "gzip", "chunks": (8, 8)}))
    with h5py.File(path) as f:
        spec = dataset_spec(f["w"], Location(str(path)), 0)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(FormatError, match="cannot read dataset"):
        spec.data.read()


def test_open_h5_inside_a_zip_member(tmp_path):
    arr = np.arange(5, dtype="f4")
    inner = tmp_path / "inner.h5"
    _write(inner, w=(arr, {}))
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        outer = tmp_path / f"outer{method}.zip"
        with zipfile.ZipFile(outer, "w", method) as z:
            z.writestr("pad.txt", b"p" * 37)
            z.write(inner, "model.weights.h5")
        loc = Location(str(outer), "model.weights.h5")
        with open_h5(loc) as f:
            base = stored_member_offset(str(outer), "model.weights.h5")
            spec = dataset_spec(f["w"], loc, base)
        assert isinstance(spec.data, MappedData if method == zipfile.ZIP_STORED else CallableData)
        np.testing.assert_array_equal(spec.data.read(), arr)


def test_a_weight_name_leading_to_a_group_is_a_clear_format_error(tmp_path):
    from weightmap.reading.read import read
    path = tmp_path / "grp.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.21.0"
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g.create_group("dense").create_group("kernel:0")
    with pytest.raises(FormatError, match="'/dense/dense/kernel:0' is an HDF5 group, not a "
                                          "dataset") as caught:
        read(str(path))
    assert caught.value.path == str(path)


def test_a_deflated_member_is_inflated_once_for_the_graph_and_every_tensor(tmp_path,
                                                                            monkeypatch):
    """h5py seeks back and forth; through zipfile's stream each backward seek inflated the
    member again from its start (a 1 MB member: minutes for a port). Now it is inflated once
    and read from memory, for the graph and for every tensor read after."""
    import importlib.util

    import weightmap
    spec = importlib.util.spec_from_file_location(
        "gen_hostile", Path(__file__).resolve().parents[3] / "fixtures" / "gen_hostile.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    path = tmp_path / "m.keras"
    gen.deflated_keras(path, layers=20, wide=64)
    inflations = []
    real = zipfile._get_decompressor
    monkeypatch.setattr(zipfile, "_get_decompressor",
                        lambda kind: inflations.append(kind) or real(kind))
    graph = weightmap.read(str(path))
    values = {p.name: p.read() for p in graph.params()}
    assert len(values) == 42 and values["layers/dense_5/vars/0"].shape == (3, 3)
    assert inflations.count(zipfile.ZIP_DEFLATED) == 1


def test_chunks_larger_than_their_dataset_are_refused(tmp_path):
    from weightmap_keras.h5io import check_dataset
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ok = f.create_dataset("ok", data=np.zeros((4, 3), "f4"), chunks=(2, 3),
                              compression="gzip")
        check_dataset(ok, "c.h5")
        big = f.create_dataset("big", data=np.zeros((4, 3), "f4"), maxshape=(None, None),
                               chunks=(64, 64), compression="gzip")
        with pytest.raises(FormatError, match=r"chunks of \(64, 64\), larger than the dataset"):
            check_dataset(big, "c.h5")
