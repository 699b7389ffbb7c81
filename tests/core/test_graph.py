import json

import numpy as np
import pytest

from weightmap.errors import FormatError, WeightmapError
from weightmap.graph import ArrayData, Layer, MappedData, Param, ParamGraph


def _param(name="l.weight", shape=(2, 3), data=None, **kw):
    return Param(name=name, role=kw.pop("role", "kernel"), shape=shape,
                 dtype=kw.pop("dtype", "float32"), axes=kw.pop("axes", ("out", "in")),
                 data=data, **kw)


def test_param_rejects_axes_that_do_not_fit_shape():
    with pytest.raises(WeightmapError, match="axes"):
        _param(axes=("out",))


def test_param_rejects_unknown_role():
    with pytest.raises(WeightmapError, match="role"):
        _param(role="weights")


def test_layer_rejects_unknown_op():
    with pytest.raises(WeightmapError, match="op kind"):
        Layer(name="x", op="convolution")


def test_graph_refuses_duplicate_param_names():
    a = Layer("a", "dense", (_param("w"),))
    b = Layer("b", "dense", (_param("w"),))
    with pytest.raises(FormatError, match="twice"):
        ParamGraph("arrays", "torch", "mem", (a, b))


def test_read_checks_shape_against_spec():
    p = _param(shape=(2, 3), data=ArrayData(np.zeros((3, 2), np.float32)))
    with pytest.raises(FormatError, match="shape"):
        p.read()


def test_mapped_data_reads_exact_bytes_lazily(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    f = tmp_path / "blob"
    f.write_bytes(b"HEADER!!" + arr.tobytes() + b"tail")
    data = MappedData(str(f), 8, (3, 4), "float32", span=48)
    out = data.read()
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable


def test_mapped_data_refuses_truncated_file(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"\0" * 20)
    with pytest.raises(FormatError, match="truncated"):
        MappedData(str(f), 8, (3, 4), "float32").read()


def test_mapped_data_refuses_span_smaller_than_shape(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"\0" * 100)
    with pytest.raises(FormatError, match="record holds"):
        MappedData(str(f), 0, (3, 4), "float32", span=40).read()


def test_bfloat16_round_trips_through_mapped_data(tmp_path):
    import ml_dtypes
    arr = np.array([1.5, -2.25, 3e38], dtype=ml_dtypes.bfloat16)
    f = tmp_path / "bf"
    f.write_bytes(arr.tobytes())
    out = MappedData(str(f), 0, (3,), "bfloat16").read()
    assert out.tobytes() == arr.tobytes()


def test_describe_is_json_and_totals_skip_tied():
    w = _param("emb.weight", shape=(10, 4), role="embeddings", axes=("vocab", "dim"))
    tied = _param("head.weight", shape=(10, 4), tied_to="emb.weight")
    g = ParamGraph("arrays", "torch", "mem", (Layer("emb", "embedding", (w,)),
                                              Layer("head", "dense", (tied,))),
                   meta={"prefixes": ["module."]})
    d = json.loads(json.dumps(g.describe()))
    assert d["totals"] == {"layers": 2, "params": 2, "tensors": 1, "elements": 40, "bytes": 160,
                           "dtypes": {"float32": 40}}
    assert d["layers"][1]["params"][0]["tied_to"] == "emb.weight"
    assert g.param("head.weight").tied_to == "emb.weight"
    assert g.layer("emb").param("embeddings") is w


def test_span_chunks_reads_a_span_in_full_chunks_and_names_a_short_file(tmp_path):
    from weightmap.io.spans import span_chunks
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(100)))
    buffer = memoryview(bytearray(16))
    parts = [bytes(p) for p in span_chunks(str(path), 10, 50, buffer)]
    assert [len(p) for p in parts] == [16, 16, 16, 2] and b"".join(parts) == bytes(range(10, 60))
    with pytest.raises(FormatError, match="record 'x' ends early.*truncated"):
        list(span_chunks(str(path), 90, 50, buffer, what="record 'x'"))


def test_stored_nbytes_checks_the_record_and_the_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * 40)
    assert MappedData(str(path), 8, (2, 4), "float32", span=32).stored_nbytes() == 32
    with pytest.raises(FormatError, match="its record holds 16"):
        MappedData(str(path), 8, (2, 4), "float32", span=16).stored_nbytes()
    with pytest.raises(FormatError, match="truncated"):
        MappedData(str(path), 16, (2, 4), "float32").stored_nbytes()
