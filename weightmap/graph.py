"""The neutral description every reader produces: ParamGraph → Layer → Param (+ lazy data).

Nothing here knows a framework. A graph lists layers in execution order where the format knows
it; each layer has an op kind from a closed vocabulary (``OPS``), attributes, and parameters with
a role, a shape, a dtype and *axis labels*. Tensor bytes are behind a ``TensorData`` handle that is
read only when asked, so building a graph reads headers only.
"""
from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from . import dtypes
from .errors import FormatError, WeightmapError

# The closed vocabulary of op kinds. Anything a reader cannot place is "opaque": kept, never dropped.
OPS = frozenset({
    "dense", "conv1d", "conv2d", "conv3d", "depthwise_conv1d", "depthwise_conv2d",
    "separable_conv1d", "separable_conv2d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm",
    "embedding", "lstm", "gru", "simple_rnn", "prelu", "attention", "opaque",
})

# Parameter roles. Readers map stored names onto these; "other" keeps whatever has no role.
ROLES = frozenset({
    "kernel", "bias", "recurrent_kernel", "recurrent_bias", "gamma", "beta", "moving_mean",
    "moving_var", "num_batches_tracked", "embeddings", "alpha", "depthwise_kernel",
    "pointwise_kernel", "query_kernel", "key_kernel", "value_kernel", "output_kernel",
    "query_bias", "key_bias", "value_bias", "output_bias", "in_proj_kernel", "in_proj_bias",
    "other",
})

# Roles of tensors that are state, not trained weights (torch buffers, Keras non-trainable
# weights): running statistics and their counter.
BUFFER_ROLES = frozenset({"moving_mean", "moving_var", "num_batches_tracked"})


