"""weightmap_keras/h5heaps.py on genuine files: every variable-length string reference Keras
and h5py write is found and matches its global heap object; layouts with a user block and
version-2 object headers are understood."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from weightmap.errors import FormatError
from weightmap_keras import h5heaps
from weightmap_keras.h5io import check_tree

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GENUINE = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("keras/*.h5")) + [
    "examples/small_vgg_keras.h5"]


def references(path: Path):
    data = path.read_bytes()
    lay = h5heaps.layout(data)
    with h5py.File(path, "r") as f:
        headers = check_tree(f, str(path))
    h5heaps.check_references(data, lay, headers, str(path))
    attrs = [a for h in headers for a in h5heaps._vlen_attributes(data, lay, h)]
    heaps = {heap: h5heaps.collection(data, lay, heap, str(path))
             for _, _, refs in attrs for _, heap, _ in refs}
    return heaps, [name for name, _, _ in attrs]


@pytest.mark.parametrize("name", GENUINE)
def test_every_string_reference_is_found_and_matches(name):
    heaps, found = references(FIXTURES / name)
    objects = sum(len(v) for v in heaps.values())
    assert objects > 0 and len(found) > 0
    # every attribute holding variable-length strings was parsed (root's included)
    with h5py.File(FIXTURES / name, "r") as f:
        expected = sum(1 for obj in [f] + [f[n] for n in _all(f)] for k in obj.attrs
                       if _is_vlen(obj.attrs.get_id(k)))
    assert len(found) == expected


def _all(f):
    out = []
    f.visit(out.append)
    return out


def _is_vlen(attr) -> bool:
    info = h5py.check_string_dtype(attr.dtype)
    return info is not None and info.length is None


@pytest.mark.parametrize("libver", ["earliest", "latest"])
@pytest.mark.parametrize("userblock", [0, 1024])
def test_layouts(tmp_path, libver, userblock):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w", libver=libver, userblock_size=userblock) as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "dense"
        f.attrs["layer_names"] = np.array([b"dense", b"x"], dtype=h5py.string_dtype())
        g["0"] = np.ones(3, "f4")
    lay = h5heaps.layout(path.read_bytes())
    assert lay.base == userblock and lay.offsets == 8
    _, found = references(path)
    assert sorted(found) == ["layer_names", "name"]


def test_a_reference_to_a_missing_object_is_refused(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_group("g").attrs["name"] = "dense"
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL\x01\x00\x00\x00")
    ref = data.find(len("dense").to_bytes(4, "little") + heap.to_bytes(8, "little"))
    data[ref + 12: ref + 16] = (77).to_bytes(4, "little")        # object index 77
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="77, which does not exist"):
        references(path)
