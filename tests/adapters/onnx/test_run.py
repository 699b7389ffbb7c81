"""Running ONNX models for verification: onnxruntime, layer outputs as extra graph outputs."""
import os

import numpy as np
import pytest

from weightmap.errors import VerifyError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import weightmap  # noqa: E402
from weightmap_onnx import run as onnx_run  # noqa: E402

RNG = np.random.default_rng(0)


def _model(path, external=False):
    """x (N, 4) -> MatMul(W) + b (one dense layer "mm") -> Relu -> Gemm(transB) ("fc")."""
    w = RNG.standard_normal((4, 6)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    w2 = RNG.standard_normal((3, 6)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h0"], name="mm"),
             helper.make_node("Add", ["h0", "b"], ["h1"], name="mm_bias"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("Gemm", ["h2", "w2"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=path.name + ".data",
                        size_threshold=0)
    else:
        onnx.save(model, str(path))
    return w, b, w2


@pytest.mark.parametrize("external", [False, True])
def test_layer_outputs_as_extra_graph_outputs(tmp_path, external):
    path = tmp_path / "m.onnx"
    w, b, w2 = _model(path, external)
    graph = weightmap.read(path)
    assert [l.name for l in graph.layers] == ["mm", "fc"]
    runner = onnx_run.run_file(path, "onnx", graph=graph)
    spec, = runner.inputs()
    assert (spec.name, spec.shape, spec.dtype, spec.origin) == ("x", (None, 4), "float32",
                                                                "ONNX input")
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    run = runner.run([x], ["mm", "fc", "gone"])
    np.testing.assert_allclose(run.layers["mm"], x @ w + b, rtol=1e-5)   # after the bias Add
    expected = np.maximum(x @ w + b, 0) @ w2.T
    np.testing.assert_allclose(run.layers["fc"], expected, rtol=1e-5)
    assert run.outputs[0][0] == "y"
    np.testing.assert_allclose(run.outputs[0][1], expected, rtol=1e-5)
    assert run.order == ["mm", "fc"] and run.skipped == {"gone": "no node of this name in the "
                                                                  "model"}
    assert sorted(os.listdir(tmp_path)) == sorted(["m.onnx"] + (["m.onnx.data"] if external
                                                                 else []))


def test_a_target_runs_the_written_file_and_nothing_else(tmp_path):
    path, written = tmp_path / "template.onnx", tmp_path / "written.onnx"
    _model(path)
    _, _, w2 = _model(written)
    runner = onnx_run.run_file(path, "onnx", graph=weightmap.read(path), weights=written)
    assert runner.description == "onnxruntime on written.onnx"
    with pytest.raises(VerifyError, match="runs with its own initializers"):
        onnx_run.run_file(path, "onnx", graph=weightmap.read(path),
                          weights=weightmap.read(path))
    with pytest.raises(VerifyError, match="pass its file"):
        onnx_run.run_live(onnx.load(str(path)))
