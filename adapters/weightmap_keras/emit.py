"""Keras outputs: ``.weights.h5`` (Keras 3) and legacy ``.h5`` (tf_keras), and in-place loading.

* A live Keras target (a model from a ``.py`` file or passed in Python): the values are assigned
  to the model's own variables, the model saves itself with ``save_weights`` (so ``load_weights``
  accepts the file by construction), and the model's previous values are restored.
* A Keras file used as a template (``.weights.h5``, ``.keras``, legacy ``.h5``): the template's
  HDF5 file is copied and its datasets are overwritten in place, found by the same names the
  reader gives them; nothing of the template is executed.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from weightmap.errors import UsageError
from weightmap.graph import ParamGraph

from .h5io import WEIGHTS_MEMBER
from .legacy import TOP_LEVEL


def _variables(graph: ParamGraph) -> dict[str, Any]:
    """Target parameter name → the live variable behind it (the live reader wraps variables)."""
    out = {}
    for p in graph.params():
        var = getattr(p.data, "array", None)
        if var is None or not hasattr(var, "assign"):
            raise UsageError("this Keras parameter is not backed by a variable that can be "
                             "assigned", tensor=p.name)
        out[p.name] = var
    return out


def load_into(graph: ParamGraph, items: Iterable[tuple[str, np.ndarray]]) -> list[str]:
    """Assign arrays to the live model's variables in place; returns the names set."""
    variables = _variables(graph)
    done = []
    for name, arr in items:
        if name not in variables:
            raise UsageError("the model has no variable of this name", tensor=name)
        var = variables[name]
        if tuple(int(d) for d in var.shape) != tuple(arr.shape):
            raise UsageError(f"shape {tuple(arr.shape)} does not fit {tuple(var.shape)}",
                             tensor=name)
        var.assign(np.asarray(arr))
        done.append(name)
    return done


def write_output(path: Path, *, kind, plan, target, tensors) -> None:
    if target.live is not None:
        _write_live(path, kind, target, tensors)
    elif target.format in ("keras3-weights-h5", "keras-zip", "keras2-h5", "keras2-h5-weights"):
        _write_template(path, kind, target, tensors)
    else:
        raise UsageError(f"a Keras output needs a Keras target (a live model or a Keras file); "
                         f"the target is {target.format}",
                         hint="choose an output format of the target's own framework")


def _write_live(path: Path, kind: str, target: ParamGraph, tensors) -> None:
    model = target.live
    legacy_model = target.meta.get("keras_version", "3").startswith("2")
    if kind == "keras-weights" and legacy_model:
        raise UsageError("a tf_keras (Keras 2) model saves legacy .h5 weights",
                         hint="name the output *.h5")
    if kind == "keras-h5" and not legacy_model:
        raise UsageError("a Keras 3 model saves .weights.h5 files",
                         hint="name the output *.weights.h5")
    before = model.get_weights()
    try:
        load_into(target, ((t.target, arr) for t, arr in tensors()))
        if legacy_model:
            model.save_weights(str(path), save_format="h5")
        else:
            model.save_weights(str(path))
    finally:
        model.set_weights(before)


def _write_template(path: Path, kind: str, target: ParamGraph, tensors) -> None:
    import h5py
    src = Path(target.source)
    expected = {"keras-zip": "keras-weights", "keras3-weights-h5": "keras-weights"}.get(
        target.format, "keras-h5")
    if kind != expected:
        raise UsageError(f"a {target.format} template is written as {expected} "
                         f"({'.weights.h5' if expected == 'keras-weights' else '.h5'})")
    if target.format == "keras-zip":
        with zipfile.ZipFile(src) as zf, zf.open(WEIGHTS_MEMBER) as member, \
                open(path, "wb") as out:
            shutil.copyfileobj(member, out)
    else:
        shutil.copyfile(src, path)
    with h5py.File(path, "r+") as f:
        where = _dataset_paths(f, target)
        for t, arr in tensors():
            ds = f[where[t.target]]
            if tuple(ds.shape) != tuple(arr.shape):
                raise UsageError(f"shape {arr.shape} does not fit the template's "
                                 f"{tuple(ds.shape)}", tensor=t.target)
            ds[...] = arr


def _dataset_paths(f: Any, target: ParamGraph) -> dict[str, str]:
    """Parameter name → dataset path in the template, named as the reader names them."""
    if target.format in ("keras3-weights-h5", "keras-zip"):
        return {p.name: p.name for p in target.params()}
    from .h5io import load_attr
    root = f["model_weights"] if "model_weights" in f else f
    names = list(load_attr(root, "layer_names") or [])
    if TOP_LEVEL in root:
        names.append(TOP_LEVEL)
    out: dict[str, str] = {}
    for gname in names:
        for wname in load_attr(root[gname], "weight_names") or []:
            full = f"{root[gname].name}/{wname}"
            out.setdefault(wname, full)
            out[f"{gname}/{wname}"] = full
    missing = [p.name for p in target.params() if p.name not in out]
    if missing:
        raise UsageError(f"the template has no dataset for {', '.join(missing[:3])}",
                         path=target.source)
    return out

