"""Torch targets built on the meta device: names, shapes and structure without a byte of weights.

A port target given as ``model.py`` only needs its tensors' names, shapes, dtypes and order; its
values matter only for the tensors that stay new. So ``weightmap.reading.read`` runs the file inside
``construction()``: under ``torch.device("meta")`` every tensor it creates is a meta tensor (no
memory, no initialisation work). The traced forward of ``example_input`` runs without weights
too (``meta_trace``; without one, the forward of an input made up for the model's stem,
``synth_input``), and the tensors that stay new are materialised on demand
(``materialise``: by default the file is run once more, normally, so they are bit-identical to a
normal construction; with ``new_values="reset"`` the owning built-in module is reset on its
own).

While the file runs, a torch-function mode watches every in-place change of a registered
parameter or buffer (``normal_``, ``copy_``, ``w.data.zero_()``, ``w[...] = ...``) and notes the
ones made *outside the methods of the module that owns it*: a model-wide ``self.apply(init)``, a
parent re-initialising a child's bias, weights loaded into the model. Those tensors' values are
the model's own business, which only running its construction can reproduce. Value-only
in-place calls on meta tensors are skipped: they do nothing there, and running them would load
torch's Python meta kernels.

A file that cannot run on meta, or whose forward fails on stand-ins and on meta, is built
normally; ``graph.meta["construction"]`` says which happened and why.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from weightmap.errors import WeightmapError
from weightmap.graph import ParamGraph

from .materialise import MaterialisedData, Materialiser

_FRAMES = 64                     # how far up the stack an in-place change looks for its owner
# In-place calls that only set values: skipped on meta tensors (see the module doc).
VALUE_ONLY = frozenset({
    "normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "copy_", "eye_",
    "dirac_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
    "trunc_normal_", "orthogonal_", "sparse_", "exponential_", "log_normal_", "cauchy_",
    "geometric_", "random_", "bernoulli_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_",
    "clamp_min_", "clamp_max_", "fmod_", "abs_", "neg_", "sqrt_", "exp_", "masked_fill_",
    "index_fill_", "addcmul_", "addcdiv_",
})


def wants_meta(path: Path) -> bool:
    """Build this file on meta: torch is installed and the file imports it."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if "import torch" not in text and "from torch" not in text:
        return False
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Record:
    """What ``construction`` saw: the module owning each registered tensor, and the tensors
    changed outside their owner's methods (keyed by storage, so ``w.data`` and ``w`` are one)."""

    owner: dict[int, Any] = field(default_factory=dict)
    foreign: set[int] = field(default_factory=set)
    keep: list[Any] = field(default_factory=list)   # keeps storage keys unique while running


def storage_key(t: Any) -> int:
    return t.untyped_storage()._cdata


def _is_inplace(name: str) -> bool:
    return (name.endswith("_") and not name.startswith("__")) or name in ("__setitem__",
                                                                          "__set__")


def _inside_methods_of(owner: Any, base_file: str) -> bool:
    """Is a method of ``owner``'s own class (its ``__init__``, ``reset_parameters`` ...) on the
    stack? ``nn.Module``'s generic methods (``apply`` calls ``fn`` with each module as ``self``
    on the stack) do not count."""
    frame = sys._getframe(2)
    for _ in range(_FRAMES):
        if frame is None:
            return False
        if frame.f_locals.get("self") is owner and frame.f_code.co_filename != base_file:
            return True
        frame = frame.f_back
    return False


def _recorder(torch: Any, record: Record) -> Any:
    from torch.overrides import TorchFunctionMode
    base_file = torch.nn.modules.module.__file__

    class InitRecorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if _is_inplace(name):
                t = args[0] if args else kwargs.get("tensor")
                if isinstance(t, torch.Tensor) and t.device.type == "meta":
                    owner = record.owner.get(storage_key(t))
                    if owner is not None and not _inside_methods_of(owner, base_file):
                        record.foreign.add(storage_key(t))
                    if name in VALUE_ONLY:
                        return t
            return func(*args, **kwargs)

    return InitRecorder()


