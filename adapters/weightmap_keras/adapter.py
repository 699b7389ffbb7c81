"""The Keras adapter: format detection, file reading, live models.

Files are read with h5py, zipfile and json only; TensorFlow / Keras are imported by
``read_live`` alone, for models that are already theirs.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Mapping

from weightmap.errors import FormatError, UsageError, WeightmapError
from weightmap.emit.output import OutputKind, WriteRequest
from weightmap.graph import ParamGraph

from . import keras3, legacy
from .convention import CONVENTION
from .h5io import HDF5_MAGIC, READ_ERRORS, WEIGHTS_MEMBER, ZIP_MAGIC, Location, \
    load_json_attr, open_h5

FORMATS = (legacy.FORMAT_FULL, legacy.FORMAT_WEIGHTS, keras3.FORMAT_WEIGHTS, keras3.FORMAT_ZIP)


def sniff_hdf5(f: Any) -> str | None:
    """Which Keras layout an open HDF5 file has, from its markers; None if it is not Keras'."""
    import h5py

    attrs = set(f.attrs.keys())
    if "model_weights" in f and ("model_config" in attrs or "keras_version" in attrs):
        return legacy.FORMAT_FULL
    if "layer_names" in attrs or "layer_names0" in attrs:
        return legacy.FORMAT_WEIGHTS
    top = f.get("vars")
    if isinstance(top, h5py.Group) and "name" in top.attrs:
        return keras3.FORMAT_WEIGHTS
    return None


def sniff(path: Path, head: bytes) -> str | None:
    path = Path(path)
    if not path.is_file():
        return None
    name = path.name.lower()
    if head.startswith(HDF5_MAGIC):
        try:
            with open_h5(Location(str(path)), heaps=False) as f:   # reads attribute names only
                return sniff_hdf5(f)
        except READ_ERRORS:
            # damaged: claim it only when the name says Keras, so the reader can say what broke
            if name.endswith(".weights.h5"):
                return keras3.FORMAT_WEIGHTS
            return legacy.FORMAT_FULL if name.endswith((".h5", ".hdf5")) else None
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except READ_ERRORS:
            return keras3.FORMAT_ZIP if name.endswith(".keras") else None
        if {"config.json", WEIGHTS_MEMBER} <= names:
            return keras3.FORMAT_ZIP
    elif name.endswith(".keras") and head:
        return keras3.FORMAT_ZIP                       # not a zip: let the reader say so
    return None


