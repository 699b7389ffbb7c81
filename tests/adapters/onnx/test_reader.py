import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from weightmap.errors import FormatError
from weightmap.graph import CallableData, MappedData
from weightmap_onnx.adapter import load_model
from weightmap_onnx.reader import build_graph

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "onnx"
OIKK = ("out", "in", "kh", "kw")


def _read(path: Path, **kw):
    return build_graph(load_model(path), source=str(path), model_path=path, folder=path.parent,
                       **kw)


def _spec(graph):
    return [(l.name, l.op, l.source_type,
             [(p.name, p.role, p.shape, p.dtype, p.axes, p.tied_to) for p in l.params])
            for l in graph.layers]


def _library_arrays(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path), load_external_data=True)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _check_data(graph, path, same_tensor, aliases=None):
    expected = _library_arrays(path)
    aliases = aliases or {}
    for p in graph.params():
        same_tensor(p.read(), expected[aliases.get(p.name.split("@")[0], p.name.split("@")[0])])


LEGACY_SPEC = [
    ("/features/features.0/Conv", "conv2d", "Conv", [
        ("onnx::Conv_25", "kernel", (8, 3, 3, 3), "float32", OIKK, None),
        ("onnx::Conv_26", "bias", (8,), "float32", ("out",), None)]),
    ("/fc1/Gemm", "dense", "Gemm", [
        ("fc1.weight", "kernel", (16, 128), "float32", ("out", "in"), None),
        ("fc1.bias", "bias", (16,), "float32", ("out",), None)]),
    ("/fc2/Gemm", "dense", "Gemm", [
        ("fc2.weight", "kernel", (16, 16), "float32", ("out", "in"), None),
        ("fc2.bias", "bias", (16,), "float32", ("out",), "fc1.bias")]),
    ("/fc3/Gemm", "dense", "Gemm", [
        ("fc3.weight", "kernel", (10, 16), "float32", ("out", "in"), None),
        ("fc3.bias", "bias", (10,), "float32", ("out",), None)]),
]


def test_legacy_cnn_specs_and_identity_alias(same_tensor):
    path = FIXTURES / "cnn_legacy.onnx"
    g = _read(path)
    assert (g.format, g.framework, g.order) == ("onnx", "onnx", "execution")
    assert _spec(g) == LEGACY_SPEC
    assert g.meta["aliases"] == {"fc2.bias": "fc1.bias"}
    assert g.meta["shared"] == {"fc1.bias": ["fc2.bias"]}
    assert g.meta["opset"] == {"ai.onnx": 20} and g.meta["shape_inference"] == "ok"
    assert g.meta["input_shape"] == [3, 8, 8]          # per sample: what a target is traced with
    assert dict(g.layer("/features/features.0/Conv").attrs) == {
        "node_index": 1, "op_type": "Conv", "kernel_shape": [3, 3], "strides": [1, 1],
        "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET",
        "in_channels": 3, "out_channels": 8, "module_hint": "features.0", "fed_by": ()}
    assert dict(g.layer("/fc1/Gemm").attrs) == {
        "node_index": 5, "op_type": "Gemm", "alpha": 1.0, "beta": 1.0, "transA": 0,
        "transB": 1, "in_features": 128, "out_features": 16, "module_hint": "fc1",
        "dense_input": "flatten", "flatten_input_shape": [8, 4, 4],
        "data_format": "channels_first", "fed_by": ("/features/features.0/Conv",)}
    assert g.layer("/fc3/Gemm").attrs["fed_by"] == ("/fc2/Gemm",)
    assert "flatten_input_shape" not in g.layer("/fc2/Gemm").attrs
    assert g.totals()["tensors"] == 7 and g.totals()["params"] == 8
    _check_data(g, path, same_tensor, aliases={"fc2.bias": "fc1.bias"})
    assert all(isinstance(p.data, CallableData) for p in g.params())


def test_external_copy_reads_the_same_specs_memory_mapped(same_tensor):
    path = FIXTURES / "external" / "model.onnx"
    g = _read(path)
    assert _spec(g) == LEGACY_SPEC
    assert g.meta["external_data"] == ["weights.bin"]
    for p in g.params():
        assert isinstance(p.data, MappedData)
        assert Path(p.data.path) == (FIXTURES / "external" / "weights.bin").resolve()
    _check_data(g, path, same_tensor, aliases={"fc2.bias": "fc1.bias"})
    legacy = {p.name: p.read() for p in _read(FIXTURES / "cnn_legacy.onnx").params()}
    for p in g.params():
        same_tensor(p.read(), legacy[p.name])


