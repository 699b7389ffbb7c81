"""A test-only framework for weightmap, installed through the ``weightmap.adapters`` entry point.

"toy" is a framework of its own, in numpy: a model (``ToyModel``) is a list of layers run in
order — ``conv2d`` (stride 1, SAME), ``relu``, ``global_pool``, ``dense``, ``lstm`` (batch first,
the last step's output) — and its file format (``.toy``) is a magic, a JSON header listing the
layers and their tensors, then the tensors' float32 bytes. Its conventions are its own:

* kernels channels-last: a conv kernel ``(kh, kw, in, out)``, a dense kernel ``(in, out)``,
  feature maps ``(n, h, w, c)``;
* an LSTM's gates stacked in the order ``o, i, c, f`` (torch: ``i, f, g, o``; Keras:
  ``i, f, c, o``; ONNX: ``i, o, f, c``), its two biases stored as one sum.

The adapter reads the files and live models, writes the format, loads into a live model in
place, and declares the convention; weightmap's core knows none of this.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from weightmap.convention import Convention, RecurrentLayout
from weightmap.emit.output import OutputKind, WriteRequest
from weightmap.errors import FormatError, UsageError
from weightmap.graph import ArrayData, Layer, Param, ParamGraph

MAGIC = b"TOYW\x00\x01"
FORMAT = "toy"
SUFFIX = ".toy"
GATES = "oicf"
ROLES = {"conv2d": ("kernel", "bias"), "dense": ("kernel", "bias"),
         "lstm": ("kernel", "recurrent_kernel", "bias")}


# ---- the framework -------------------------------------------------------------------------
@dataclass
class ToyLayer:
    name: str
    op: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)   # role -> float32 array


@dataclass
class ToyModel:
    layers: list[ToyLayer]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Images ``(n, h, w, c)`` or sequences ``(n, t, features)``."""
        x = np.asarray(x, dtype=np.float64)
        for layer in self.layers:
            x = _RUN[layer.op](layer, x)
        return x

    def layer(self, name: str) -> ToyLayer:
        return next(l for l in self.layers if l.name == name)


def _conv2d(layer: ToyLayer, x: np.ndarray) -> np.ndarray:
    k = layer.arrays["kernel"].astype(np.float64)
    kh, kw = k.shape[:2]
    pad = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, k.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", pad[:, i:i + h, j:j + w, :], k[i, j])
    return out + layer.arrays["bias"]


def _dense(layer: ToyLayer, x: np.ndarray) -> np.ndarray:
    return x @ layer.arrays["kernel"].astype(np.float64) + layer.arrays["bias"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lstm(layer: ToyLayer, x: np.ndarray) -> np.ndarray:
    w, u = (layer.arrays[r].astype(np.float64) for r in ("kernel", "recurrent_kernel"))
    b = layer.arrays["bias"].astype(np.float64)
    units = u.shape[0]
    h = c = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        z = x[:, t] @ w + h @ u + b
        gate = {g: z[:, k * units:(k + 1) * units] for k, g in enumerate(GATES)}
        c = _sigmoid(gate["f"]) * c + _sigmoid(gate["i"]) * np.tanh(gate["c"])
        h = _sigmoid(gate["o"]) * np.tanh(c)
    return h


_RUN = {"conv2d": _conv2d, "dense": _dense, "lstm": _lstm,
        "relu": lambda layer, x: np.maximum(x, 0.0),
        "global_pool": lambda layer, x: x.mean(axis=(1, 2))}


def cnn(seed: int, channels: int = 3, filters: int = 4, classes: int = 5) -> ToyModel:
    """conv 3x3 -> relu -> global average pool -> dense, random weights."""
    rng = np.random.default_rng(seed)
    return ToyModel([
        ToyLayer("conv", "conv2d", {}, {"kernel": _f32(rng, (3, 3, channels, filters)),
                                        "bias": _f32(rng, (filters,))}),
        ToyLayer("act", "relu"), ToyLayer("pool", "global_pool"),
        ToyLayer("head", "dense", {"dense_input": "pooled"},
                 {"kernel": _f32(rng, (filters, classes)), "bias": _f32(rng, (classes,))})])


def rnn(seed: int, features: int = 3, units: int = 5, classes: int = 2) -> ToyModel:
    """LSTM (the last step's output) -> dense, random weights."""
    rng = np.random.default_rng(seed)
    return ToyModel([
        ToyLayer("lstm", "lstm", {}, {"kernel": _f32(rng, (features, 4 * units)),
                                      "recurrent_kernel": _f32(rng, (units, 4 * units)),
                                      "bias": _f32(rng, (4 * units,))}),
        ToyLayer("head", "dense", {"dense_input": "features"},
                 {"kernel": _f32(rng, (units, classes)), "bias": _f32(rng, (classes,))})])


def _f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32) * 0.5


