"""The execution-order trace of a meta-built model (``meta.py``), without its weights.

Running a forward on meta tensors makes torch load its Python meta kernels and torch._dynamo
with them (one to several seconds), then run each op in Python. So the trace first runs on CPU
with *stand-ins*: every meta parameter and buffer is replaced, for the call only, by a view of
one zero buffer (``np.zeros``: untouched pages are the kernel's shared zero page, so reading
them costs no memory), and products with a zero weight (``linear``, ``addmm``, ``x @ W``,
``conv1d/2d/3d``) are answered with zeros of the result's shape without computing them
(``ZeroProducts``: exactly what the kernel would return, without a pass over the weights).
Meta inputs become CPU zeros of their shape. When that fails (a module that needs real values,
a tensor created on meta in the forward), the trace runs on the meta device itself.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from weightmap.errors import WeightmapError

from . import live_trace


def trace(model: Any, example_input: Any, torch: Any) -> live_trace.Trace:
    """Stand-ins first, then meta; UsageError (from ``live_trace.run``) when neither runs."""
    return trace_first(model, [example_input], torch)[0]


def trace_first(model: Any, inputs: list[Any], torch: Any) -> tuple[live_trace.Trace, int]:
    """The trace of the first of ``inputs`` the model runs on, and its index: each input on
    stand-ins, then the first one on meta; the meta run's UsageError when nothing runs.
    One intra-op thread: the tensors are tiny, and a thread pool on a busy machine makes each
    op wait for a descheduled worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with stand_ins(model, torch) as zeros, zero_products(torch, zeros):
            for index, x in enumerate(inputs):
                try:
                    return live_trace.run(model, on_cpu(x, torch), torch), index
                except WeightmapError:
                    continue
        with torch.device("meta"):
            return live_trace.run(model, inputs[0], torch), 0
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
    """A torch-function mode answering ``linear(x, W, b)``, ``addmm(b, x, W)``, ``x @ W`` and
    ``conv{1,2,3}d(x, W, b, ...)`` whose ``W`` and ``b`` are stand-ins (all zero) with a zero
    tensor of the result's shape."""
    from torch.overrides import TorchFunctionMode
    linear_fns = {torch._C._nn.linear, torch.nn.functional.linear}
    addmm_fns = {torch.addmm, torch.Tensor.addmm}
    matmul_fns = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__}
    conv_fns = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}

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
            elif func in conv_fns and len(args) >= 2:
                x, w = args[0], args[1]
                call = dict(zip(_CONV_ARGS, args[2:]), **kwargs)
                shape = conv_shape(x, w, conv_fns[func], call, torch) if zero(w) and \
                    zero(call.get("bias")) else None
                if shape is not None:
                    return result(x, w, shape)
            return func(*args, **kwargs)

    return ZeroProducts()


_CONV_ARGS = ("bias", "stride", "padding", "dilation", "groups")


def conv_shape(x: Any, w: Any, rank: int, call: dict, torch: Any) -> tuple[int, ...] | None:
    """The output shape of ``conv{rank}d(x, w, **call)``; None for anything unusual (the real
    kernel then runs, and raises where the call is wrong)."""
    if not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor) \
            or w.dim() != rank + 2 or x.dim() not in (rank + 1, rank + 2):
        return None
    batch = tuple(x.shape[:1]) if x.dim() == rank + 2 else ()
    channels, sizes = x.shape[len(batch)], tuple(x.shape[len(batch) + 1:])
    groups = call.get("groups", 1)
    if not isinstance(groups, int) or channels != w.shape[1] * groups:
        return None
    stride, dilation = _per_axis(call.get("stride", 1), rank), _per_axis(call.get("dilation", 1),
                                                                         rank)
    padding = call.get("padding", 0)
    kernel = tuple(w.shape[2:])
    if padding == "same":
        out = sizes if stride == (1,) * rank else None
    else:
        pads = (0,) * rank if padding == "valid" else _per_axis(padding, rank)
        if None in (stride, dilation, pads):
            return None
        out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                    for n, p, d, k, s in zip(sizes, pads, dilation, kernel, stride))
    if out is None or min(out, default=1) < 1:
        return None
    return batch + (w.shape[0],) + out


def _per_axis(value: Any, rank: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * rank
    if isinstance(value, (tuple, list)) and len(value) == rank and all(isinstance(v, int)
                                                                       for v in value):
        return tuple(value)
    return None
