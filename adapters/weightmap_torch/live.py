"""Read a live ``torch.nn.Module`` (or a dict of tensors) into a ParamGraph.

Names are the module's ``state_dict()`` keys (parameters and persistent buffers). A layer is a
module that owns some of them directly; its op kind and attributes come from its type
(``live_ops``). Order is execution order: one traced forward (``live_trace``) of the
``example_input`` given, or else of an input synthesized for the model's stem
(``synth_input``: channels from the stem, spatial size from the source graph's
``input_hint`` or a usual size); registration order only when neither runs, and then the graph's
``meta["decisions"]`` say so. ``meta["trace_input"]`` says which. A module never called by the
forward follows its nearest called ancestor layer (``nn.MultiheadAttention`` uses
``out_proj``'s weights without calling it); the rest come last, in registration order. Data is
read from the tensors only when asked, as copies; the model itself is never changed.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import numpy as np

from weightmap.reading.dataflow import FED_BY
from weightmap.errors import MissingDependencyError, UsageError
from weightmap.graph import CallableData, Layer, Param, ParamGraph
from .convention import CONVENTION
from weightmap.reading.statedict import Entry, group

from . import live_ops, live_trace, synth_input
from .containers import wrapper_prefixes
from .torch_names import TORCH_DTYPES

FORMAT = "torch-live"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("reading a live torch object needs torch",
                                     hint="pip install torch") from None
    return torch


def canonical_dtype(tensor: Any, name: str) -> str:
    dtype = TORCH_DTYPES.get(str(tensor.dtype).removeprefix("torch."))
    if dtype is None:
        raise UsageError(f"tensor dtype {tensor.dtype} has no numpy equivalent weightmap "
                         "supports", tensor=name)
    return dtype


def to_numpy(tensor: Any, dtype: str) -> np.ndarray:
    """A numpy copy of ``tensor``; bfloat16 / float8 go through their bits (torch's .numpy()
    refuses them) and come back as ml_dtypes arrays."""
    from weightmap import dtypes
    t = tensor.detach()
    if t.device.type == "meta":
        raise UsageError("the tensor is on the meta device and has no data")
    t = t.cpu().contiguous()
    target = dtypes.to_numpy(dtype)
    if dtype == "bfloat16" or dtype.startswith("float8"):
        import torch
        bits = torch.int16 if dtype == "bfloat16" else torch.uint8
        return t.view(bits).numpy().view(target).copy()
    return np.array(t.numpy(), dtype=target, copy=True)


def read_live(obj: Any, *, origin: str | None = None, example_input: Any = None,
              trace: live_trace.Trace | None = None, input_hint: Any = None,
              synthesized: synth_input.Outcome | None = None, **_options: Any) -> ParamGraph:
    """``trace``: a forward already traced by the caller (``meta.py`` traces a meta-built model
    on stand-in tensors); otherwise ``example_input`` is traced here, or an input made for the
    stem (``input_hint``: the source graph's per-sample input shape, see ``synth_input``).
    ``synthesized``: the caller already tried that (its outcome is recorded, not redone)."""
    torch = _torch()
    if isinstance(obj, dict):
        return _read_state_dict(obj, origin or "live dict of torch tensors", torch)
    if not isinstance(obj, torch.nn.Module):
        raise UsageError(f"expected a torch nn.Module or dict of tensors, got "
                         f"{type(obj).__module__}.{type(obj).__qualname__}")
    return _read_module(obj, origin or f"live {type(obj).__qualname__}", example_input, torch,
                        trace, input_hint, synthesized)


class _Ties:
    """The first name seen for each tensor; later names viewing the same memory are tied."""

    def __init__(self) -> None:
        self.first: dict[Any, str] = {}

    def tied_to(self, name: str, t: Any) -> str | None:
        ptr = t.untyped_storage().data_ptr() if t.device.type != "meta" else 0
        key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype) if ptr \
            else ("object", id(t))
        owner = self.first.setdefault(key, name)
        return None if owner == name else owner


def _read_state_dict(state: dict, origin: str, torch: Any) -> ParamGraph:
    ties = _Ties()
    entries = []
    for name, t in state.items():
        dtype = canonical_dtype(t, name)
        entries.append(Entry(name, tuple(t.shape), dtype,
                             CallableData(partial(to_numpy, t, dtype)), ties.tied_to(name, t)))
    return ParamGraph(format=FORMAT, framework="torch", source=origin,
                      layers=tuple(group(entries, CONVENTION)), order="stored",
                      meta={"prefixes": list(wrapper_prefixes(list(state)))})


def _read_module(module: Any, origin: str, example_input: Any, torch: Any,
                 trace: live_trace.Trace | None = None, input_hint: Any = None,
                 synthesized: synth_input.Outcome | None = None) -> ParamGraph:
    state = module.state_dict(keep_vars=True)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for name, t in tensors.items():
        if type(t).__name__.startswith("Uninitialized"):
            raise UsageError("the parameter is not initialised yet (a lazy module)", tensor=name,
                             hint="run one forward pass before reading the model")
    owners = []                                  # (path, module, own state-dict names)
    for path, mod in module.named_modules(remove_duplicate=False):
        own = [f"{path}.{k}" if path else k for k in live_trace.owned(mod)]
        own = [n for n in own if n in tensors]
        if own:
            owners.append((path, mod, own))
    how = "example_input"
    if trace is None and example_input is not None:
        trace = live_trace.run(module, example_input, torch)
    elif trace is None:
        synthesized = synthesized or synth_input.synthesize(
            module, torch, input_hint, origin, synth_input.run_live(module, torch))
        trace = synthesized.trace
    made_up = None
    if synthesized is not None:
        how, made_up = synthesized.how, synthesized.input
    registered = [path or "<root>" for path, _, _ in owners]
    if trace is not None:
        owners = _execution_order(owners, trace)
    ties, table = _Ties(), live_ops.handlers(torch.nn)
    rank = {name: i for i, name in enumerate(tensors)}
    tie_of = {n: ties.tied_to(n, tensors[n]) for n in tensors}   # decided in state-dict order
    layers = [_layer(path, mod, sorted(own, key=rank.get), tensors, tie_of, table, trace)
              for path, mod, own in owners]
    if trace is not None:
        layers = _with_fed_by(layers, owners, trace)
    claimed = {n for _, _, own in owners for n in own}
    leftovers = [Entry(n, tuple(t.shape), canonical_dtype(t, n),
                       CallableData(partial(to_numpy, t, canonical_dtype(t, n))), tie_of[n])
                 for n, t in tensors.items() if n not in claimed]   # custom state-dict hooks
    layers += group(leftovers, CONVENTION)
    meta: dict[str, Any] = {"class": f"{type(module).__module__}.{type(module).__qualname__}",
                            "prefixes": list(wrapper_prefixes(list(tensors)))}
    skipped = [k for k in state if k not in tensors]
    if skipped:
        meta["skipped_non_tensors"] = skipped
    meta["trace_input"] = how
    if made_up is not None:               # the shape it ran on, as data (a probe's size)
        meta["trace_input_shape"] = [int(d) for d in made_up.shape]
        meta["trace_input_dtype"] = str(made_up.dtype).removeprefix("torch.")
    if synthesized is not None and synthesized.decision:
        meta["decisions"] = [synthesized.decision]
    meta["weightless_after"] = _weightless_after(module, owners, trace)
    if trace is not None:
        meta["not_called"] = [path or "<root>" for path, mod, _ in owners
                              if id(mod) not in trace.first_call]
        if registered != [path or "<root>" for path, _, _ in owners]:
            meta["registration_order"] = registered     # see weightmap/match/order.py
    return ParamGraph(format=FORMAT, framework="torch", source=origin, layers=tuple(layers),
                      order="execution" if trace is not None else "registration", meta=meta)


def _weightless_after(module: Any, owners: list, trace: live_trace.Trace | None
                      ) -> dict[str, str]:
    """Each module that holds no tensor, itself or below (a pooling, an activation, a
    flatten), -> the layer that runs just before it ("" for none), so that ``--freeze
    until:features.4`` can name a MaxPool. Execution order when traced (a module never called
    has no place), else registration order."""
    weighted = {path for path, _, _ in owners}

    def holds(path: str) -> bool:
        return any(p == path or p.startswith(path + ".") for p in weighted)

    out: dict[str, str] = {}
    if trace is not None:
        called = sorted((trace.first_call[id(mod)], path) for path, mod, _ in owners
                        if id(mod) in trace.first_call)
        for path, mod in module.named_modules():
            if not path or holds(path) or id(mod) not in trace.first_call:
                continue
            when = trace.first_call[id(mod)]
            out[path] = max((c for c in called if c[0] < when), default=(0, ""))[1]
        return out
    last = ""
    for path, mod in module.named_modules():
        if path in weighted:
            last = path
        elif path and not holds(path):
            out[path] = last
    return out


def _execution_order(owners: list, trace: live_trace.Trace) -> list:
    """Called layers by first call; an uncalled one right after its nearest called ancestor
    layer; the rest last, all ties broken by registration order."""
    calls = {path: trace.first_call[id(mod)] for path, mod, _ in owners
             if id(mod) in trace.first_call}

    def key(item: tuple[int, tuple]) -> tuple:
        index, (path, _mod, _own) = item
        if path in calls:
            return (0, calls[path], 0, index)
        ancestors = [p for p in calls if p and path.startswith(p + ".")]   # root excluded
        if ancestors:
            nearest = max(ancestors, key=len)
            return (0, calls[nearest], 1, index)
        return (1, 0, 0, index)

    return [owner for _, owner in sorted(enumerate(owners), key=key)]


def _with_fed_by(layers: list[Layer], owners: list, trace: live_trace.Trace) -> list[Layer]:
    """``attrs["fed_by"]`` from the trace (``weightmap.reading.dataflow``), for the layers the forward
    called (``nn.MultiheadAttention`` reads ``out_proj``'s weights without calling it: that
    one gets none, and keeps its place after its parent)."""
    path_of = {id(mod): path or "<root>" for path, mod, _ in owners}
    return [dataclasses.replace(layer, attrs={**layer.attrs, FED_BY: tuple(
        path_of[i] for i in trace.fed_by[id(mod)] if i in path_of)})
        if id(mod) in trace.fed_by else layer for layer, (_, mod, _) in zip(layers, owners)]


def _layer(path: str, mod: Any, names: list[str], tensors: dict, tie_of: dict, table: list,
           trace: live_trace.Trace | None) -> Layer:
    op, attrs = live_ops.describe(mod, table)
    params = []
    for name in names:
        t = tensors[name]
        role = live_ops.role_for(op, name.rpartition(".")[2])
        dtype = canonical_dtype(t, name)
        axes = None if op == "opaque" else CONVENTION.axes(op, role, t.dim())
        if role == "kernel" and attrs.get("kernel_axes"):    # HF Conv1D stores (in, out)
            axes = tuple(attrs["kernel_axes"])
        params.append(Param(name=name, role=role, shape=tuple(t.shape), dtype=dtype, axes=axes,
                            data=CallableData(partial(to_numpy, t, dtype)),
                            tied_to=tie_of[name], buffer=name.rpartition(".")[2] in mod._buffers))
    if trace is not None and id(mod) in trace.flatten_shape:
        attrs.update(dense_input="flatten", flatten_input_shape=trace.flatten_shape[id(mod)],
                     data_format="channels_first")
    elif trace is not None and id(mod) in trace.reads_features and op == "dense":
        attrs["dense_input"] = "features"
    return Layer(name=path or "<root>", op=op, params=tuple(params), attrs=attrs,
                 source_type=type(mod).__name__)
