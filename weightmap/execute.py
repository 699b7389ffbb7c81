"""Execute a checked plan tensor by tensor: read the source(s), apply the steps, yield the result.

One target tensor is in memory at a time (plus its sources), so peak memory is about the largest
tensor, whatever the checkpoint size.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .dtypes import from_numpy, to_numpy
from .errors import PlanError
from .graph import Param, ParamGraph
from .plan import Plan, TensorPlan
from .transforms import apply_steps


def produce(plan: Plan, source: ParamGraph, target: ParamGraph
            ) -> Iterator[tuple[TensorPlan, np.ndarray]]:
    src = {p.name: p for p in source.params()}
    tgt = {p.name: p for p in target.params()}
    for t in plan.tensors:
        yield t, tensor_value(t, src, tgt[t.target])


def tensor_value(t: TensorPlan, src: dict[str, Param], tparam: Param) -> np.ndarray:
    if t.status == "new":
        if tparam.data is None:
            raise PlanError("the target has no initial value for this new tensor",
                            tensor=t.target, hint="use a target that carries its own weights")
        arr = np.asarray(tparam.read())
    elif t.status == "synthetic" and not t.sources:
        arr = np.broadcast_to(np.asarray(t.value, dtype=to_numpy(t.dtype)), t.shape).copy()
    else:
        arr = apply_steps(t.steps, [np.asarray(src[s].read()) for s in t.sources])
    if tuple(arr.shape) != tuple(t.shape):
        raise PlanError(f"computed shape {tuple(arr.shape)}, the target needs {t.shape}",
                        tensor=t.target)
    if from_numpy(arr.dtype) != t.dtype:
        raise PlanError(f"computed dtype {from_numpy(arr.dtype)}, the target needs {t.dtype}",
                        tensor=t.target, hint="add a cast step to the plan")
    return arr
