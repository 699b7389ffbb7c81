"""Running an ONNX model for verification (``weightmap.equivalence``): onnxruntime on the CPU.

A target's output is a whole model (the template's graph with the ported initializers), so it
runs as it is; a source ``.onnx`` runs with its own initializers. The layers asked for become
extra graph outputs (a value needs no type to be an output), named by the walk the reader
builds layers by (``reader.layer_outputs``). A model with external data is rewritten beside
itself for the session (its data file names stay relative), then the copy is removed.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from weightmap.equivalence.runner import InputSpec, Run
from weightmap.errors import MissingDependencyError, VerifyError
from weightmap.graph import ParamGraph

from .adapter import load_model
from .graphinfo import GraphInfo
from .reader import initializers, layer_outputs
from .tensors import ONNX_DTYPES


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("running an ONNX model needs onnxruntime",
                                     hint="pip install onnxruntime") from None
    return onnxruntime


def run_file(path: Path, fmt: str, *, graph: ParamGraph, weights: Any = None) -> "OnnxRunner":
    if isinstance(weights, ParamGraph):
        raise VerifyError("an ONNX model runs with its own initializers; tensors of another "
                          "checkpoint are not loaded into it", path=path)
    model_path = Path(weights) if weights is not None else Path(path)
    _ort()
    return OnnxRunner(model_path)


def run_live(obj: Any, **_options: Any) -> "OnnxRunner":
    raise VerifyError("an in-memory ONNX model is not run; pass its file")


class OnnxRunner:
    framework = "onnx"

    def __init__(self, path: Path):
        self.path = path
        self.description = f"onnxruntime on {path.name}"
        self.model = load_model(path)        # the proto, external data left on disk

    def inputs(self) -> list[InputSpec]:
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        out = []
        for value in g.input:
            if value.name in inits:
                continue
            ttype = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                          for d in ttype.shape.dim) if ttype.HasField("shape") else None
            out.append(InputSpec(value.name, shape, ONNX_DTYPES.get(ttype.elem_type),
                                 "ONNX input", trust=2))
        return out

    def run(self, feeds: Sequence[np.ndarray], capture: Sequence[str]) -> Run:
        ort = _ort()
        g = self.model.graph
        inits = initializers(g, model_path=self.path, folder=self.path.parent)
        info = GraphInfo.build(g, inits, {})
        values = layer_outputs(info)
        skipped = {n: "no node of this name in the model" for n in capture if n not in values}
        wanted = [(n, values[n]) for n in capture if n in values]
        outputs = [o.name for o in g.output]
        extra = list(dict.fromkeys(v for _, v in wanted if v not in outputs))
        model = type(self.model)()
        model.CopyFrom(self.model)
        for v in extra:
            model.graph.output.add().name = v
        names = [i.name for i in self.inputs()]
        try:
            with _session_source(model, self.path) as source:
                options = ort.SessionOptions()
                options.log_severity_level = 3
                session = ort.InferenceSession(source, options,
                                               providers=["CPUExecutionProvider"])
            got = session.run(outputs + extra, dict(zip(names, feeds)))
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise VerifyError(f"onnxruntime failed on the model: {type(exc).__name__}: {text}",
                              path=self.path) from exc
        by_value = dict(zip(outputs + extra, got))
        order = list(values)                           # node order: topological
        return Run(outputs=[(n, np.asarray(by_value[n])) for n in outputs],
                   layers={n: np.asarray(by_value[v]) for n, v in wanted},
                   skipped=skipped, order=order)

    def close(self) -> None:
        self.model = None


@contextlib.contextmanager
def _session_source(model: Any, path: Path) -> Iterator[Any]:
    """Bytes of ``model``; with external data, a copy written beside ``path`` (so that the data
    file names it holds resolve as they do for ``path``), removed afterwards."""
    if not any(t.data_location == 1 for t in model.graph.initializer):
        yield model.SerializeToString()
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.verify.", suffix=".onnx", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
