"""Shared helpers for the ONNX adapter tests: tiny graphs built with onnx.helper."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from weightmap_onnx.graphinfo import GraphInfo
from weightmap_onnx.tensors import read_initializer


def _model(nodes, inits: dict[str, np.ndarray], *, inputs=("x",), outputs=("y",),
           opset: int = 21) -> onnx.ModelProto:
    """A model whose graph has ``nodes`` and float inputs/outputs of unknown shape."""
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _info(model: onnx.ModelProto, path: Path = Path("t.onnx")) -> GraphInfo:
    inits = {t.name: read_initializer(t, model_path=path, folder=path.parent)
             for t in model.graph.initializer}
    return GraphInfo.build(model.graph, inits, {})


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same dtype, shape and bytes."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(np.frombuffer(np.ascontiguousarray(ours).tobytes(), np.uint8),
                                  np.frombuffer(np.ascontiguousarray(theirs).tobytes(), np.uint8))


@pytest.fixture
def make_model():
    """make_model(nodes, inits, *, inputs=("x",), outputs=("y",), opset=21) -> ModelProto"""
    return _model


@pytest.fixture
def make_info():
    """make_info(model, path=Path("t.onnx")) -> GraphInfo (no shapes)"""
    return _info


@pytest.fixture
def same_tensor():
    return _same
