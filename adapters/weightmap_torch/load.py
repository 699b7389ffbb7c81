"""Loading into a live torch module in place (the adapter's load_into; the `.pt` file output is
``emit.py`` through ``zip_writer``)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from weightmap.errors import MissingDependencyError, UsageError


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("loading into a torch model needs torch",
                                     hint="pip install torch==2.13.0") from None
    return torch


def to_tensor(arr: np.ndarray):
    torch = _torch()
    # np.array(order="C") keeps a 0-d array 0-d (np.ascontiguousarray would make it 1-d)
    if arr.dtype.name == "bfloat16":           # numpy has no bf16 tensor interop: go via bits
        return torch.from_numpy(np.array(arr, order="C").view(np.int16)).view(torch.bfloat16)
    if arr.dtype.name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        return torch.from_numpy(np.array(arr, order="C").view(np.uint8)).view(
            getattr(torch, arr.dtype.name))
    return torch.from_numpy(np.array(arr, copy=True))


def load_into(graph: Any, tensors: Iterable[tuple[str, np.ndarray]]) -> list[str]:
    """Copy tensors into the live module behind ``graph`` (its parameters and buffers) in
    place; returns the names set."""
    torch = _torch()
    state = graph.live.state_dict(keep_vars=True)
    done = []
    with torch.no_grad():
        for name, arr in tensors:
            if name not in state:
                raise UsageError("the model has no parameter or buffer of this name",
                                 tensor=name)
            dest = state[name]
            value = to_tensor(arr).to(dtype=dest.dtype, device=dest.device)
            if tuple(value.shape) != tuple(dest.shape):
                raise UsageError(f"shape {tuple(value.shape)} does not fit {tuple(dest.shape)}",
                                 tensor=name)
            dest.copy_(value)
            done.append(name)
    return done
