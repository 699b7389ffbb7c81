"""One traced forward pass of a live torch module: the order modules are first called in, which
layers feed which, and what each ``nn.Linear`` reads.

The pass runs under ``torch.no_grad()`` in eval mode (so BatchNorm statistics are not updated
and dropout is off); every module's own ``training`` flag is put back afterwards, and the hooks
are removed even when the forward fails.

Data flow comes from a torch-function mode that sees every tensor operation: each tensor
remembers the layers (modules holding tensors of their own) whose outputs it was computed from,
through any function or weightless module; a layer's output is its own. A layer's inputs then
name the layers feeding it (``fed_by``). The same mode remembers the per-sample shape a tensor
was flattened from (``flatten``, ``view``, ``reshape`` keeping the batch axis), kept through
shape-keeping operations (dropout, activations) and lost through any other (a slice, a
concatenation): an ``nn.Linear`` reading such a tensor reads that flattened map
(``flatten_shape``); one reading a tensor no flatten produced reads features (pooled, or a
vector), and one reading a flatten's remains reads something nobody can name.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator

from weightmap.errors import UsageError

FLATTENS = frozenset({"flatten", "view", "reshape", "_unsafe_view"})
LOST = "lost"          # derived from a flattened map by something else than a shape-keeping op


@dataclass(frozen=True)
class Trace:
    first_call: dict[int, int] = field(default_factory=dict)   # id(module) -> call index
    flatten_shape: dict[int, tuple[int, ...]] = field(default_factory=dict)  # id(Linear) ->
    fed_by: dict[int, tuple[int, ...]] = field(default_factory=dict)   # id(layer) -> id(layer)s
    reads_features: set[int] = field(default_factory=set)     # id(Linear) fed no flatten


def owned(module: Any) -> list[str]:
    """Names of the state-dict tensors a module holds itself (not its children's)."""
    hidden = getattr(module, "_non_persistent_buffers_set", set())
    names = [k for k, v in module._parameters.items() if v is not None]
    names += [k for k, v in module._buffers.items() if v is not None and k not in hidden]
    return names


class _Tags:
    """Per live tensor: (layers it comes from, the shape it was flattened from / LOST / None).
    Keyed by ``id`` with a weak reference that proves the id still names that tensor."""

    def __init__(self) -> None:
        self.table: dict[int, tuple[Any, frozenset, Any]] = {}

    def get(self, t: Any) -> tuple[frozenset, Any]:
        entry = self.table.get(id(t))
        if entry is None or entry[0]() is not t:
            return frozenset(), None
        return entry[1], entry[2]

    def set(self, t: Any, sources: frozenset, flat: Any) -> None:
        try:
            self.table[id(t)] = (weakref.ref(t), sources, flat)
        except TypeError:                       # not weak-referenceable: not tracked
            pass


def _tensors(value: Any, torch: Any, depth: int = 0) -> Iterator[Any]:
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 4 and isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v, torch, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v, torch, depth + 1)


def _flow_mode(torch: Any, tags: _Tags) -> Any:
    from torch.overrides import TorchFunctionMode

    class Flow(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            ins = list(_tensors((args, kwargs), torch))
            if not ins:
                return out
            known = [tags.get(t) for t in ins]
            sources = frozenset().union(*(s for s, _ in known))
            first, first_flat = ins[0], known[0][1]
            any_flat = any(f is not None for _, f in known)
            name = getattr(func, "__name__", "")
            for o in _tensors(out, torch):
                if o is first:                    # in place: it now also depends on the rest
                    tags.set(o, sources, first_flat)
                    continue
                flat = None
                if name in FLATTENS and first.dim() >= 3 and o.dim() == 2 \
                        and o.shape[0] == first.shape[0] \
                        and o.shape[1] == math.prod(first.shape[1:]):
                    flat = tuple(int(d) for d in first.shape[1:])
                elif any_flat:
                    flat = first_flat if o.shape == first.shape and first_flat is not None \
                        else LOST
                tags.set(o, sources, flat)
            return out

    return Flow()


def run(module: Any, example_input: Any, torch: Any) -> Trace:
    """Call ``module`` on ``example_input`` once, hooks on every submodule, the data-flow mode
    on (see the module doc)."""
    nn = torch.nn
    trace = Trace()
    tags = _Tags()
    layers = {id(m) for m in module.modules() if owned(m)}

    def pre_hook(mod: Any, args: tuple) -> None:
        trace.first_call.setdefault(id(mod), len(trace.first_call))
        if id(mod) not in layers or id(mod) in trace.fed_by:
            return
        ins = list(_tensors(args, torch))
        sources = frozenset().union(*(tags.get(t)[0] for t in ins)) if ins else frozenset()
        trace.fed_by[id(mod)] = tuple(sorted(sources - {id(mod)},
                                             key=lambda i: trace.first_call.get(i, 0)))
        if isinstance(mod, nn.Linear) and ins:
            flat = tags.get(ins[0])[1]
            if isinstance(flat, tuple) and math.prod(flat) == mod.in_features:
                trace.flatten_shape.setdefault(id(mod), flat)
            elif flat is None:
                trace.reads_features.add(id(mod))

    def post_hook(mod: Any, args: tuple, output: Any) -> None:
        for t in _tensors(output, torch):
            tags.set(t, frozenset({id(mod)}), None)

    modes = [(m, m.training) for m in module.modules()]
    handles = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    handles += [m.register_forward_hook(post_hook) for m in module.modules() if id(m) in layers]
    try:
        module.eval()
        with torch.no_grad(), _flow_mode(torch, tags):
            _call(module, example_input)
    except Exception as exc:   # the user's model failed on the user's input: say so, briefly
        raise UsageError(f"running example_input through the model failed: "
                         f"{type(exc).__name__}: {exc}",
                         hint="example_input must be what model(...) accepts: a tensor, a "
                              "tuple of positional arguments or a dict of keyword arguments"
                         ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for mod, mode in modes:
            mod.training = mode
    return trace


def _call(module: Any, example_input: Any) -> Any:
    if isinstance(example_input, tuple):
        return module(*example_input)
    if isinstance(example_input, dict):
        return module(**example_input)
    return module(example_input)
