"""The execution-order trace of a meta-built model (``meta.py``), without its weights.

Running a forward on meta tensors makes torch load its Python meta kernels and torch._dynamo
with them (one to several seconds), then run each op in Python. So the trace first runs on CPU
with *stand-ins*: every meta parameter and buffer is replaced, for the call only, by a view of
one zero buffer (``np.zeros``: untouched pages are the kernel's shared zero page, so reading
them costs no memory), and products with a zero weight (``linear``, ``addmm``, ``x @ W``) are
answered with zeros of the result's shape without computing them (``ZeroProducts``: exactly
what the kernel would return, without a pass over the weights). Meta inputs become CPU zeros of
their shape. When that fails (a module that needs real values, a tensor created on meta in the
forward), the trace runs on the meta device itself.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from weightmap.errors import WeightmapError

from . import live_trace


def trace(model: Any, example_input: Any, torch: Any) -> live_trace.Trace:
    """Stand-ins first, then meta; UsageError (from ``live_trace.run``) when neither runs.
    One intra-op thread: the tensors are tiny, and a thread pool on a busy machine makes each
    op wait for a descheduled worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with stand_ins(model, torch) as zeros, zero_products(torch, zeros):
            return live_trace.run(model, on_cpu(example_input, torch), torch)
    except WeightmapError:
        with torch.device("meta"):
            return live_trace.run(model, example_input, torch)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def stand_ins(model: Any, torch: Any) -> Iterator[set[int]]:
    """Swap each meta parameter/buffer for a CPU view of one zero buffer (tied tensors get one
    stand-in), put the originals back afterwards whatever happens; yields the stand-ins' ids."""
    metas = [(table, key, t) for mod in model.modules()
             for table in (mod._parameters, mod._buffers) for key, t in list(table.items())
             if isinstance(t, torch.Tensor) and t.device.type == "meta"]
    largest = max((t.numel() * t.element_size() for _, _, t in metas), default=0)
    zeros = torch.from_numpy(np.zeros(max(largest, 1), dtype=np.uint8))
    made: dict[int, Any] = {}
    swapped: list[tuple[dict, str, Any]] = []
    try:
        for table, key, t in metas:
            if id(t) not in made:
                made[id(t)] = zeros[:t.numel() * t.element_size()].view(t.dtype).view(t.shape)
            table[key] = made[id(t)]
            swapped.append((table, key, t))
        yield {id(t) for t in made.values()}
    finally:
        for table, key, t in swapped:
            table[key] = t


def on_cpu(value: Any, torch: Any) -> Any:
    """``value`` with each meta tensor replaced by CPU zeros of its shape and dtype."""
    if isinstance(value, torch.Tensor):
        return torch.zeros(value.shape, dtype=value.dtype) if value.device.type == "meta" \
            else value
    if isinstance(value, tuple):
        return tuple(on_cpu(v, torch) for v in value)
    if isinstance(value, list):
        return [on_cpu(v, torch) for v in value]
    if isinstance(value, dict):
        return {k: on_cpu(v, torch) for k, v in value.items()}
    return value


def zero_products(torch: Any, zeros: set[int]) -> Any:
    """A torch-function mode answering ``linear(x, W, b)``, ``addmm(b, x, W)`` and ``x @ W``
    whose ``W`` and ``b`` are stand-ins (all zero) with a zero tensor of the result's shape."""
    from torch.overrides import TorchFunctionMode
    linear_fns = {torch._C._nn.linear, torch.nn.functional.linear}
    addmm_fns = {torch.addmm, torch.Tensor.addmm}
    matmul_fns = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__}

    def zero(t: Any) -> bool:
        return t is None or (isinstance(t, torch.Tensor) and id(t) in zeros)

    def fits(x: Any, w: Any, x_axis: int, w_axis: int) -> bool:
        return isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and w.dim() == 2 \
            and x.dim() >= 1 and x.shape[x_axis] == w.shape[w_axis]

    def result(x: Any, w: Any, shape: tuple) -> Any:
        return torch.zeros(shape, dtype=torch.promote_types(x.dtype, w.dtype), device=x.device)

    class ZeroProducts(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in linear_fns and len(args) >= 2 and set(kwargs) <= {"bias"}:
                x, w = args[0], args[1]
                b = args[2] if len(args) > 2 else kwargs.get("bias")
                if zero(w) and zero(b) and fits(x, w, -1, 1):
                    return result(x, w, tuple(x.shape[:-1]) + (w.shape[0],))
            elif func in addmm_fns and len(args) == 3 and not kwargs:
                b, x, w = args
                if zero(b) and zero(w) and fits(x, w, -1, 0) and x.dim() == 2:
                    return result(x, w, (x.shape[0], w.shape[1]))
            elif func in matmul_fns and len(args) == 2 and not kwargs:
                x, w = args
                if zero(w) and fits(x, w, -1, 0):
                    return result(x, w, tuple(x.shape[:-1]) + (w.shape[1],))
            return func(*args, **kwargs)

    return ZeroProducts()
