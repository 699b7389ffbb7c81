"""What an adapter declares it writes (``OutputKind``) and what its writer is given
(``WriteRequest``): the writing half of the adapter protocol (``weightmap.registry``).

An adapter lists its ``outputs``; ``emit/dispatch.py`` picks the kind an output's name asks for
(the longest suffix that fits) or the target's default (``Adapter.default_output``), checks the
writer options against what the kind takes, stages the files, and calls the adapter's
``write(request)``. Nothing else about a format is written in the core.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..graph import ParamGraph
from ..planning.plan import Plan, TensorPlan


@dataclass(frozen=True)
class OutputKind:
    """An output format an adapter writes.

    ``suffixes``: the name endings that ask for it, its own first (a default output name ends
    so). ``options``: the writer options it takes (``shard_size``, ``direct_io``); another is a
    usage error, never dropped. ``reads_back``: its writer reads each tensor back as soon as it
    is written (given a ``ReadBack``), so the check after writing has less to read. ``state_dict``:
    it holds a bare state dict and needs no model to hold the weights (``convert`` writes it),
    and this is the format name of the graph of what it holds."""

    name: str
    suffixes: tuple[str, ...]
    options: tuple[str, ...] = ()
    reads_back: bool = False
    state_dict: str | None = None


@dataclass(frozen=True)
class WriteRequest:
    """One output to write: ``path`` is where (a staging folder's file under the output's final
    name; side files go beside it), ``final_path`` the name it is published under (an ONNX
    model names its external data file after it). ``tensors()`` yields ``(TensorPlan, array)``
    in plan order; a stream may also offer ``jobs()`` (independent per-tensor jobs, a
    ``FileSpan`` for bytes to copy file to file) and ``advance(tensor)``. ``options``: the
    writer options given (those the kind takes). ``read_back``: a ``ReadBack`` to hand each
    tensor to as it lands, when the kind ``reads_back``."""

    kind: str
    path: Path
    final_path: Path
    plan: Plan
    target: ParamGraph
    tensors: Callable[[], Iterator[tuple[TensorPlan, np.ndarray]]]
    options: Mapping[str, Any] = field(default_factory=dict)
    read_back: Any = None
