"""Keras 3 weights: a bare ``.weights.h5`` and the ``.keras`` zip (config.json + metadata.json +
model.weights.h5).

Layout: every saved object has a group holding ``vars/0..n`` (numbered, unnamed variables; the
``vars`` group's ``name`` attribute is the layer's name). A model's layers sit in ``layers/``,
named by class (``conv2d``, ``conv2d_1`` ...); sub-objects nest under their attribute name
(``layers/lstm/cell/vars/0``, ``layers/bidirectional/forward_layer/cell/vars/0``,
``layers/functional/layers/dense/vars/0``). The optimizer's variables (``optimizer/``) are not
model weights and are skipped.

Layer order and types come from the config when there is one (inside ``.keras``, or the
``config=`` option); a bare file gives its order back through ``h5order`` and its classes through
the group names. The same assembly serves live Keras 3 models (``live.py``).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from weightmap.errors import FormatError
from weightmap.graph import Layer, ParamGraph, TensorData
from weightmap.io.paths import natural_key
from weightmap.io.zipcheck import check_archive

from .build import Weight, make_layer, rnn_class, with_structure
from .classes import class_from_name, k3_roles, owner_sort_key
from .h5io import (WEIGHTS_MEMBER, Location, dataset_spec, decode, inflated,
                   member_data_offset, open_h5, stored_member_offset)
from .h5order import creation_order, file_reader
from .modelconfig import LayerSpec, walk

FORMAT_WEIGHTS = "keras3-weights-h5"
FORMAT_ZIP = "keras-zip"
SKIPPED = ("optimizer",)
_MAX_JSON = 64 << 20


@dataclass
class Owner:
    """A saved object: the group holding its ``vars``."""

    path: str                                    # "" for the model itself
    name: str | None                             # the object's own name (vars attribute)
    vars: list[tuple[str, tuple[int, ...], str, TensorData | None]] = field(default_factory=list)


# ----------------------------------------------------------------------------- files
def read(path: Path, fmt: str, *, config: Any = None) -> ParamGraph:
    meta: dict[str, Any] = {}
    if fmt == FORMAT_ZIP:
        config, meta = _zip_json(path)
        loc = Location(str(path), WEIGHTS_MEMBER)
        base = stored_member_offset(str(path), WEIGHTS_MEMBER)
        meta["config"] = "config.json"
    else:
        loc, base = Location(str(path)), 0
        meta["config"] = "option" if config is not None else "none"
    with open_h5(loc) as f:
        owners, skipped = scan(f, loc, base)
        info = walk(config) if config is not None else None
        if info is None:
            with _raw(loc) as read_at:
                specs, how = structure_specs(f, owners, read_at)
            flatten, order = {}, "stored"
        else:
            specs, how, flatten, order = info.specs, "config", info.flatten, "config"
            if info.notes:
                meta["notes"] = info.notes
    meta.update(order_source=how, skipped_groups=skipped)
    if config is not None and info is not None:
        meta["model_class"] = config.get("class_name")
        if info.input_shape is not None:
            meta["input_shape"] = list(info.input_shape)
    return assemble(specs, owners, flatten, fmt=fmt, source=str(path), order=order, meta=meta,
                    info=info)


def _zip_json(path: Path) -> tuple[dict, dict]:
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
        check_archive(zf, fh, path)                # names, sizes, overlaps, ratios
        names = set(zf.namelist())
        if "config.json" not in names or WEIGHTS_MEMBER not in names:
            raise FormatError("a .keras file holds config.json and model.weights.h5; this zip "
                              f"holds {', '.join(sorted(names)[:8])}", path=path)
        config = _member_json(zf, "config.json", path)
        metadata = _member_json(zf, "metadata.json", path) if "metadata.json" in names else {}
    meta = {k: metadata[k] for k in ("keras_version", "date_saved") if k in metadata}
    return config, meta


def _member_json(zf: zipfile.ZipFile, member: str, path: Path) -> Any:
    info = zf.getinfo(member)
    if info.file_size > _MAX_JSON:
        raise FormatError(f"{member} is {info.file_size} bytes; refusing more than {_MAX_JSON}",
                          path=path)
    try:
        return json.loads(zf.read(member).decode("utf-8"))
    except ValueError as exc:
        raise FormatError(f"{member} is not valid JSON ({exc})", path=path) from exc


@contextlib.contextmanager
def _raw(loc: Location) -> Iterator[Any]:
    """Byte access to the HDF5 file (for h5order): the file, or the zip member in place."""
    with open(loc.path, "rb") as fh:
        if loc.member is None:
            yield file_reader(fh, 0)
            return
        with zipfile.ZipFile(fh) as zf:
            info = zf.getinfo(loc.member)
            if info.compress_type == zipfile.ZIP_STORED:
                yield file_reader(fh, member_data_offset(fh, info))
            else:
                yield file_reader(io.BytesIO(inflated(fh, zf, info)), 0)


def scan(f: Any, loc: Location, base: int | None) -> tuple[dict[str, Owner], list[str]]:
    """Every saved object of the file, by path, with its numbered variables."""
    import h5py

    owners: dict[str, Owner] = {}
    skipped = sorted(k for k in f.keys() if k in SKIPPED)

    def visit(name: str | bytes, obj: Any) -> None:
        if isinstance(name, bytes):              # h5py hands out a non-UTF-8 name as bytes
            raise FormatError(f"the HDF5 object name {name!r} is not valid UTF-8",
                              hint="Keras writes UTF-8 names; the file is corrupt")
        if name.split("/")[0] in SKIPPED or not isinstance(obj, h5py.Group):
            return
        if name == "vars" or name.endswith("/vars"):
            owner = Owner(name[:-5] if name != "vars" else "", decode(obj.attrs.get("name")))
            for key in sorted(obj.keys(), key=_index_key):
                ds = obj[key]
                if not isinstance(ds, h5py.Dataset):
                    raise FormatError(f"{name}/{key} is a group; Keras stores variables as "
                                      f"datasets", path=loc.describe())
                spec = dataset_spec(ds, loc, base)
                owner.vars.append((key, spec.shape, spec.dtype, spec.data))
            owners[owner.path] = owner

    f.visititems(visit)
    return owners, skipped


def _index_key(key: str) -> tuple:
    return (0, int(key), "") if key.isdecimal() else (1, 0, key)


# ----------------------------------------------------------------------------- no config
def structure_specs(f: Any, owners: Mapping[str, Owner], read_at: Any
                    ) -> tuple[list[LayerSpec], str]:
    """Layer specs of a file without config: order from the HDF5 group's creation order,
    classes from the group names, names from the ``vars`` name attributes."""
    import h5py

    specs: list[LayerSpec] = []
    hows: set[str] = set()

    def container(prefix: str, name_prefix: str, outer: str | None) -> None:
        lpath = f"{prefix}layers"
        if lpath not in f:
            return
        children, how = ordered_children(f[lpath], read_at)
        hows.add(how)
        for child in children:
            cpath = f"{lpath}/{child}"
            real = (owners[cpath].name if cpath in owners else None) or child
            if isinstance(f[cpath], h5py.Group) and "layers" in f[cpath]:
                container(cpath + "/", f"{name_prefix}{real}/", outer or real)
                continue
            # an unknown class keeps its snake-case name (the only trace of it in the file)
            cls = class_from_name(child) or re.sub(r"_\d+$", "", child)
            if cls == "InputLayer":
                continue
            specs.append(LayerSpec(name_prefix + real, cls, _wrapper_config(cls, cpath, owners),
                                   cpath, outer or real))

    container("", "", None)
    how = "natural-sort" if "natural-sort" in hows else (hows.pop() if hows else "hdf5-names")
    return specs, how


def ordered_children(group: Any, read_at: Any) -> tuple[list[str], str]:
    import h5py

    names = list(group.keys())
    order = creation_order(read_at, h5py.h5o.get_info(group.id).addr)
    if order is not None and sorted(order) == sorted(names) and _numbering_holds(order):
        return order, "hdf5-creation-order"
    return sorted(names, key=natural_key), "natural-sort"


def _numbering_holds(order: Sequence[str]) -> bool:
    """Keras numbers each class in model order: conv2d, conv2d_1, conv2d_2 ... must appear in
    that order in any order we trust."""
    last: dict[str, int] = {}
    for name in order:
        m = re.match(r"^(.*?)(?:_(\d+))?$", name)
        base, n = m.group(1), int(m.group(2) or 0)
        if n <= last.get(base, -1):
            return False
        last[base] = n
    return True


def _wrapper_config(cls: str | None, cpath: str, owners: Mapping[str, Owner]) -> dict | None:
    """The inner class of a wrapper, told by its inner object's name or its cell's shapes."""
    if cls == "TimeDistributed":
        inner = owners.get(f"{cpath}/layer")
        return {"layer": {"class_name": class_from_name(inner.name or "") if inner else None,
                          "config": None}}
    if cls == "Bidirectional":
        fwd = owners.get(f"{cpath}/forward_layer")
        inner = class_from_name(fwd.name or "") if fwd else None
        cell = owners.get(f"{cpath}/forward_layer/cell")
        if inner is None and cell is not None:
            inner = rnn_class([v[1] for v in cell.vars])
        return {"layer": {"class_name": inner, "config": None}}
    return None


# ----------------------------------------------------------------------------- assembly
def assemble(specs: Sequence[LayerSpec], owners: Mapping[str, Owner],
             flatten: Mapping[str, Any], *, fmt: str, source: str, order: str,
             meta: dict, live: Any = None, check_paths: bool = True,
             info: Any = None) -> ParamGraph:
    """Graph layers of the specs, each with the variables under its path; variables no spec
    claims (a subclassed model's attributes) become opaque layers named by their path. ``info``
    (the walked config, if any) adds each layer's place in the model (``with_structure``)."""
    layers: list[Layer] = []
    claimed: set[str] = set()
    weightless: dict[str, str] = {}          # weightless layer -> the layer before it ("")
    for spec in specs:
        if check_paths:
            _check_owner(spec, owners, source)
        mine = [o for p, o in owners.items()
                if p == spec.k3_path or p.startswith(spec.k3_path + "/") or not spec.k3_path]
        claimed.update(o.path for o in mine)
        weights = _weights(spec.class_name, spec.config, spec.k3_path, mine)
        if not weights:
            weightless[spec.name] = layers[-1].name if layers else ""
            continue
        layers.append(make_layer(spec.name, spec.class_name, spec.config, weights,
                                 flatten.get(spec.name)))
    for path, owner in owners.items():
        if path not in claimed and owner.vars:
            cls = class_from_name(path.rsplit("/", 1)[-1]) or class_from_name(owner.name or "")
            weights = _weights(cls, None, path, [owner])
            layers.append(make_layer(path or owner.name or "<model>", cls, None, weights))
    meta = dict(meta, weightless_layers=list(weightless), weightless_after=weightless)
    return ParamGraph(format=fmt, framework="keras", source=source,
                      layers=tuple(with_structure(layers, info)), order=order, meta=meta,
                      live=live)


def _check_owner(spec: LayerSpec, owners: Mapping[str, Owner], source: str) -> None:
    owner = owners.get(spec.k3_path)
    if owner is None:
        raise FormatError(f"the config's layer {spec.name!r} ({spec.class_name}) should be "
                          f"stored at {spec.k3_path!r}, which the weights file lacks",
                          path=source, hint="config and weights come from different models")
    local = spec.name.rsplit("/", 1)[-1]
    if owner.name is not None and owner.name != local:
        raise FormatError(f"the weights at {spec.k3_path!r} belong to layer {owner.name!r}, "
                          f"the config puts {local!r} there", path=source,
                          hint="config and weights come from different models")


def _weights(cls: str | None, cfg: Mapping | None, base: str,
             owners: Sequence[Owner]) -> list[Weight]:
    out: list[Weight] = []
    rel = {o.path: o.path[len(base) + 1:] if base else o.path for o in owners}
    for owner in sorted(owners, key=lambda o: owner_sort_key(rel[o.path])):
        sub = rel[owner.path]
        roles = k3_roles(cls, cfg, sub, len(owner.vars))
        head = sub.split("/")[0]
        direction = {"forward_layer": "forward", "backward_layer": "backward"}.get(head) \
            if cls == "Bidirectional" else None
        for (key, shape, dtype, data), role in zip(owner.vars, roles):
            name = f"{owner.path}/vars/{key}" if owner.path else f"vars/{key}"
            out.append(Weight(name, role, shape, dtype, data, direction))
    return out
