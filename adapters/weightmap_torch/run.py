"""Running a torch module for verification (``weightmap.equivalence``).

The module runs in eval mode under ``torch.no_grad()`` (dropout off, BatchNorm on its running
statistics; every module's ``training`` flag is put back afterwards). A forward hook on each
layer asked for keeps a copy of its first output, taken when the layer returns (a later
in-place ReLU does not change it); a pre-hook on every layer records the order layers are
first called in. Weights a port wrote are loaded as a user loads them: ``safetensors.torch``
for a safetensors file, ``torch.load(weights_only=True)`` for a ``.pt``; a source checkpoint's
tensors (a graph) are loaded by name. A checkpoint file alone has no architecture: it cannot be
run (``run_file``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from weightmap.equivalence.runner import InputSpec, Run
from weightmap.errors import VerifyError
from weightmap.graph import ParamGraph

from . import live_ops
from .containers import wrapper_prefixes
from .live import _torch
from .torch_names import TORCH_DTYPES
from .load import to_tensor

ROOT = "<root>"


def run_file(path: Path, fmt: str, *, graph: ParamGraph, weights: Any = None) -> "TorchRunner":
    raise VerifyError(f"{Path(path).name} is a PyTorch checkpoint: it holds weights, not the "
                      "code of its model", path=path)


def run_live(obj: Any, *, graph: ParamGraph, weights: Any = None, example_input: Any = None,
             owned: bool = False, rebuild: Callable[[], Any] | None = None) -> "TorchRunner":
    """A runner of ``obj``, with ``weights`` loaded. A model built on the meta device (a model
    file run lazily) takes the loaded tensors as its own (``assign``: no initialisation, no
    second copy); when that leaves a tensor without values (a buffer the file computes, a
    tied weight the file omits), the model is built normally by ``rebuild`` and loaded."""
    torch = _torch()
    if not isinstance(obj, torch.nn.Module):
        raise VerifyError(f"a {type(obj).__name__} holds weights only, not the code of its "
                          "model")
    module = obj if owned or weights is None else copy.deepcopy(obj)
    loaded = None
    if weights is not None:
        loaded = load(module, weights, torch, assign=bool(_meta(module, torch)))
    if _meta(module, torch) and rebuild is not None:
        module = rebuild()
        loaded = load(module, weights, torch) if weights is not None else None
    meta = _meta(module, torch)
    if meta:
        raise VerifyError(f"{len(meta)} tensor(s) of the model are on the meta device and have "
                          f"no values, e.g. {meta[0]}", hint="pass a model built normally")
    what = f"torch {type(module).__name__}" + (f" with {loaded}" if loaded else "")
    return TorchRunner(module, example_input, what, torch, graph)


def _meta(module: Any, torch: Any) -> list[str]:
    """Parameters and buffers (persistent or not) without values."""
    return [n for n, t in [*module.named_parameters(), *module.named_buffers()]
            if t.device.type == "meta"]


# ---- weights ------------------------------------------------------------------------------------

def load(module: Any, weights: Any, torch: Any, assign: bool = False) -> str:
    """Load ``weights`` (a graph's tensors, or a file) into ``module``; VerifyError when they do
    not fit it exactly (names tied to a loaded tensor, as an untied copy of a tied head, may
    be absent). Returns what was loaded, for the report."""
    if isinstance(weights, ParamGraph):
        state = {p.name: to_tensor(np.asarray(p.read())) for p in weights.params()
                 if not p.tied_to}
        what = f"the tensors of {weights.source}"
    else:
        state, what = _load_file(Path(weights), torch), Path(weights).name
    own = module.state_dict(keep_vars=True)
    state = _fit_prefix(state, set(own))
    try:
        result = module.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:                 # shapes that do not fit
        text = " ".join(str(exc).split())
        raise VerifyError(f"the weights do not fit the model: {text[:300]}") from exc
    own = module.state_dict(keep_vars=True)
    loaded = {own[k].data_ptr() for k in state if k in own and own[k].device.type != "meta"}
    missing = [k for k in result.missing_keys if own[k].device.type == "meta"
               or own[k].data_ptr() not in loaded]
    if assign:                     # a tied tensor left on meta: rebuilt and loaded normally
        missing = [k for k in missing if own[k].device.type != "meta"]
    if missing or result.unexpected_keys:
        parts = []
        if missing:
            parts.append(f"{len(missing)} model tensor(s) not in them (e.g. {missing[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} tensor(s) the model does not have "
                         f"(e.g. {result.unexpected_keys[0]})")
        raise VerifyError(f"the weights ({what}) do not fit the model: " + "; ".join(parts),
                          hint="the model file must build the model the weights belong to")
    return what


def _load_file(path: Path, torch: Any) -> dict:
    from weightmap.reading.read import detect, read_path
    _, fmt = detect(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if fmt in ("torch-zip", "torch-legacy"):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        raise VerifyError("the file holds no state dict of tensors", path=path)
    graph = read_path(path)           # sharded safetensors and the rest: weightmap's reader
    return {p.name: to_tensor(np.asarray(p.read())) for p in graph.params() if not p.tied_to}


def _fit_prefix(state: dict, names: set[str]) -> dict:
    """A checkpoint whose every name carries wrapper prefixes the model lacks (``module.``,
    ``model.``, ``_orig_mod.``: ``containers.wrapper_prefixes``) loads without them."""
    if not state or set(state) & names:
        return state
    cut = sum(len(p) for p in wrapper_prefixes(list(state)))
    stripped = {k[cut:]: v for k, v in state.items()} if cut else state
    return stripped if set(stripped) & names else state


# ---- running ------------------------------------------------------------------------------------

def _spec(name: str, value: Any, torch: Any) -> InputSpec:
    if not isinstance(value, torch.Tensor):
        raise VerifyError(f"example_input {name!r} is a {type(value).__name__}; verification "
                          "feeds tensors", hint="make example_input a tensor, a tuple of "
                          "tensors or a dict of tensors")
    dtype = TORCH_DTYPES.get(str(value.dtype).removeprefix("torch.")) or "float32"
    return InputSpec(name, tuple(int(d) for d in value.shape), dtype, "example_input",
                     fixed=False, trust=0)


def _first_tensor(value: Any, torch: Any) -> Any:
    """The first tensor of a layer's output (an LSTM's ``(output, (h, c))`` gives output)."""
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value \
        if isinstance(value, (tuple, list)) else ()
    for item in items:
        found = _first_tensor(item, torch)
        if found is not None:
            return found
    return None


def _flat_outputs(value: Any, torch: Any, name: str = "output") -> list[tuple[str, Any]]:
    if isinstance(value, torch.Tensor):
        return [(name, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _flat_outputs(v, torch, f"{name}.{k}")]
    if isinstance(value, (tuple, list)):
        return [x for i, v in enumerate(value) for x in _flat_outputs(v, torch, f"{name}.{i}")]
    return []


def to_numpy(t: Any, torch: Any) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16 or (t.dtype.is_floating_point and t.element_size() == 1):
        t = t.float()                       # numpy has no bfloat16 / float8 of its own
    return t.numpy().copy()


class TorchRunner:
    framework = "torch"

    def __init__(self, module: Any, example: Any, description: str, torch: Any,
                 graph: ParamGraph | None = None):
        self.module, self.example, self.description, self.torch = module, example, \
            description, torch
        self.graph = graph

    def inputs(self) -> list[InputSpec]:
        """From ``example_input``; without one, the input its graph's trace was made up for
        and ran on (``synth_input``), a preference; else none."""
        ex, torch = self.example, self.torch
        if ex is None:
            meta = self.graph.meta if self.graph is not None else {}
            shape = meta.get("trace_input_shape")
            if not shape:
                return []
            return [InputSpec("input", tuple(shape), TORCH_DTYPES.get(
                str(meta.get("trace_input_dtype"))) or "float32", "made-up input", fixed=False,
                    trust=3)]
        if isinstance(ex, dict):
            return [_spec(str(k), v, torch) for k, v in ex.items()]
        if isinstance(ex, (tuple, list)):
            return [_spec(f"input{i}", v, torch) for i, v in enumerate(ex)]
        return [_spec("input", ex, torch)]

    def _layer_modules(self, names: Sequence[str]) -> dict[str, Any]:
        found = {}
        for name in names:
            try:
                found[name] = self.module if name == ROOT else self.module.get_submodule(name)
            except AttributeError:
                continue
        return found

    def run(self, feeds: Sequence[np.ndarray], capture: Sequence[str]) -> Run:
        torch = self.torch
        tensors = [torch.from_numpy(np.ascontiguousarray(f)) for f in feeds]
        owners = {n: m for n, m in self.module.named_modules()}
        layer_names = [n or ROOT for n, m in owners.items()
                       if any(True for _ in m.parameters(recurse=False))
                       or any(True for _ in m.buffers(recurse=False))]
        modules = self._layer_modules(layer_names)
        wanted = self._layer_modules(capture)
        order: list[str] = []
        seen: set[int] = set()
        calls: dict[str, int] = {}
        taken: dict[str, np.ndarray] = {}
        described: dict[str, tuple] = {}
        table = live_ops.handlers(torch.nn)
        skipped = {n: "no module of this name in the model" for n in capture if n not in wanted}

        def pre_hook(name):
            def hook(mod, args):
                if id(mod) not in seen:
                    seen.add(id(mod))
                    order.append(name)
            return hook

        def post_hook(name):
            def hook(mod, args, output):
                calls[name] = calls.get(name, 0) + 1
                if calls[name] > 1:
                    return
                t = _first_tensor(output, torch)
                if t is None:
                    skipped[name] = f"its output is a {type(output).__name__}, not a tensor"
                else:
                    taken[name] = to_numpy(t, torch)
                    described[name] = live_ops.describe(mod, table)
            return hook

        handles = [m.register_forward_pre_hook(pre_hook(n)) for n, m in modules.items()]
        handles += [m.register_forward_hook(post_hook(n)) for n, m in wanted.items()]
        modes = [(m, m.training) for m in self.module.modules()]
        try:
            self.module.eval()
            with torch.no_grad():
                if isinstance(self.example, dict):
                    out = self.module(**dict(zip(self.example, tensors)))
                else:
                    out = self.module(*tensors)
        except Exception as exc:     # the user's model failed on the probe: say so, briefly
            text = " ".join(str(exc).split())[:300]
            raise VerifyError(f"the torch model failed on the probe: {type(exc).__name__}: "
                              f"{text}", hint="give the model file an example_input of the "
                                              "shape it takes") from exc
        finally:
            for handle in handles:
                handle.remove()
            for mod, mode in modes:
                mod.training = mode
        notes = [f"{n} ran {c} times; its first call was compared" for n, c in calls.items()
                 if c > 1]
        return Run(outputs=[(n, to_numpy(t, torch)) for n, t in _flat_outputs(out, torch)],
                   layers=taken, skipped=skipped, order=order, notes=notes,
                   described=described)

    def close(self) -> None:
        self.module = None
