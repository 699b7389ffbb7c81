"""Values for the tensors of a meta-built target that stay new (see ``meta.py``), two ways.

``new_values="construct"`` (the default): the model file is run once more, normally, and the
values taken from that model: bit-identical to what building the model yourself gives (the file
seeds its own randomness or not). The full model is built, but only when some tensor stays new.

``new_values="reset"``: the model is never built in full.
* The tensor's owner is a ``torch.nn`` built-in module with ``reset_parameters`` (or
  ``_reset_parameters``) and nothing outside the owner's own methods changed it while the model
  was built: a copy of that one module gets CPU storage (``to_empty``) and is reset, under a seed
  of its own (``SEED`` + CRC32 of its path: deterministic, independent of which other tensors
  are new). That is what its constructor does, without building anything else.
* Anything else (a custom module, a computed buffer, a model-wide ``apply(init)``, weights the
  file loads): as with "construct".
Same initialisation, other random draws: the values are not those of a normal construction.
"""
from __future__ import annotations

import copy
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from weightmap.errors import UsageError, WeightmapError

SEED = 0
RESET_METHODS = ("reset_parameters", "_reset_parameters")
NEW_VALUES = ("construct", "reset")


@dataclass(frozen=True)
class MaterialisedData:
    """A meta tensor's value, made when first read (``Materialiser.value``)."""

    materialiser: "Materialiser" = field(repr=False)
    name: str
    dtype: str

    def read(self) -> np.ndarray:
        return self.materialiser.value(self.name, self.dtype)


class Materialiser:
    """Values for the tensors of a meta-built model; ``how`` says which way each was made."""

    def __init__(self, model: Any, record: Any, rebuild: Callable[[], tuple],
                 new_values: str = "construct") -> None:
        if new_values not in NEW_VALUES:
            raise UsageError(f"new_values={new_values!r}; one of {', '.join(NEW_VALUES)}")
        self.model, self.record, self.rebuild = model, record, rebuild
        self.mode = new_values
        self.real: Any = None               # the normally built model, made at most once
        self.how: dict[str, str] = {}       # tensor name -> "reset" | "constructed"
        # writers read tensors on several threads; building and seeding use torch's global
        # random generator, so one materialisation at a time
        self.lock = threading.Lock()

    def value(self, name: str, dtype: str) -> np.ndarray:
        from .live import to_numpy
        with self.lock:
            tensor = self._reset_value(name) if self.mode == "reset" else None
            self.how[name] = "reset" if tensor is not None else "constructed"
            if tensor is None:
                tensor = self._constructed_value(name)
            return to_numpy(tensor, dtype)

    def _owner(self, name: str) -> tuple[str, Any, str]:
        path, _, leaf = name.rpartition(".")
        return path, self.model.get_submodule(path) if path else self.model, leaf

    def resettable(self, name: str) -> bool:
        """Is resetting the owning module alone this tensor's own initialisation?"""
        import torch

        from .meta import storage_key
        _path, owner, leaf = self._owner(name)
        tensor = owner._parameters.get(leaf, owner._buffers.get(leaf))
        return (isinstance(tensor, torch.Tensor) and tensor.device.type == "meta"
                and type(owner).__module__.startswith("torch.nn.")
                and any(callable(getattr(owner, m, None)) for m in RESET_METHODS)
                and storage_key(tensor) not in self.record.foreign
                and self.record.owner.get(storage_key(tensor)) is owner)

    def _reset_value(self, name: str) -> Any:
        if not self.resettable(name):
            return None
        import torch
        path, owner, leaf = self._owner(name)
        fresh = copy.deepcopy(owner)
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed((SEED + zlib.crc32(path.encode("utf-8"))) % (2 ** 63))
                fresh.to_empty(device="cpu")
                reset = next(getattr(fresh, m) for m in RESET_METHODS
                             if callable(getattr(fresh, m, None)))
                reset()
        except Exception:       # a reset that needs more than its own module: build for real
            return None
        value = fresh._parameters.get(leaf, fresh._buffers.get(leaf))
        return value if isinstance(value, torch.Tensor) else None

    def _constructed_value(self, name: str) -> Any:
        if self.real is None:
            try:
                self.real, _example = self.rebuild()
            except WeightmapError:
                raise
            except Exception as exc:
                raise UsageError(f"building the target normally failed: {exc}") from exc
        state = self.real.state_dict(keep_vars=True)
        if name not in state:
            raise UsageError("the normally built target has no tensor of this name",
                             tensor=name, hint="the model file builds a different model each "
                                               "time it runs")
        return state[name]