def load_config(value: Any) -> Mapping[str, Any] | None:
    """The ``config=`` option: a model config dict, or a ``.keras`` / full-model ``.h5`` /
    ``config.json`` path to take it from (for weights-only files)."""
    if value is None or isinstance(value, Mapping):
        return value
    path = Path(value)
    if not path.is_file():
        raise UsageError("config= names no file", path=path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    try:
        if head.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        if head.startswith(HDF5_MAGIC):
            with open_h5(Location(str(path))) as f:
                cfg = load_json_attr(f, "model_config", str(path))
            if cfg is None:
                raise UsageError("config= names an HDF5 file without a model_config", path=path)
            return cfg
        return json.loads(path.read_text(encoding="utf-8"))
    except READ_ERRORS as exc:
        raise UsageError(f"cannot read a model config from it: {type(exc).__name__}: {exc}",
                         path=path) from exc


def _type_modules(obj: Any) -> list[tuple[str, str]]:
    return [(c.__module__ or "", c.__name__) for c in type(obj).__mro__]


class KerasAdapter:
    name = "keras"
    convention = CONVENTION        # how its graphs lay out, name and default what they store
    describes = "Keras .h5/.weights.h5/.keras"   # what it reads, for a message
    live = "a Keras model"                       # what it takes live, for a message
    name_suffixes = (".keras",)                  # a file name it reads ends so
    formats = FORMATS
    read_options = {"config": "a model config (dict, or a .keras / full .h5 / config.json "
                              "path) typing a weights-only file"}

    def sniff(self, path: Path, head: bytes) -> str | None:
        return sniff(path, head)

    def read(self, path: Path, fmt: str | None = None, *, config: Any = None,
             **_options: Any) -> ParamGraph:
        """Specs of every weight, data lazy. ``config=`` types a weights-only file (a config
        dict, or a ``.keras`` / full ``.h5`` / ``config.json`` path); other options are
        ignored."""
        path = Path(path)
        if fmt is None:
            with open(path, "rb") as fh:
                fmt = sniff(path, fh.read(64))
        if fmt not in FORMATS:
            raise UsageError(f"the keras adapter reads {', '.join(FORMATS)}, not {fmt!r}",
                             path=path)
        model_cfg = load_config(config)
        try:
            if fmt in (legacy.FORMAT_FULL, legacy.FORMAT_WEIGHTS):
                return legacy.read(path, fmt, config=model_cfg)
            return keras3.read(path, fmt, config=model_cfg)
        except WeightmapError as exc:
            raise exc.located(path)
        except READ_ERRORS + (AttributeError, RecursionError) as exc:
            # AttributeError: config JSON of another structure met past the walk (layer configs)
            raise FormatError(f"cannot read {fmt} file: {_describe(exc)}", path=path,
                              hint="the file is truncated, corrupt or not what its name "
                                   "says") from exc

    # Keras 3 .weights.h5 and legacy (tf_keras) .h5: saved by a live model, or a Keras file's
    # datasets overwritten in a copy of it
    outputs = (OutputKind("keras-weights", (".weights.h5",)),
               OutputKind("keras-h5", (".h5", ".hdf5")))

    def default_output(self, target: ParamGraph) -> str | None:
        """What a Keras target saves: a tf_keras model legacy ``.h5``, Keras 3 ``.weights.h5``;
        a Keras file the format it is."""
        if target.format == "keras-live":
            return "keras-h5" if target.meta.get("keras_version", "3").startswith("2") \
                else "keras-weights"
        return {keras3.FORMAT_WEIGHTS: "keras-weights", keras3.FORMAT_ZIP: "keras-weights",
                legacy.FORMAT_FULL: "keras-h5", legacy.FORMAT_WEIGHTS: "keras-h5"}.get(
            target.format)

    def write(self, request: WriteRequest) -> None:
        from .emit import write_output
        write_output(request.path, kind=request.kind, plan=request.plan, target=request.target,
                     tensors=request.tensors)

    def load_into(self, graph: ParamGraph, tensors: Any) -> list[str]:
        """Assign arrays to the live model's variables in place."""
        from .emit import load_into
        return load_into(graph, tensors)

    def accepts(self, obj: Any) -> bool:
        """A Keras layer or model (keras 3, tf_keras or Keras 2), told by type names only."""
        return any(mod.split(".")[0] in ("keras", "tf_keras") and name in ("Layer", "Model")
                   for mod, name in _type_modules(obj))

    def read_live(self, obj: Any, *, origin: str | None = None, **options: Any) -> ParamGraph:
        from .live import read_live
        return read_live(obj, origin=origin, **options)

    def run_file(self, path: Path, fmt: str, **options: Any) -> Any:
        """A runner of a full-model file rebuilt from its config (built-in layers only)."""
        from .run import run_file
        return run_file(path, fmt, **options)

    def run_live(self, obj: Any, **options: Any) -> Any:
        """A runner of a live Keras model (``weightmap.equivalence.runner``)."""
        from .run import run_live
        return run_live(obj, **options)

    def model_file_context(self, path: Path) -> Any:
        """Around running a model file: TensorFlow's start-up logs, if the file is the first
        to import it, stay off stderr (``quiet.py``)."""
        from .quiet import quiet_tensorflow_start
        return quiet_tensorflow_start()


ADAPTER = KerasAdapter()


def _describe(exc: BaseException) -> str:
    """What went wrong, for one line: libhdf5's own words when h5py relays them (as
    RuntimeError, KeyError or OSError, e.g. "Unable to synchronously open object (bad object
    header version number)"), the exception's type and text otherwise."""
    if isinstance(exc, UnicodeError):            # a name or string attribute that is not UTF-8
        return f"a name or string in the file is not valid UTF-8 ({exc.reason})"
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, (RuntimeError, KeyError, OSError)) and "(" in str(text) \
            and str(text).rstrip().endswith(")"):
        return f"libhdf5 cannot decode its structure: {text}"
    return f"{type(exc).__name__}: {text}"