# ---- the file format -----------------------------------------------------------------------
def save(model: ToyModel, path: Path) -> None:
    header, blobs, offset = [], [], 0
    for layer in model.layers:
        params = []
        for role in ROLES.get(layer.op, ()):
            arr = np.ascontiguousarray(layer.arrays[role], dtype="<f4")
            params.append({"role": role, "shape": list(arr.shape), "offset": offset})
            blobs.append(arr.tobytes())
            offset += arr.nbytes
        header.append({"name": layer.name, "op": layer.op, "attrs": layer.attrs,
                       "params": params})
    head = json.dumps({"layers": header}).encode()
    Path(path).write_bytes(MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs))


def load(path: Path) -> ToyModel:
    raw = Path(path).read_bytes()
    if not raw.startswith(MAGIC):
        raise FormatError("not a toy file", path=path)
    (size,) = struct.unpack("<I", raw[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4 + size
    header = json.loads(raw[len(MAGIC) + 4:start])
    layers = []
    for entry in header["layers"]:
        arrays = {}
        for p in entry["params"]:
            count = int(np.prod(p["shape"]))
            at = start + p["offset"]
            if at + 4 * count > len(raw):
                raise FormatError("a tensor runs past the end of the file", path=path,
                                  tensor=f"{entry['name']}.{p['role']}")
            arrays[p["role"]] = np.frombuffer(raw, "<f4", count, at).reshape(p["shape"])
        layers.append(ToyLayer(entry["name"], entry["op"], dict(entry["attrs"]), arrays))
    return ToyModel(layers)


# ---- the adapter ---------------------------------------------------------------------------
class ToyConvention(Convention):
    name = "toy"
    display = "toy"
    kernels = "channels_last"
    feature_maps = "channels_last"
    gate_orders = {"lstm": GATES}
    recurrent = RecurrentLayout(bias="one", directions="cells")
    depthwise_kernel = "spatial,c,m"
    momentum = "average"

    def batch_first(self, attrs) -> bool:
        return True


CONVENTION = ToyConvention()


def graph_of(model: ToyModel, source: str, live: Any = None) -> ParamGraph:
    layers = []
    for layer in model.layers:
        params = tuple(Param(f"{layer.name}.{role}", role, tuple(arr.shape), "float32",
                             CONVENTION.axes(layer.op, role, arr.ndim), ArrayData(arr))
                       for role, arr in ((r, layer.arrays[r]) for r in ROLES.get(layer.op, ())))
        op = layer.op if layer.op in ROLES else "opaque"
        layers.append(Layer(layer.name, op, params, dict(layer.attrs), source_type=layer.op))
    return ParamGraph(format=FORMAT, framework=CONVENTION.name, source=source,
                      layers=tuple(layers), order="execution", live=live)


class ToyAdapter:
    name = "toy"
    convention = CONVENTION
    describes = "toy .toy"
    live = "a toy ToyModel"
    formats = (FORMAT,)
    outputs = (OutputKind("toy", (SUFFIX,)),)

    def sniff(self, path: Path, head: bytes) -> str | None:
        return FORMAT if head.startswith(MAGIC) else None

    def read(self, path: Path, fmt: str, **options: Any) -> ParamGraph:
        return graph_of(load(path), str(path))

    def accepts(self, obj: Any) -> bool:
        return type(obj).__name__ == "ToyModel" and type(obj).__module__ == __name__

    def read_live(self, obj: ToyModel, *, origin: str | None = None, **options: Any
                  ) -> ParamGraph:
        return graph_of(obj, origin or "a live ToyModel", live=obj)

    def default_output(self, target: ParamGraph) -> str | None:
        return "toy" if target.format == FORMAT else None

    def write(self, request: WriteRequest) -> None:
        """The target's layers (from its file or live model) with the planned tensors."""
        arrays = {t.target: arr for t, arr in request.tensors()}
        model = load(request.target.source) if request.target.live is None \
            else request.target.live
        out = ToyModel([ToyLayer(l.name, l.op, dict(l.attrs),
                                 {role: np.asarray(arrays[f"{l.name}.{role}"])
                                  for role in ROLES.get(l.op, ())}) for l in model.layers])
        save(out, request.path)

    def load_into(self, graph: ParamGraph, tensors: Iterable[tuple[str, np.ndarray]]
                  ) -> list[str]:
        model: ToyModel = graph.live
        done = []
        for name, arr in tensors:
            layer_name, _, role = name.rpartition(".")
            layer = model.layer(layer_name)
            if role not in layer.arrays or layer.arrays[role].shape != arr.shape:
                raise UsageError("the toy model has no tensor of this name and shape",
                                 tensor=name)
            layer.arrays[role] = np.array(arr, dtype=np.float32)
            done.append(name)
        return done


ADAPTER = ToyAdapter()
