import numpy as np
import onnx
from onnx import StringStringEntryProto, helper

from weightmap_onnx.graphinfo import infer_shapes, module_hint, node_attrs, rewrite_rule

W = np.ones((2, 2), np.float32)


def test_identity_chains_alias_the_initializer(make_model, make_info):
    nodes = [helper.make_node("Identity", ["w"], ["w_dup"]),
             helper.make_node("Identity", ["w_dup"], ["w_dup2"]),
             helper.make_node("Identity", ["x"], ["x2"]),           # activation, not an alias
             helper.make_node("MatMul", ["x2", "w_dup2"], ["y"])]
    info = make_info(make_model(nodes, {"w": W}))
    assert info.aliases == {"w_dup": "w", "w_dup2": "w"}
    assert info.alias_nodes == {0, 1}
    assert info.root("w_dup2") == "w" and info.root("x2") is None
    assert info.weight("w_dup2") is info.inits["w"]
    assert info.weight("") is None


def test_producers_consumers_and_outputs(make_model, make_info):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "h"], ["y"])]
    info = make_info(make_model(nodes, {"w": W}))
    assert info.producers == {"h": 0, "y": 1}
    assert info.consumers == {"x": [(0, 0)], "w": [(0, 1)], "h": [(1, 0), (1, 1)]}
    assert info.graph_outputs == {"y"}


def test_infer_shapes_reports_dims_and_unknowns(make_model):
    model = make_model([helper.make_node("Flatten", ["x"], ["y"])], {})
    model.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 4, 5]))
    shapes, note = infer_shapes(model)
    assert note == "ok"
    assert shapes["x"] == (None, 3, 4, 5)
    assert shapes["y"] == (None, 60)


def test_infer_shapes_failure_is_a_note(monkeypatch, make_model):
    def boom(model):
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] bad")
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", boom)
    shapes, note = infer_shapes(make_model([], {}))
    assert shapes == {} and note.startswith("failed: InferenceError")


def test_node_attrs_plain_values():
    body = helper.make_graph([], "b", [], [])
    node = helper.make_node("Op", ["x"], ["y"], eps=1e-3, ks=[3, 3], mode="same",
                            names=["a", "b"], scales=[0.1, 2.5], body=body,
                            t=helper.make_tensor("t", onnx.TensorProto.FLOAT, [1], [1.0]))
    assert node_attrs(node) == {"eps": 0.001, "ks": [3, 3], "mode": "same",
                                "names": ["a", "b"], "scales": [0.1, 2.5]}


def test_module_hint_from_older_exporter_names():
    def hint(name):
        return module_hint(helper.make_node("Conv", ["x"], ["y"], name))
    assert hint("/features/features.0/Conv") == "features.0"
    assert hint("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert hint("/fc1/Gemm") == "fc1"
    assert hint("/Relu") is None
    assert hint("node_Conv_12") is None


def test_module_hint_and_rule_from_dynamo_metadata():
    node = helper.make_node("Conv", ["x"], ["y"], "node_Conv_12")
    node.metadata_props.extend([
        StringStringEntryProto(key="pkg.torch.onnx.name_scopes",
                               value="['', 'features', 'features.1', '_native_batch_norm']"),
        StringStringEntryProto(key="pkg.onnxscript.rewriter.rule_name",
                               value="FuseBatchNormIntoConv")])
    assert module_hint(node) == "features.1"
    assert rewrite_rule(node) == "FuseBatchNormIntoConv"
    assert rewrite_rule(helper.make_node("Conv", ["x"], ["y"])) is None
