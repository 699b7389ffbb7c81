"""The ONNX adapter: reads ``.onnx`` files (and live ``onnx.ModelProto`` objects)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from weightmap.errors import FormatError, UsageError
from weightmap.emit.output import OutputKind, WriteRequest
from weightmap.graph import ParamGraph

from .reader import FORMAT, build_graph
from .convention import CONVENTION


def load_model(path: Path) -> Any:
    """The ModelProto without external tensor bytes; parse failures become FormatError."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise FormatError(f"not a valid ONNX model: {type(exc).__name__}: {exc}", path=path,
                          hint="the file is corrupt or truncated") from exc
    check_model_shape(model, path)
    check_strings(model, path)
    return model


def check_strings(message: Any, where: object) -> None:
    """Every ``string`` field is text. protobuf does not check UTF-8 in proto2 files and hands
    an invalid one out as bytes, which no reader code expects; refuse the file instead."""
    from google.protobuf.descriptor import FieldDescriptor

    todo = [message]
    while todo:
        msg = todo.pop()
        for field, value in msg.ListFields():
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                todo.extend(value if _repeated(field) else [value])
            elif field.type == FieldDescriptor.TYPE_STRING:
                for text in (value if _repeated(field) else [value]):
                    if not isinstance(text, str):
                        raise FormatError(f"field {field.full_name} holds {text[:40]!r}, which "
                                          "is not UTF-8 text", path=where,
                                          hint="the file is corrupt")


def _repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)          # protobuf >= 5.28 ...
    if repeated is None:
        return field.label == field.LABEL_REPEATED           # ... and before
    return bool(repeated)


def check_model_shape(model: Any, where: object) -> None:
    # Protobuf parses many byte strings (even an empty file) into an empty message.
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise FormatError("not an ONNX model: no ir_version or no graph", path=where,
                          hint="the file is empty, truncated or not ONNX")


class OnnxAdapter:
    name = "onnx"
    convention = CONVENTION        # how its graphs lay out, name and default what they store
    describes = "ONNX .onnx"                     # what it reads, for a message
    live = "an onnx.ModelProto"                  # what it takes live, for a message
    formats = (FORMAT,)

    def sniff(self, path: Path, head: bytes) -> str | None:
        path = Path(path)
        return FORMAT if path.suffix.lower() == ".onnx" and path.is_file() else None

    read_options = {"shape_inference": "run ONNX shape inference for the flatten shapes "
                                       "(default True)"}

    def read(self, path: Path, fmt: str | None = FORMAT, *, shape_inference: bool = True,
             **_options: Any) -> ParamGraph:
        """Specs of every initializer grouped by the node that uses it; data read on demand.

        ``shape_inference=False`` skips ONNX shape inference (then no flatten shapes)."""
        if fmt not in (None, FORMAT):
            raise UsageError(f"the onnx adapter reads 'onnx', not {fmt!r}", path=path)
        path = Path(path)
        model = load_model(path)
        return build_graph(model, source=str(path), model_path=path,
                           folder=Path(os.path.abspath(path)).parent,
                           shape_inference=shape_inference)

    # a copy of the target model with its initializers replaced (external data beside it)
    outputs = (OutputKind("onnx", (".onnx",)),)

    def default_output(self, target: ParamGraph) -> str | None:
        return "onnx" if target.format == FORMAT else None

    def write(self, request: WriteRequest) -> None:
        from .emit import write_output
        write_output(request.path, kind=request.kind, plan=request.plan, target=request.target,
                     tensors=request.tensors, final_path=request.final_path)

    def side_outputs(self, kind: str, out: Path, target: ParamGraph, plan: Any,
                     options: dict[str, Any]) -> list[Path]:
        """The external data file beside a model that keeps its tensors there."""
        from .emit import side_outputs
        return side_outputs(out, target)

    def accepts(self, obj: Any) -> bool:
        cls = type(obj)
        return cls.__name__ == "ModelProto" and cls.__module__.startswith("onnx")

    def read_live(self, obj: Any, *, origin: str | None = None, base_dir: Any = None,
                  shape_inference: bool = True, **_options: Any) -> ParamGraph:
        """A graph of an in-memory ModelProto; external data is looked up in ``base_dir``."""
        source = origin or "onnx.ModelProto"
        check_model_shape(obj, source)
        folder = Path(os.path.abspath(base_dir)) if base_dir is not None else None
        return build_graph(obj, source=source, model_path=Path(source), folder=folder,
                           shape_inference=shape_inference)


    def run_file(self, path: Path, fmt: str, **options: Any) -> Any:
        """A runner of the model file on onnxruntime (``weightmap.equivalence.runner``)."""
        from .run import run_file
        return run_file(path, fmt, **options)

    def run_live(self, obj: Any, **options: Any) -> Any:
        from .run import run_live
        return run_live(obj, **options)


ADAPTER = OnnxAdapter()