def test_external_bytes_are_read_only_when_asked(tmp_path):
    folder = Path(shutil.copytree(FIXTURES / "external", tmp_path / "m"))
    g = _read(folder / "model.onnx")
    w = g.param("fc3.bias")
    blob = bytearray((folder / "weights.bin").read_bytes())
    blob[w.data.offset:w.data.offset + 40] = np.arange(10, dtype=np.float32).tobytes()
    (folder / "weights.bin").write_bytes(bytes(blob))
    np.testing.assert_array_equal(w.read(), np.arange(10))


def test_dynamo_export_keeps_torch_names_and_external_data(same_tensor):
    path = FIXTURES / "cnn_dynamo" / "cnn.onnx"
    g = _read(path)
    assert [(l.name, l.op, [p.name for p in l.params]) for l in g.layers] == [
        ("node_Conv_12", "conv2d", ["features.0.weight", "features.0.bias"]),
        ("node_Gemm_13", "dense", ["fc1.weight"]),
        ("node_Gemm_14", "dense", ["fc2.weight"]),
        ("node_linear_2", "dense", ["fc3.weight", "fc3.bias"]),
        ("<unconsumed>", "opaque", ["val_12"]),
    ]
    conv = g.layer("node_Conv_12")
    # the optimizer fused the BatchNorm into the conv but kept the conv's names
    assert conv.attrs["rewrite_rule"] == "FuseBatchNormIntoConv"
    assert g.layer("node_Gemm_13").attrs["flatten_input_shape"] == [8, 4, 4]
    assert dict(g.layer("<unconsumed>").attrs) == {"shape_operands": ["val_12"], "unused": [],
                                                 "not_weights": True}
    assert g.meta["external_data"] == ["cnn.onnx.data"]
    assert isinstance(g.param("fc1.weight").data, MappedData)
    assert isinstance(g.param("fc3.bias").data, CallableData)      # small: stored inline
    _check_data(g, path, same_tensor)


