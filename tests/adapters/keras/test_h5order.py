"""Creation order of HDF5 group members, read from the group's local heap."""
from __future__ import annotations

import h5py
import numpy as np

from weightmap_keras.h5order import creation_order, file_reader


def _order(path, group):
    with h5py.File(path) as f, open(path, "rb") as fh:
        return creation_order(file_reader(fh, 0), h5py.h5o.get_info(f[group].id).addr)


def test_creation_order_of_a_keras_weights_file(kx):
    order = _order(kx.fixture("k3_convs.weights.h5"), "layers")
    assert order == ["conv2d", "conv2d_1", "conv2d_2", "batch_normalization", "conv2d_3",
                     "conv2d_4", "conv2d_5", "batch_normalization_1", "conv2d_6", "conv2d_7",
                     "conv2d_8", "batch_normalization_2", "conv2d_9", "conv2d_10",
                     "conv2d_11", "batch_normalization_3", "zero_padding2d", "max_pooling2d",
                     "flatten", "dropout", "dense"]


def test_creation_order_is_not_name_order(tmp_path):
    """Many members (the heap grows and moves; B-tree nodes split) in a scrambled order."""
    names = [f"n{(i * 37) % 101}" for i in range(101)]
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("g")
        for name in names:
            g.create_group(name).attrs["x"] = np.arange(3)
    assert _order(path, "g") == names


def test_new_style_groups_and_garbage_give_none(tmp_path):
    path = tmp_path / "latest.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_group("g").create_group("a")
    assert _order(path, "g") is None
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    with open(junk, "rb") as fh:
        assert creation_order(file_reader(fh, 0), 64) is None
        assert creation_order(file_reader(fh, 0), 10_000) is None


def test_reader_offsets_are_relative_to_the_base(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(b"skip" + b"payload")
    with open(path, "rb") as fh:
        assert file_reader(fh, 4)(0, 7) == b"payload"
