"""Verifying a port made with ``--adapt`` (docs/conversions/adapt.md): what the source takes
so that both models compute the same thing, or why nothing can be compared.

* ``in_chans`` is exact for one map of inputs. The adapted stem kernel is a linear map of the
  source's along its input channels (``W'[:, c] = Σ_j A[c, j] W[:, j]``: a sum over RGB for one
  channel, the RGB kernel repeated and scaled by 3/C for C), so the stem gives on the target's
  input ``x`` what the source's stem gives on ``Aᵀx``: for one gray channel, that channel
  repeated on R, G and B; for four channels, R + N, G and B scaled by 3/4. The map is taken
  from the step itself (applied to an identity kernel), so it is the one the port used. The
  source then takes the target's probe through it and the whole models are compared, outputs
  too. (A model that transforms its input before the stem, a per-channel normalisation, breaks
  the equivalence: the stem's pair then diverges, and the probe's origin says what was fed.)
* ``pos_embed`` resamples the position grid: the target runs on inputs of another size and
  computes another function; no layer of the two models can be compared exactly (the patch
  embedding before it already sees images of different sizes). The result says so and does
  not pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..graph import ParamGraph
from ..transforms import Step, apply_steps
from .pairs import Entry


@dataclass(frozen=True)
class Adaptation:
    channel_map: np.ndarray | None = None   # (source channels, target channels): x_s = M @ x_t
    mapped: str = ""                        # how the source's input is made, for the probe
    another: str | None = None              # why the target computes another function


def adaptation(entries: Sequence[Entry], source: ParamGraph) -> Adaptation:
    """What the plan's adapted tensors mean for verification."""
    channel_map, mapped = None, ""
    for e in entries:
        if e.status != "adapted":
            continue
        for step in e.steps:
            if step.get("op") == "resample_grid":
                g, n = step["grid"], step["size"]
                return Adaptation(another=f"--adapt pos_embed resampled {e.target}'s "
                                          f"{g[0]}x{g[1]} grid to {n[0]}x{n[1]}, so the target "
                                          f"computes another function, on inputs of another "
                                          f"size, by design")
            if step.get("op") == "adapt_in_channels":
                kernel = source.param(e.sources[0])
                have = kernel.shape[kernel.axes.index("in")]
                channel_map = apply_steps(
                    [Step("adapt_in_channels", {"axis": 1, "channels": step["channels"]})],
                    [np.eye(have, dtype=np.float64)])
                mapped = f"the source takes it through --adapt in_chans (its {have} input " \
                         f"channels made of the target's {step['channels']})"
    return Adaptation(channel_map, mapped)