def test_dynamo_and_legacy_exports_hold_the_same_fused_weights():
    legacy = _read(FIXTURES / "cnn_legacy.onnx")
    dynamo = _read(FIXTURES / "cnn_dynamo" / "cnn.onnx")
    np.testing.assert_allclose(dynamo.param("features.0.weight").read(),
                               legacy.param("onnx::Conv_25").read(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dynamo.param("fc1.weight").read(),
                                  legacy.param("fc1.weight").read())


def test_rnn_layers(same_tensor):
    path = FIXTURES / "rnn_legacy.onnx"
    g = _read(path)
    doa = ("dir", "out", "in")
    assert _spec(g) == [
        ("/embed/Gather", "embedding", "Gather", [
            ("embed.weight", "embeddings", (20, 6), "float32", ("vocab", "dim"), None)]),
        ("/lstm/LSTM", "lstm", "LSTM", [
            ("onnx::LSTM_288", "kernel", (2, 32, 6), "float32", doa, None),
            ("onnx::LSTM_289", "recurrent_kernel", (2, 32, 8), "float32", doa, None),
            ("onnx::LSTM_287", "bias", (2, 64), "float32", None, None)]),
        ("/gru/GRU", "gru", "GRU", [
            ("onnx::GRU_309", "kernel", (1, 24, 16), "float32", doa, None),
            ("onnx::GRU_310", "recurrent_kernel", (1, 24, 8), "float32", doa, None),
            ("onnx::GRU_311", "bias", (1, 48), "float32", None, None)]),
        ("/head/MatMul", "dense", "MatMul", [
            ("onnx::MatMul_313", "kernel", (8, 5), "float32", ("in", "out"), None),
            ("head.bias", "bias", (5,), "float32", ("out",), None)]),
    ]
    lstm, gru = g.layer("/lstm/LSTM").attrs, g.layer("/gru/GRU").attrs
    assert (lstm["hidden_size"], lstm["direction"], lstm["num_directions"],
            lstm["gate_order"]) == (8, "bidirectional", 2, "iofc")
    assert (gru["hidden_size"], gru["direction"], gru["linear_before_reset"],
            gru["gate_order"]) == (8, "forward", 1, "zrh")
    assert g.layer("/head/MatMul").attrs["bias_node"] == "/head/Add"
    assert [l.attrs["node_index"] for l in g.layers] == [0, 20, 34, 37]
    _check_data(g, path, same_tensor)


def test_ops_fixture_specs(same_tensor):
    path = FIXTURES / "ops.onnx"
    g = _read(path)
    c, o = ("c",), ("out",)
    f32 = "float32"
    assert _spec(g) == [
        ("dw", "depthwise_conv2d", "Conv", [("dw_w", "kernel", (4, 1, 3, 3), f32, OIKK, None),
                                            ("dw_b", "bias", (4,), f32, o, None)]),
        ("bn", "batchnorm", "BatchNormalization", [
            ("bn_g", "gamma", (4,), f32, c, None), ("bn_b", "beta", (4,), f32, c, None),
            ("bn_m", "moving_mean", (4,), f32, c, None),
            ("bn_v", "moving_var", (4,), f32, c, None)]),
        ("prelu", "prelu", "PRelu", [("prelu_slope", "alpha", (4, 1, 1), f32, None, None)]),
        ("up", "conv_transpose2d", "ConvTranspose", [
            ("ct_w", "kernel", (4, 2, 2, 2), f32, ("in", "out", "kh", "kw"), None),
            ("ct_b", "bias", (2,), f32, o, None)]),
        ("inorm", "instancenorm", "InstanceNormalization", [
            ("in_s", "gamma", (2,), f32, c, None), ("in_b", "beta", (2,), f32, c, None)]),
        ("gnorm", "groupnorm", "GroupNormalization", [
            ("gn_s", "gamma", (2,), f32, c, None), ("gn_b", "beta", (2,), f32, c, None)]),
        ("Cast_6", "opaque", "Cast", [("half_scale", "other", (2, 1, 1), "float16", None,
                                       None)]),
        ("gemm", "dense", "Gemm", [("gemm_b", "kernel", (512, 6), f32, ("in", "out"), None),
                                   ("gemm_c", "bias", (6,), f32, o, None)]),
        ("add_alias", "opaque", "Add", [("alias2", "other", (6,), f32, None, "gemm_c")]),
        ("mm1", "dense", "MatMul", [("shared_w", "kernel", (6, 6), f32, ("in", "out"), None),
                                    ("mm_bias", "bias", (6,), f32, o, None)]),
        ("mm2", "dense", "MatMul", [("shared_w@mm2", "kernel", (6, 6), f32, ("in", "out"),
                                     "shared_w")]),
        ("ln", "layernorm", "LayerNormalization", [
            ("ln_s", "gamma", (6,), f32, c, None), ("ln_b", "beta", (6,), f32, c, None)]),
        ("<unconsumed>", "opaque", "", [("flat_shape", "other", (2,), "int64", None, None),
                                        ("unused_t", "other", (3,), f32, None, None)]),
    ]
    attrs = {l.name: dict(l.attrs) for l in g.layers}
    assert attrs["dw"]["depth_multiplier"] == 1 and attrs["dw"]["group"] == 4
    assert (attrs["bn"]["epsilon"], attrs["bn"]["momentum"]) == (0.001, 0.99)
    assert attrs["up"]["strides"] == [2, 2]
    assert (attrs["gnorm"]["epsilon"], attrs["gnorm"]["num_groups"]) == (0.0001, 1)
    assert attrs["ln"] == {"node_index": 16, "op_type": "LayerNormalization", "epsilon": 1e-6,
                           "axis": -1, "stash_type": 1, "fed_by": ("mm2",)}
    gemm_fed_by = attrs["gemm"].pop("fed_by")
    assert attrs["gemm"] == {"node_index": 9, "op_type": "Gemm", "alpha": 0.5, "beta": 2.0,
                             "transA": 0, "transB": 0, "in_features": 512, "out_features": 6,
                             "dense_input": "flatten", "flatten_input_shape": [2, 16, 16],
                             "data_format": "channels_first"}
    assert gemm_fed_by and all(attrs[n]["node_index"] < 9 for n in gemm_fed_by)
    assert attrs["mm1"]["bias_node"] == "mm1_bias"
    assert attrs["<unconsumed>"] == {"shape_operands": ["flat_shape"], "unused": ["unused_t"],
                                      "not_weights": True}
    assert g.meta["aliases"] == {"alias1": "gemm_c", "alias2": "gemm_c"}
    assert g.meta["shared"] == {"gemm_c": ["alias2"], "shared_w": ["shared_w@mm2"]}
    _check_data(g, path, same_tensor, aliases={"alias2": "gemm_c"})


def test_shape_inference_can_be_switched_off():
    g = _read(FIXTURES / "cnn_legacy.onnx", shape_inference=False)
    assert g.meta["shape_inference"] == "off"
    assert "flatten_input_shape" not in g.layer("/fc1/Gemm").attrs


def test_channels_last_flatten_is_recognised(make_model, tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["t"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    model = make_model(nodes, {"w": np.zeros((24, 2), np.float32)})
    model.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 2, 3]))
    g = build_graph(model, source="m", model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert g.layers[0].attrs["flatten_input_shape"] == [2, 3, 4]
    assert g.layers[0].attrs["data_format"] == "channels_last"


@pytest.mark.parametrize("pool", ["GlobalAveragePool", "ReduceMean"])
def test_pooled_features_and_data_flow_through_a_residual_addition(make_model, tmp_path, pool):
    """A residual block (conv, then conv + the block input) pooled into a dense layer: what
    the dense layer reads and which layers feed which come from the graph."""
    k = np.zeros((4, 4, 3, 3), np.float32)
    pooling = helper.make_node("GlobalAveragePool", ["r"], ["p4"]) if pool != "ReduceMean" \
        else helper.make_node("ReduceMean", ["r", "axes"], ["p"], keepdims=0)
    nodes = [helper.make_node("Conv", ["x", "k1"], ["a"], "c1", pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["ra", "k2"], ["b"], "c2", pads=[1] * 4),
             helper.make_node("Add", ["b", "ra"], ["r"]), pooling]
    if pool != "ReduceMean":
        nodes.append(helper.make_node("Flatten", ["p4"], ["p"]))
    nodes.append(helper.make_node("Gemm", ["p", "w"], ["y"], "fc", transB=1))
    inits = {"k1": k, "k2": k, "w": np.zeros((2, 4), np.float32),
             "axes": np.array([2, 3], np.int64)}
    model = make_model(nodes, inits)
    model.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 5, 5]))
    g = build_graph(model, source="m", model_path=tmp_path / "m.onnx", folder=tmp_path)
    fc = g.layer("fc").attrs
    if pool == "ReduceMean":
        assert fc["dense_input"] == "pooled" and "flatten_input_shape" not in fc
    else:                                   # a flatten of a 1x1 map: no reordering either
        assert (fc["dense_input"], fc["flatten_input_shape"]) == ("flatten", [4, 1, 1])
    assert [g.layer(n).attrs["fed_by"] for n in ("c1", "c2", "fc")] == [
        (), ("c1",), ("c2", "c1")]


def test_unnamed_and_duplicate_node_names(make_model, tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["h2"], "mm"),
             helper.make_node("MatMul", ["h2", "w3"], ["y"], "mm")]
    model = make_model(nodes, {k: np.zeros((2, 2), np.float32) for k in ("w", "w2", "w3")})
    g = build_graph(model, source="m", model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert [l.name for l in g.layers] == ["MatMul_0", "mm", "mm#2"]


def test_duplicate_initializer_names_are_refused(make_model, tmp_path):
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                       {"w": np.zeros((2, 2), np.float32)})
    model.graph.initializer.append(model.graph.initializer[0])
    with pytest.raises(FormatError, match="two initializers share this name") as err:
        build_graph(model, source="m", model_path=tmp_path / "m.onnx", folder=tmp_path)
    assert err.value.tensor == "w"


def test_sparse_initializers_are_refused(make_model, tmp_path):
    model = make_model([], {})
    values = numpy_helper.from_array(np.array([1.0], np.float32), "sp")
    indices = numpy_helper.from_array(np.array([0], np.int64), "")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    with pytest.raises(FormatError, match="sparse initializers"):
        build_graph(model, source="m", model_path=tmp_path / "m.onnx", folder=tmp_path)
