"""Apply a freeze manifest to a Keras model (Keras 3 or tf_keras).

Keras trains per layer (``layer.trainable``), so a layer is frozen when every one of its
parameters is frozen in the manifest. A layer with frozen and trainable parameters stays
trainable: freezing part of a Keras layer is not possible without rebuilding it. Such layers are
returned as ``mixed`` so the caller can decide.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .errors import UsageError
from .emit.manifest import params_of


@dataclass(frozen=True)
class KerasFreeze:
    frozen: tuple[str, ...]       # layers set to trainable = False
    trainable: tuple[str, ...]    # layers left trainable
    mixed: tuple[str, ...]        # layers with frozen and trainable parameters (left trainable)


def _layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every layer with its graph name (nested models as ``outer/inner``)."""
    for layer in getattr(model, "layers", []):
        name = prefix + layer.name
        yield name, layer
        if hasattr(layer, "layers"):
            yield from _layers(layer, name + "/")


def freeze(model: Any, manifest: Any) -> KerasFreeze:
    params = params_of(manifest)
    by_layer: dict[str, list[bool]] = {}
    for entry in params.values():
        by_layer.setdefault(entry["layer"], []).append(bool(entry["frozen"]))
    layers = dict(_layers(model))
    unknown = [name for name in by_layer if name not in layers]
    if unknown:
        raise UsageError(f"the manifest names layers this model does not have: "
                         f"{', '.join(unknown[:4])}", hint="it was made for another model")
    frozen, trainable, mixed = [], [], []
    for name, flags in by_layer.items():
        if all(flags):
            layers[name].trainable = False
            frozen.append(name)
        else:
            layers[name].trainable = True
            trainable.append(name)
            if any(flags):
                mixed.append(name)
    return KerasFreeze(tuple(frozen), tuple(trainable), tuple(mixed))
