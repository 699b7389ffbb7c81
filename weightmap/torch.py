"""Apply a freeze manifest to a torch model: ``freeze`` and optimizer ``param_groups``.

Importing this module imports torch (it is only imported when the user asks for it).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError
from .manifest import check


def _params(manifest: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(manifest, (str, Path)):
        manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
    if hasattr(manifest, "manifest"):            # a PortReport
        manifest = manifest.manifest
    return check(manifest)


def _entries(model: Any, manifest) -> list[tuple[str, Any, Mapping[str, Any]]]:
    params = _params(manifest)
    out = []
    for name, p in model.named_parameters():
        if name not in params:
            raise UsageError("the manifest has no entry for this parameter; it was made for "
                             "another model", tensor=name)
        out.append((name, p, params[name]))
    return out


def freeze(model: Any, manifest) -> list[str]:
    """Set ``requires_grad`` from the manifest; returns the names frozen."""
    frozen = []
    for name, p, entry in _entries(model, manifest):
        p.requires_grad_(not entry["frozen"])
        if entry["frozen"]:
            frozen.append(name)
    return frozen


def param_groups(model: Any, manifest, lr: float) -> list[dict[str, Any]]:
    """Optimizer groups holding exactly the trainable parameters, one group per lr scale.

    When the manifest freezes every parameter there is nothing to train: a
    ``FrozenModelWarning`` says so, and the result is one empty group, which an optimizer
    accepts (an empty list it refuses with "optimizer got an empty parameter list")."""
    groups: dict[float, dict[str, Any]] = {}
    entries = _entries(model, manifest)
    for name, p, entry in entries:
        if entry["frozen"]:
            continue
        scale = float(entry["lr_scale"])
        g = groups.setdefault(scale, {"params": [], "names": [], "lr": lr * scale,
                                      "lr_scale": scale})
        g["params"].append(p)
        g["names"].append(name)
    if not groups:
        warnings.warn(f"every one of the model's {len(entries)} parameters is frozen by the "
                      "manifest: the optimizer has nothing to train (add a new head, or port "
                      "with another freeze policy)", FrozenModelWarning, stacklevel=2)
        return [{"params": [], "names": [], "lr": lr, "lr_scale": 1.0}]
    return [groups[s] for s in sorted(groups, reverse=True)]


class FrozenModelWarning(UserWarning):
    """``param_groups`` found no trainable parameter."""