@contextlib.contextmanager
def construction() -> Iterator[Record]:
    """Run the enclosed model-building code on the meta device, recording (see module doc)."""
    import torch
    nn_module = torch.nn.modules.module
    record = Record()

    def registered(module: Any, _name: str, tensor: Any) -> None:
        if tensor is not None and tensor.device.type == "meta":
            record.owner.setdefault(storage_key(tensor), module)
            record.keep.append(tensor)

    hooks = [nn_module.register_module_parameter_registration_hook(registered),
             nn_module.register_module_buffer_registration_hook(registered)]
    try:
        with torch.device("meta"), _recorder(torch, record):
            yield record
    finally:
        for h in hooks:
            h.remove()


def is_meta_module(obj: Any) -> bool:
    import torch
    return isinstance(obj, torch.nn.Module) and any(
        t.device.type == "meta" for t in obj.state_dict(keep_vars=True).values()
        if isinstance(t, torch.Tensor))


def read_meta(obj: Any, *, origin: str | None = None, example_input: Any = None,
              construction: Record | None = None, rebuild: Callable[[], tuple] | None = None,
              construction_failed: str | None = None, new_values: str = "construct",
              **options: Any) -> ParamGraph:
    """The graph of a model built by ``construction``, meta tensors materialised on demand; a
    normally built model's graph when the file could not run on meta or its forward could not
    be traced without weights."""
    from . import meta_trace, synth_input
    from .live import read_live
    if construction_failed is not None or rebuild is None or not is_meta_module(obj):
        graph = read_live(obj, origin=origin, example_input=example_input, **options)
        if construction_failed is None:
            return _labelled(graph, "normal (the file built real tensors)")
        return _labelled(graph, "normal (the file cannot run on the meta device: "
                         f"{construction_failed})", fallback=True)
    import torch
    trace, synthesized = None, None
    if example_input is not None:
        try:
            trace = meta_trace.trace(obj, example_input, torch)
        except WeightmapError as exc:
            real, example = rebuild()
            graph = read_live(real, origin=origin, example_input=example, **options)
            return dataclasses.replace(_labelled(graph, "normal (the forward of example_input "
                                                 f"failed without weights: {exc.message})",
                                                 fallback=True), live=real)
    else:               # no example_input: an input made for the stem, still without weights
        synthesized = synth_input.synthesize(
            obj, torch, options.pop("input_hint", None), origin or "model",
            lambda inputs: meta_trace.trace_first(obj, inputs, torch), device="meta")
        trace = synthesized.trace
    graph = read_live(obj, origin=origin, example_input=example_input, trace=trace,
                      synthesized=synthesized, **options)
    mat = Materialiser(obj, construction or Record(), rebuild, new_values)
    return with_materialiser(graph, mat, obj)


def _labelled(graph: ParamGraph, construction: str, fallback: bool = False) -> ParamGraph:
    meta = dict(graph.meta, construction=construction)
    if fallback:                      # meta did not work: the user should hear of it
        meta["decisions"] = list(meta.get("decisions", ())) + [
            f"{graph.source}: target built with its weights, not on the meta device: "
            f"{construction[len('normal ('):-1]}"]
    return dataclasses.replace(graph, meta=meta)


def with_materialiser(graph: ParamGraph, mat: Materialiser, obj: Any) -> ParamGraph:
    """``graph`` with every meta tensor's data replaced by an on-demand materialisation."""
    import torch
    state = obj.state_dict(keep_vars=True)
    layers = []
    for layer in graph.layers:
        params = []
        for p in layer.params:
            t = state.get(p.name)
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                p = dataclasses.replace(p, data=MaterialisedData(mat, p.name, p.dtype))
            params.append(p)
        layers.append(dataclasses.replace(layer, params=tuple(params)))
    return dataclasses.replace(_labelled(graph, "meta"), layers=tuple(layers), live=obj)
