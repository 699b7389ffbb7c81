"""One traced forward pass of a live torch module: the order modules are first called in, and
the per-sample shape each ``nn.Flatten`` flattens before the ``nn.Linear`` that reads it.

The pass runs under ``torch.no_grad()`` in eval mode (so BatchNorm statistics are not updated
and dropout is off); every module's own ``training`` flag is put back afterwards, and the hooks
are removed even when the forward fails.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightmap.errors import UsageError


@dataclass(frozen=True)
class Trace:
    first_call: dict[int, int] = field(default_factory=dict)   # id(module) -> call index
    flatten_shape: dict[int, tuple[int, ...]] = field(default_factory=dict)  # id(Linear) ->


def run(module: Any, example_input: Any, torch: Any) -> Trace:
    """Call ``module`` on ``example_input`` once with pre-forward hooks on every submodule."""
    nn = torch.nn
    trace = Trace()
    pending: list[tuple[int, ...] | None] = [None]

    def pre_hook(mod: Any, args: tuple) -> None:
        trace.first_call.setdefault(id(mod), len(trace.first_call))
        x = args[0] if args else None
        if isinstance(mod, nn.Flatten):
            if isinstance(x, torch.Tensor) and x.dim() >= 3 and mod.start_dim == 1 \
                    and mod.end_dim == -1:
                pending[0] = tuple(int(d) for d in x.shape[1:])
        elif isinstance(mod, nn.Linear) and pending[0] is not None:
            shape, pending[0] = pending[0], None
            if _numel(shape) == mod.in_features:          # it really reads the flattened map
                trace.flatten_shape.setdefault(id(mod), shape)

    modes = [(m, m.training) for m in module.modules()]
    handles = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
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


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
