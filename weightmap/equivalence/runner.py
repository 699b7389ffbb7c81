"""What an adapter's runner is: the protocol the verification drives, and the data it returns.

An adapter that can execute models of its framework offers (see ``weightmap.registry``)::

    run_file(path, fmt, *, graph, weights=None) -> Runner
    run_live(obj, *, graph, weights=None, example_input=None, owned=False
             [, rebuild]) -> Runner

``weights`` is what to load into the model before it runs: a ``Path`` (a weights file, loaded
with the framework's own loader, as a user would load it) or a ``ParamGraph`` (its tensors,
loaded by name); None runs the model with its own weights. ``owned=False`` means the object is
the caller's: a runner that loads weights into it must leave it as it was (a copy, or the old
values put back by ``close``). A model file is built lazily where its framework allows
(torch: on the meta device) and comes with ``rebuild=`` (a function building it normally) for
a runner that needs values the weights do not give. A model a runner cannot run (a checkpoint
without architecture, a Keras config holding code) is a ``VerifyError`` saying why; nothing
from a checkpoint is ever executed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """One input a model takes, as far as the model says."""

    name: str
    shape: tuple[int | None, ...] | None   # None dims (or the whole shape) are not fixed
    dtype: str | None                      # canonical dtype name (weightmap.dtypes), or unknown
    origin: str                            # where it was read, for people ("Keras input" ...)
    fixed: bool = True                     # the model requires these dims (else a preference)
    # how far its shape is trusted when both sides say one, lowest first: 0 an input the user
    # gave (example_input), 1 what a model's config declares, 2 what a model graph declares,
    # 3 an input made up to trace the model
    trust: int = 2


@dataclass
class Run:
    """What one forward pass gave."""

    outputs: list[tuple[str, np.ndarray]]
    layers: dict[str, np.ndarray] = field(default_factory=dict)    # layer name -> activation
    skipped: dict[str, str] = field(default_factory=dict)          # layer name -> why not
    # layer name -> (op, attrs) as the running model knows the layer (a graph read from a
    # bare checkpoint does not: a torch LSTM's batch_first, a Keras layer's activation)
    described: dict[str, tuple[str, dict]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)   # layer names in the order they first ran
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Runner(Protocol):
    framework: str            # the convention of its activations: torch | keras | onnx
    description: str          # what runs, for the report ("onnxruntime on out.onnx")

    def inputs(self) -> list[InputSpec]:
        """The model's inputs (empty when it does not say)."""
        ...

    def run(self, feeds: Sequence[np.ndarray], capture: Sequence[str]) -> Run:
        """One forward pass in inference mode (dropout off, BatchNorm on running statistics)
        on ``feeds`` (in the model's own layout and dtype), returning the outputs and the
        output of each layer named in ``capture`` (graph layer names) that it could take."""
        ...

    def close(self) -> None:
        """Release the model (and put back anything changed in a caller's object)."""
        ...