@runtime_checkable
class TensorData(Protocol):
    """A lazy handle on one tensor's bytes. ``read`` returns a numpy array (may be a read-only
    memory map); nothing is read before it is called."""

    def read(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayData:
    """Data already in memory (live models, dicts of arrays)."""

    array: Any = field(repr=False)

    def read(self) -> np.ndarray:
        return np.asarray(self.array)


@dataclass(frozen=True)
class CallableData:
    """Data produced on demand by a reader-supplied function."""

    fn: Callable[[], np.ndarray] = field(repr=False)

    def read(self) -> np.ndarray:
        return self.fn()


# numpy's own limit on dimensions, and the largest byte count a signed 64-bit size can hold:
# a declared shape beyond either is forged (its product would overflow downstream).
MAX_RANK = 64
MAX_NBYTES = 2**63 - 1


def checked_nbytes(shape: Any, dtype: str, *, path: object = None,
                   tensor: str | None = None) -> int:
    """``numel * itemsize`` of a declared shape, refusing a rank above ``MAX_RANK``, a
    dimension that is not a non-negative int, and a product above ``MAX_NBYTES`` (computed with
    an early exit, so a forged shape of many huge dimensions costs nothing)."""
    dims = tuple(shape)
    if len(dims) > MAX_RANK:
        raise FormatError(f"shape has {len(dims)} dimensions, more than {MAX_RANK}",
                          path=path, tensor=tensor, hint="the header is corrupt or forged")
    total = dtypes.itemsize(dtype)
    for d in dims:
        if type(d) is not int or d < 0:
            raise FormatError(f"shape {list(dims)[:8]} has a dimension that is not a "
                              "non-negative integer", path=path, tensor=tensor)
    if 0 in dims:
        return 0
    for d in dims:
        total *= d
        if total > MAX_NBYTES:
            raise FormatError(f"shape {list(dims)[:8]} of {dtype} overflows: more than "
                              f"{MAX_NBYTES} bytes", path=path, tensor=tensor,
                              hint="the header is corrupt or forged")
    return total


@dataclass(frozen=True)
class MappedData:
    """A C-contiguous tensor stored raw at ``offset`` in a file: memory-mapped, read-only.

    ``span`` is the number of bytes the container gives the tensor; it is checked against the
    declared shape and dtype before any view is made.
    """

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    span: int | None = None
    fortran_order: bool = False
    # The container's own integrity check of the bytes (a zip member's CRC-32), run before they
    # are used: by ``read()``, and by a writer before it copies them file to file.
    check: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def nbytes(self) -> int:
        return math.prod(self.shape) * dtypes.itemsize(self.dtype)

    def stored_nbytes(self) -> int:
        """``nbytes()``, once it is checked that they fit the record and lie inside the file
        (FormatError otherwise): what any reader of the raw bytes checks first."""
        need = self.nbytes()
        if self.span is not None and need > self.span:
            raise FormatError(f"tensor needs {need} bytes but its record holds {self.span}",
                              path=self.path)
        size = os.path.getsize(self.path)
        if self.offset < 0 or self.offset + need > size:
            raise FormatError(f"tensor bytes {self.offset}..{self.offset + need} lie beyond the "
                              f"end of the file ({size} bytes); the file is truncated",
                              path=self.path)
        return need

    def read(self) -> np.ndarray:
        if self.check is not None:
            self.check()
        need = self.stored_nbytes()
        npdt = dtypes.to_numpy(self.dtype)
        order = "F" if self.fortran_order else "C"
        if need == 0:
            return np.zeros(self.shape, dtype=npdt, order=order)
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        flat = np.frombuffer(mm, dtype=npdt, count=need // npdt.itemsize, offset=self.offset)
        return flat.reshape(self.shape, order=order)


@dataclass(frozen=True)
class Param:
    """One stored tensor of a layer."""

    name: str                                  # full name as stored in the file
    role: str                                  # one of ROLES
    shape: tuple[int, ...]
    dtype: str                                 # canonical dtype name (weightmap.dtypes)
    axes: tuple[str, ...] | None               # axis labels, e.g. ("out", "in", "kh", "kw")
    data: TensorData | None = field(default=None, compare=False, repr=False)
    tied_to: str | None = None                 # name of the param holding the same tensor
    # state, not a trained weight, as a reader knew it (see is_buffer); not part of equality,
    # so a graph read from a file equals the live one it was saved from
    buffer: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise WeightmapError(f"internal: unknown role {self.role!r}", tensor=self.name)
        if self.axes is not None and len(self.axes) != len(self.shape):
            raise WeightmapError(f"internal: axes {self.axes} do not fit shape {self.shape}",
                                 tensor=self.name)

    @property
    def is_buffer(self) -> bool:
        """State rather than a trained weight: a reader said so (a torch buffer), or its role
        is one of ``BUFFER_ROLES`` (what a state dict's names tell)."""
        return self.buffer or self.role in BUFFER_ROLES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * dtypes.itemsize(self.dtype)

    def read(self) -> np.ndarray:
        """The tensor's values; checked against the declared shape and dtype."""
        if self.data is None:
            raise WeightmapError("this parameter has no data attached (a spec only)",
                                 tensor=self.name)
        arr = self.data.read()
        if tuple(arr.shape) != self.shape:
            raise FormatError(f"stored data has shape {tuple(arr.shape)}, spec says {self.shape}",
                              tensor=self.name)
        return arr

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "shape": list(self.shape),
                               "dtype": self.dtype,
                               "axes": list(self.axes) if self.axes is not None else None}
        if self.tied_to:
            out["tied_to"] = self.tied_to
        if self.is_buffer:
            out["buffer"] = True
        return out


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Layer:
    """A layer: op kind, attributes and parameters (in the order the layer uses them)."""

    name: str
    op: str
    params: tuple[Param, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source_type: str = ""                      # the class / op type as the file names it

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise WeightmapError(f"internal: unknown op kind {self.op!r} for layer {self.name!r}")
        object.__setattr__(self, "attrs", _frozen(self.attrs))
        object.__setattr__(self, "params", tuple(self.params))

    def param(self, role: str) -> Param | None:
        for p in self.params:
            if p.role == role:
                return p
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "type": self.source_type,
                "attrs": {k: _jsonable(v) for k, v in sorted(self.attrs.items())},
                "params": [p.describe() for p in self.params]}


@dataclass(frozen=True)
class ParamGraph:
    """Ordered layers of one model or checkpoint, in one framework's convention."""

    format: str                                # the reading adapter's format name
    framework: str                             # the name of its Convention (registry)
    source: str                                # file path or a description of a live object
    layers: tuple[Layer, ...]
    order: str = "stored"                      # execution | config | registration | stored
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # the live model this graph describes (torch module / Keras model), for writers and
    # load_partial; never part of equality or of the description
    live: Any = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.framework, str) or not self.framework.isidentifier():
            raise WeightmapError(f"internal: a framework is named by its convention's name, "
                                 f"not {self.framework!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "meta", _frozen(self.meta))
        seen: set[str] = set()
        for p in self.params():
            if p.name in seen:
                raise FormatError(f"parameter name {p.name!r} occurs twice", path=self.source)
            seen.add(p.name)

    def params(self) -> Iterator[Param]:
        for layer in self.layers:
            yield from layer.params

    def param(self, name: str) -> Param:
        try:
            return self._index("_params_by_name", self.params)[name]
        except KeyError:
            raise KeyError(name) from None

    def layer(self, name: str) -> Layer:
        try:
            return self._index("_layers_by_name", lambda: iter(self.layers))[name]
        except KeyError:
            raise KeyError(name) from None

    def _index(self, attr: str, items: Callable[[], Iterator[Any]]) -> dict[str, Any]:
        """Name -> first item of that name, built on first use (the graph is frozen, so it
        never goes stale): lookups in planning passes stay linear over a 10,000-tensor model."""
        index = self.__dict__.get(attr)
        if index is None:
            index = {}
            for item in items():
                index.setdefault(item.name, item)
            object.__setattr__(self, attr, index)
        return index

    def totals(self) -> dict[str, Any]:
        params = list(self.params())
        unique = [p for p in params if not p.tied_to]
        by_dtype: dict[str, int] = {}
        for p in unique:
            by_dtype[p.dtype] = by_dtype.get(p.dtype, 0) + p.numel
        return {"layers": len(self.layers), "params": len(params), "tensors": len(unique),
                "elements": sum(p.numel for p in unique),
                "bytes": sum(p.nbytes for p in unique),
                "dtypes": dict(sorted(by_dtype.items()))}

    def describe(self) -> dict[str, Any]:
        """Everything about the graph except tensor data, as JSON-ready data."""
        return {"format": self.format, "framework": self.framework, "source": self.source,
                "order": self.order,
                "meta": {k: _jsonable(v) for k, v in sorted(self.meta.items())},
                "totals": self.totals(), "layers": [l.describe() for l in self.layers]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
